/**
 * The ImportStore on PostgreSQL (see ../import-store.ts). Tables come from migration 2 in schema.ts.
 *
 * Several processes may share the database: an import is claimed with one UPDATE under a transaction-scoped
 * advisory lock on its account, so of two processes racing for an account's imports exactly one runs, and a
 * second import of the same account waits while the first is held by a live worker.
 */
import type pg from "pg";
import {
  handleLookups,
  type ImportFailure,
  type ImportHandle,
  type ImportHandleOwner,
  type ImportProgress,
  type ImportRow,
  type ImportStore,
  type SftpKeyRow,
} from "../import-store.js";
import { inTransaction } from "./in-transaction.js";

const IMPORT_COLUMNS = `account_id AS "accountId", id, kind, format, status, source, file_name AS "fileName",
  file_path AS "filePath", sha256, bytes, options, header, rows, processed, failed, bytes_read AS "bytesRead",
  last_row AS "lastRow", error,
  created_at AS "createdAt", started_at AS "startedAt", finished_at AS "finishedAt", claimed_by AS "claimedBy",
  heartbeat_at AS "heartbeatAt"`;

const SFTP_KEY_COLUMNS = `account_id AS "accountId", id, name, algorithm, public_key AS "publicKey", fingerprint,
  created_at AS "createdAt"`;

/** Redacted rows keep their number; their content and description go (SEMANTICS §10). */
const REDACTED = "redacted: the profile this row named was deleted";

const SQL = {
  insertImport: `INSERT INTO imports (account_id, id, kind, format, status, source, file_name, file_path, sha256, bytes,
      options, header, rows, processed, failed, bytes_read, last_row, error, created_at, started_at, finished_at,
      claimed_by, heartbeat_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`,
  getImport: `SELECT ${IMPORT_COLUMNS} FROM imports WHERE account_id = $1 AND id = $2`,
  listImports: `SELECT ${IMPORT_COLUMNS} FROM imports
    WHERE account_id = $1 AND (created_at, id) < ($2::bigint, $3::text)
    ORDER BY created_at DESC, id DESC LIMIT $4`,
  anyRecordIdSeen:
    "SELECT EXISTS (SELECT 1 FROM record_ids WHERE account_id = $1 AND record_id = ANY($2::text[])) AS seen",
  listUnfinished: `SELECT ${IMPORT_COLUMNS} FROM imports WHERE status IN ('queued', 'running') ORDER BY created_at, seq`,
  lockAccount: "SELECT pg_advisory_xact_lock(hashtextextended('portrait.import:' || $1, 0))",
  busyElsewhere: `SELECT id FROM imports
    WHERE account_id = $1 AND status = 'running' AND id <> $2 AND claimed_by IS NOT NULL AND claimed_by <> $3
      AND heartbeat_at >= $4
    LIMIT 1`,
  claim: `UPDATE imports
    SET status = 'running', claimed_by = $3, heartbeat_at = $4, started_at = coalesce(started_at, $4)
    WHERE account_id = $1 AND id = $2 AND status IN ('queued', 'running')
      AND (claimed_by IS NULL OR claimed_by = $3 OR heartbeat_at < $5)
    RETURNING ${IMPORT_COLUMNS}`,
  progress: `UPDATE imports SET rows = $4, processed = $5, failed = $6, bytes_read = $7, last_row = $8, heartbeat_at = $9
    WHERE account_id = $1 AND id = $2 AND claimed_by = $3 AND status = 'running'`,
  heartbeat: `UPDATE imports SET heartbeat_at = $4
    WHERE account_id = $1 AND id = $2 AND claimed_by = $3 AND status = 'running'`,
  release:
    "UPDATE imports SET claimed_by = NULL, heartbeat_at = NULL WHERE account_id = $1 AND id = $2 AND claimed_by = $3",
  setHeader: "UPDATE imports SET header = $3 WHERE account_id = $1 AND id = $2",
  finish: `UPDATE imports SET status = $4, error = $5, finished_at = $6, claimed_by = NULL, heartbeat_at = NULL
    WHERE account_id = $1 AND id = $2 AND claimed_by = $3`,
  insertFailures: `INSERT INTO import_failures (account_id, import_id, row_number, data, description)
    SELECT $1, $2, r.row_number, r.data, r.description
    FROM jsonb_to_recordset($3::jsonb) AS r(row_number bigint, data jsonb, description text)
    ON CONFLICT (account_id, import_id, row_number) DO UPDATE SET data = excluded.data,
      description = excluded.description`,
  insertFailureHandles: `INSERT INTO import_failure_handles (account_id, kind, value, import_id, row_number)
    SELECT $1, h.kind, h.value, $2, h.row_number
    FROM jsonb_to_recordset($3::jsonb) AS h(kind text, value text, row_number bigint)
    ON CONFLICT DO NOTHING`,
  listFailures: `SELECT row_number AS "row", data, description FROM import_failures
    WHERE account_id = $1 AND import_id = $2 AND row_number > $3 ORDER BY row_number LIMIT $4`,
  failureSizes: `SELECT row_number AS "row", COALESCE(octet_length(data::text), 0) + octet_length(description) AS bytes
    FROM import_failures WHERE account_id = $1 AND import_id = $2 AND row_number > $3 ORDER BY row_number LIMIT $4`,
  insertSftpKey: `INSERT INTO sftp_keys (account_id, id, name, algorithm, public_key, fingerprint, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)`,
  listSftpKeys: `SELECT ${SFTP_KEY_COLUMNS} FROM sftp_keys WHERE account_id = $1 ORDER BY created_at, id`,
  deleteSftpKey: "DELETE FROM sftp_keys WHERE account_id = $1 AND id = $2",
  clearEmailHashes: "DELETE FROM email_hashes WHERE account_id = $1",
  fillEmailHashes: `INSERT INTO email_hashes (account_id, hash, profile_id)
    SELECT account_id, encode(sha256(convert_to(value, 'UTF8')), 'hex'), profile_id FROM identities
    WHERE account_id = $1 AND key = 'Email'
    ON CONFLICT DO NOTHING`,
  // profilesNamedBy: identity values by key, devices, user accounts (compartment, id) and email hashes at once.
  handleOwners: `SELECT i.key AS kind, i.value AS a, NULL::text AS b, i.profile_id
      FROM unnest($2::text[], $3::text[]) AS u(key, value)
      JOIN identities i ON i.account_id = $1 AND i.key = u.key COLLATE "C" AND i.value = u.value COLLATE "C"
    UNION ALL
    SELECT 'deviceId', d.device_id, NULL, d.profile_id
      FROM unnest($4::text[]) AS u(device_id)
      JOIN devices d ON d.account_id = $1 AND d.device_id = u.device_id COLLATE "C"
    UNION ALL
    SELECT 'userAccount', ua.compartment_id, ua.user_account_id, ua.profile_id
      FROM unnest($5::text[], $6::text[]) AS u(compartment_id, user_account_id)
      JOIN user_accounts ua ON ua.account_id = $1 AND ua.compartment_id = u.compartment_id COLLATE "C"
        AND ua.user_account_id = u.user_account_id COLLATE "C"
    UNION ALL
    SELECT 'email_hash', e.hash, NULL, e.profile_id
      FROM unnest($7::text[]) AS u(hash)
      JOIN email_hashes e ON e.account_id = $1 AND e.hash = u.hash COLLATE "C"`,
  findEmailHash: "SELECT profile_id FROM email_hashes WHERE account_id = $1 AND hash = $2",
  redactRows: `UPDATE import_failures f SET data = NULL, description = '${REDACTED}'
    FROM import_failure_handles h, unnest($2::text[], $3::text[]) AS u(kind, value)
    WHERE h.account_id = $1 AND h.kind = u.kind COLLATE "C" AND h.value = u.value COLLATE "C"
      AND f.account_id = h.account_id AND f.import_id = h.import_id AND f.row_number = h.row_number`,
  dropHandles: `DELETE FROM import_failure_handles h USING unnest($2::text[], $3::text[]) AS u(kind, value)
    WHERE h.account_id = $1 AND h.kind = u.kind COLLATE "C" AND h.value = u.value COLLATE "C"`,
  dropEmailHashes: "DELETE FROM email_hashes WHERE account_id = $1 AND profile_id = $2",
} as const;

type StatementName = keyof typeof SQL;

async function query<R extends pg.QueryResultRow>(
  db: pg.Pool | pg.PoolClient,
  name: StatementName,
  values: unknown[],
): Promise<pg.QueryResult<R>> {
  return db.query<R>({ name: `imports.${name}`, text: SQL[name], values });
}

/** Text jsonb refuses (U+0000, unpaired surrogates) becomes U+FFFD: a failure report must store any row. */
function storableJson(value: unknown): string {
  return storableJsonText(JSON.stringify(value));
}

/** `storableJson` for JSON text as JSON.stringify wrote it (a failure report's row copied from SQLite, store/copy/). */
export function storableJsonText(text: string): string {
  return text.replace(/(?<!\\)((?:\\\\)*)\\u(?:0000|d[89a-f][0-9a-f]{2})/gi, "$1\\ufffd");
}

/**
 * SEMANTICS §10, inside the transaction that deletes a profile (`StoreTx.redactImportData`): its rows in stored
 * failure reports lose their content, and its email hashes go.
 */
export async function redactImportData(
  client: pg.PoolClient,
  accountId: string,
  profileId: string,
  handles: readonly ImportHandle[],
): Promise<void> {
  const all = [{ kind: "profileId", value: profileId }, ...handles];
  const kinds = all.map((h) => h.kind);
  const values = all.map((h) => h.value);
  await query(client, "redactRows", [accountId, kinds, values]);
  await query(client, "dropHandles", [accountId, kinds, values]);
  await query(client, "dropEmailHashes", [accountId, profileId]);
}

export class PostgresImports implements ImportStore {
  constructor(private readonly pool: pg.Pool) {}

  private transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, "BEGIN", fn);
  }

  async insertImport(r: ImportRow): Promise<void> {
    await query(this.pool, "insertImport", [
      r.accountId,
      r.id,
      r.kind,
      r.format,
      r.status,
      r.source,
      r.fileName,
      r.filePath,
      r.sha256,
      r.bytes,
      JSON.stringify(r.options),
      r.header === null ? null : storableJson(r.header),
      r.rows,
      r.processed,
      r.failed,
      r.bytesRead,
      r.lastRow,
      r.error,
      r.createdAt,
      r.startedAt,
      r.finishedAt,
      r.claimedBy,
      r.heartbeatAt,
    ]);
  }

  async getImport(accountId: string, importId: string): Promise<ImportRow | null> {
    return (await query<ImportRow>(this.pool, "getImport", [accountId, importId])).rows[0] ?? null;
  }

  async listImports(
    accountId: string,
    page: { before: { createdAt: number; id: string } | null; limit: number },
  ): Promise<ImportRow[]> {
    const before = page.before ?? { createdAt: Number.MAX_SAFE_INTEGER, id: "" };
    const r = await query<ImportRow>(this.pool, "listImports", [accountId, before.createdAt, before.id, page.limit]);
    return r.rows;
  }

  async anyRecordIdSeen(accountId: string, recordIds: string[]): Promise<boolean> {
    const r = await query<{ seen: boolean }>(this.pool, "anyRecordIdSeen", [accountId, recordIds]);
    return r.rows[0]?.seen === true;
  }

  async listUnfinished(): Promise<ImportRow[]> {
    return (await query<ImportRow>(this.pool, "listUnfinished", [])).rows;
  }

  async claimImport(
    accountId: string,
    importId: string,
    worker: string,
    now: number,
    staleBefore: number,
  ): Promise<ImportRow | null> {
    return this.transaction(async (client) => {
      // Claims of one account take turns, so "no other import of this account is running" stays true until COMMIT.
      await query(client, "lockAccount", [accountId]);
      const busy = await query(client, "busyElsewhere", [accountId, importId, worker, staleBefore]);
      if (busy.rows.length > 0) return null;
      const claimed = await query<ImportRow>(client, "claim", [accountId, importId, worker, now, staleBefore]);
      return claimed.rows[0] ?? null;
    });
  }

  async saveProgress(
    accountId: string,
    importId: string,
    worker: string,
    p: ImportProgress,
    failures: ImportFailure[],
    now: number,
  ): Promise<boolean> {
    return this.transaction(async (client) => {
      const held = await query(client, "progress", [
        accountId,
        importId,
        worker,
        p.rows,
        p.processed,
        p.failed,
        p.bytesRead,
        p.lastRow,
        now,
      ]);
      if ((held.rowCount ?? 0) === 0) return false;
      if (failures.length > 0) {
        const rows = failures.map((f) => ({ row_number: f.row, data: f.data, description: f.description }));
        await query(client, "insertFailures", [accountId, importId, storableJson(rows)]);
        const handles = failures.flatMap((f) => f.handles.map((h) => ({ ...h, row_number: f.row })));
        if (handles.length > 0)
          await query(client, "insertFailureHandles", [accountId, importId, storableJson(handles)]);
      }
      return true;
    });
  }

  async heartbeat(accountId: string, importId: string, worker: string, now: number): Promise<boolean> {
    return ((await query(this.pool, "heartbeat", [accountId, importId, worker, now])).rowCount ?? 0) > 0;
  }

  async releaseImport(accountId: string, importId: string, worker: string): Promise<void> {
    await query(this.pool, "release", [accountId, importId, worker]);
  }

  async setHeader(accountId: string, importId: string, header: string[]): Promise<void> {
    await query(this.pool, "setHeader", [accountId, importId, storableJson(header)]);
  }

  async finishImport(
    accountId: string,
    importId: string,
    worker: string,
    outcome: { status: "done" | "failed"; error: string | null },
    now: number,
  ): Promise<void> {
    await query(this.pool, "finish", [accountId, importId, worker, outcome.status, outcome.error, now]);
  }

  async listFailures(accountId: string, importId: string, afterRow: number, limit: number): Promise<ImportFailure[]> {
    const result = await query<{ row: number; data: string[] | string | null; description: string }>(
      this.pool,
      "listFailures",
      [accountId, importId, afterRow, limit],
    );
    return result.rows.map((r) => ({ ...r, handles: [] }));
  }

  async failureSizes(
    accountId: string,
    importId: string,
    afterRow: number,
    limit: number,
  ): Promise<Array<{ row: number; bytes: number }>> {
    const result = await query<{ row: number | string; bytes: number | string }>(this.pool, "failureSizes", [
      accountId,
      importId,
      afterRow,
      limit,
    ]);
    return result.rows.map((r) => ({ row: Number(r.row), bytes: Number(r.bytes) }));
  }

  async insertSftpKey(k: SftpKeyRow): Promise<void> {
    await query(this.pool, "insertSftpKey", [
      k.accountId,
      k.id,
      k.name,
      k.algorithm,
      k.publicKey,
      k.fingerprint,
      k.createdAt,
    ]);
  }

  async listSftpKeys(accountId: string): Promise<SftpKeyRow[]> {
    return (await query<SftpKeyRow>(this.pool, "listSftpKeys", [accountId])).rows;
  }

  async deleteSftpKey(accountId: string, keyId: string): Promise<boolean> {
    return ((await query(this.pool, "deleteSftpKey", [accountId, keyId])).rowCount ?? 0) > 0;
  }

  async refreshEmailHashes(accountId: string): Promise<void> {
    await this.transaction(async (client) => {
      await query(client, "clearEmailHashes", [accountId]);
      await query(client, "fillEmailHashes", [accountId]);
    });
  }

  async profilesNamedBy(accountId: string, handles: readonly ImportHandle[]): Promise<ImportHandleOwner[]> {
    // A value holding U+0000 cannot be a PostgreSQL text, so it is no stored handle either: it leads nowhere.
    const { identities, deviceIds, userAccounts, emailHashes } = handleLookups(
      handles.filter((h) => !h.value.includes("\u0000")),
    );
    if (identities.length + deviceIds.length + userAccounts.length + emailHashes.length === 0) return [];
    const result = await query<{ kind: string; a: string; b: string | null; profile_id: string }>(
      this.pool,
      "handleOwners",
      [
        accountId,
        identities.map((h) => h.kind),
        identities.map((h) => h.value),
        deviceIds,
        userAccounts.map((u) => u.compartmentId),
        userAccounts.map((u) => u.userAccountId),
        emailHashes,
      ],
    );
    return result.rows.map((r) => ({
      kind: r.kind,
      value: r.kind === "userAccount" ? JSON.stringify([r.a, r.b]) : r.a,
      profileId: r.profile_id,
    }));
  }

  async findProfileByEmailHash(accountId: string, hash: string): Promise<string | null> {
    const result = await query<{ profile_id: string }>(this.pool, "findEmailHash", [accountId, hash]);
    return result.rows[0]?.profile_id ?? null;
  }
}
