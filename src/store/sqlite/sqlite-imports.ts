/**
 * The ImportStore on SQLite (see ../import-store.ts). Tables come from migration 2 in schema.ts.
 *
 * The store has one write connection shared with `write()`; every write here runs through `exclusive`, which takes
 * the store's write turn, so an import's bookkeeping never lands inside somebody else's open transaction. Reads use
 * the read-only connection (committed data) when there is one.
 */
import { createHash } from "node:crypto";
import type Database from "better-sqlite3";
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

interface ImportTableRow {
  accountId: string;
  id: string;
  kind: ImportRow["kind"];
  format: ImportRow["format"];
  status: ImportRow["status"];
  source: ImportRow["source"];
  fileName: string | null;
  filePath: string;
  sha256: string;
  bytes: number;
  options: string;
  header: string | null;
  rows: number;
  processed: number;
  failed: number;
  bytesRead: number;
  lastRow: number;
  error: string | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  claimedBy: string | null;
  heartbeatAt: number | null;
}

const IMPORT_COLUMNS = `account_id AS accountId, id, kind, format, status, source, file_name AS fileName,
  file_path AS filePath, sha256, bytes, options, header, rows, processed, failed, bytes_read AS bytesRead,
  last_row AS lastRow, error,
  created_at AS createdAt, started_at AS startedAt, finished_at AS finishedAt, claimed_by AS claimedBy,
  heartbeat_at AS heartbeatAt`;

const SFTP_KEY_COLUMNS = `account_id AS accountId, id, name, algorithm, public_key AS publicKey, fingerprint,
  created_at AS createdAt`;

function toImport(row: ImportTableRow): ImportRow {
  return { ...row, options: JSON.parse(row.options), header: row.header === null ? null : JSON.parse(row.header) };
}

/** Redacted rows keep their number; their content and description go (SEMANTICS §10). */
export const REDACTED = "redacted: the profile this row named was deleted";

function prepare(db: Database.Database) {
  const row = <P extends unknown[], R>(sql: string) => db.prepare<P, R>(sql);
  const run = <P extends unknown[]>(sql: string) => db.prepare<P>(sql);
  return {
    insertImport: run<unknown[]>(
      `INSERT INTO imports (account_id, id, kind, format, status, source, file_name, file_path, sha256, bytes, options,
         header, rows, processed, failed, bytes_read, last_row, error, created_at, started_at, finished_at, claimed_by,
         heartbeat_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    getImport: row<[string, string], ImportTableRow>(
      `SELECT ${IMPORT_COLUMNS} FROM imports WHERE account_id = ? AND id = ?`,
    ),
    listImports: row<[string, number, number, string, number], ImportTableRow>(
      `SELECT ${IMPORT_COLUMNS} FROM imports
       WHERE account_id = ? AND (created_at < ? OR (created_at = ? AND id < ?))
       ORDER BY created_at DESC, id DESC LIMIT ?`,
    ),
    recordIdSeen: row<[string, string], { one: number }>(
      "SELECT 1 AS one FROM record_ids WHERE account_id = ? AND record_id = ?",
    ),
    listUnfinished: row<[], ImportTableRow>(
      `SELECT ${IMPORT_COLUMNS} FROM imports WHERE status IN ('queued', 'running') ORDER BY created_at, rowid`,
    ),
    // Another import of the account held by a live worker blocks the claim: one import at a time per account.
    busyElsewhere: row<[string, string, string, number], { id: string }>(
      `SELECT id FROM imports
       WHERE account_id = ? AND status = 'running' AND id <> ? AND claimed_by IS NOT NULL AND claimed_by <> ?
         AND heartbeat_at >= ?
       LIMIT 1`,
    ),
    claim: run<[string, number, number, string, string, string, number]>(
      `UPDATE imports
       SET status = 'running', claimed_by = ?, heartbeat_at = ?, started_at = coalesce(started_at, ?)
       WHERE account_id = ? AND id = ? AND status IN ('queued', 'running')
         AND (claimed_by IS NULL OR claimed_by = ? OR heartbeat_at < ?)`,
    ),
    progress: run<[number, number, number, number, number, number, string, string, string]>(
      `UPDATE imports SET rows = ?, processed = ?, failed = ?, bytes_read = ?, last_row = ?, heartbeat_at = ?
       WHERE account_id = ? AND id = ? AND claimed_by = ? AND status = 'running'`,
    ),
    heartbeat: run<[number, string, string, string]>(
      `UPDATE imports SET heartbeat_at = ? WHERE account_id = ? AND id = ? AND claimed_by = ? AND status = 'running'`,
    ),
    release: run<[string, string, string]>(
      "UPDATE imports SET claimed_by = NULL, heartbeat_at = NULL WHERE account_id = ? AND id = ? AND claimed_by = ?",
    ),
    setHeader: run<[string, string, string]>("UPDATE imports SET header = ? WHERE account_id = ? AND id = ?"),
    finish: run<[string, string | null, number, string, string, string]>(
      `UPDATE imports SET status = ?, error = ?, finished_at = ?, claimed_by = NULL, heartbeat_at = NULL
       WHERE account_id = ? AND id = ? AND claimed_by = ?`,
    ),
    // A resumed batch may refuse a row again: the report keeps one line per row.
    insertFailure: run<[string, string, number, string, string]>(
      `INSERT INTO import_failures (account_id, import_id, row_number, data, description) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (account_id, import_id, row_number) DO UPDATE SET data = excluded.data,
         description = excluded.description`,
    ),
    insertFailureHandle: run<[string, string, string, string, number]>(
      `INSERT INTO import_failure_handles (account_id, kind, value, import_id, row_number) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT DO NOTHING`,
    ),
    listFailures: row<[string, string, number, number], { row: number; data: string | null; description: string }>(
      `SELECT row_number AS row, data, description FROM import_failures
       WHERE account_id = ? AND import_id = ? AND row_number > ? ORDER BY row_number LIMIT ?`,
    ),
    // octet_length reads a value's size from its record header, not the value itself.
    failureSizes: row<[string, string, number, number], { row: number; bytes: number }>(
      `SELECT row_number AS row, COALESCE(octet_length(data), 0) + octet_length(description) AS bytes
       FROM import_failures WHERE account_id = ? AND import_id = ? AND row_number > ? ORDER BY row_number LIMIT ?`,
    ),
    insertSftpKey: run<[string, string, string, string, string, string, number]>(
      `INSERT INTO sftp_keys (account_id, id, name, algorithm, public_key, fingerprint, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    listSftpKeys: row<[string], SftpKeyRow>(
      `SELECT ${SFTP_KEY_COLUMNS} FROM sftp_keys WHERE account_id = ? ORDER BY created_at, id`,
    ),
    deleteSftpKey: run<[string, string]>("DELETE FROM sftp_keys WHERE account_id = ? AND id = ?"),
    clearEmailHashes: run<[string]>("DELETE FROM email_hashes WHERE account_id = ?"),
    fillEmailHashes: run<[string]>(
      `INSERT INTO email_hashes (account_id, hash, profile_id)
       SELECT account_id, portrait_sha256(value), profile_id FROM identities WHERE account_id = ? AND key = 'Email'
       ON CONFLICT DO NOTHING`,
    ),
    // profilesNamedBy: each a primary-key look-up.
    identityOwner: db
      .prepare<[string, string, string], string>(
        "SELECT profile_id FROM identities WHERE account_id = ? AND key = ? AND value = ?",
      )
      .pluck(),
    deviceOwner: db
      .prepare<[string, string], string>("SELECT profile_id FROM devices WHERE account_id = ? AND device_id = ?")
      .pluck(),
    userAccountOwner: db
      .prepare<[string, string, string], string>(
        "SELECT profile_id FROM user_accounts WHERE account_id = ? AND compartment_id = ? AND user_account_id = ?",
      )
      .pluck(),
    findEmailHash: db
      .prepare<[string, string], string>("SELECT profile_id FROM email_hashes WHERE account_id = ? AND hash = ?")
      .pluck(),
  };
}

function prepareRedaction(db: Database.Database) {
  return {
    redactRows: db.prepare<[string, string, string, string]>(
      `UPDATE import_failures SET data = NULL, description = '${REDACTED}'
       WHERE (account_id, import_id, row_number) IN (
         SELECT account_id, import_id, row_number FROM import_failure_handles
         WHERE account_id = ? AND kind = ? AND value = ?)
       AND account_id = ? AND data IS NOT NULL`,
    ),
    dropHandles: db.prepare<[string, string, string]>(
      "DELETE FROM import_failure_handles WHERE account_id = ? AND kind = ? AND value = ?",
    ),
    dropEmailHashes: db.prepare<[string, string]>("DELETE FROM email_hashes WHERE account_id = ? AND profile_id = ?"),
  };
}

const redactionStatements = new WeakMap<Database.Database, ReturnType<typeof prepareRedaction>>();

/**
 * SEMANTICS §10: inside the transaction that deletes a profile, its rows in stored failure reports lose their
 * content, and its email hashes go. Called by the adapter's transaction (`StoreTx.redactImportData`).
 */
export function redactImportData(
  db: Database.Database,
  accountId: string,
  profileId: string,
  handles: readonly ImportHandle[],
): void {
  let sql = redactionStatements.get(db);
  if (sql === undefined) {
    sql = prepareRedaction(db);
    redactionStatements.set(db, sql);
  }
  for (const h of [{ kind: "profileId", value: profileId }, ...handles]) {
    sql.redactRows.run(accountId, h.kind, h.value, accountId);
    sql.dropHandles.run(accountId, h.kind, h.value);
  }
  sql.dropEmailHashes.run(accountId, profileId);
}

export function sha256Hex(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

export class SqliteImports implements ImportStore {
  private readonly sql: ReturnType<typeof prepare>;
  private readonly readSql: ReturnType<typeof prepare>;

  constructor(
    db: Database.Database,
    readDb: Database.Database | null,
    /** Runs `fn` in its own transaction, in turn with the store's writes. */
    private readonly exclusive: <T>(fn: () => T) => Promise<T>,
  ) {
    for (const connection of [db, readDb]) {
      connection?.function("portrait_sha256", { deterministic: true }, (v: unknown) => sha256Hex(String(v)));
    }
    this.sql = prepare(db);
    this.readSql = readDb ? prepare(readDb) : this.sql;
  }

  async insertImport(r: ImportRow): Promise<void> {
    await this.exclusive(() =>
      this.sql.insertImport.run(
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
        r.header === null ? null : JSON.stringify(r.header),
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
      ),
    );
  }

  async getImport(accountId: string, importId: string): Promise<ImportRow | null> {
    const row = this.readSql.getImport.get(accountId, importId);
    return row === undefined ? null : toImport(row);
  }

  async listImports(
    accountId: string,
    page: { before: { createdAt: number; id: string } | null; limit: number },
  ): Promise<ImportRow[]> {
    const before = page.before ?? { createdAt: Number.MAX_SAFE_INTEGER, id: "" };
    return this.readSql.listImports
      .all(accountId, before.createdAt, before.createdAt, before.id, page.limit)
      .map(toImport);
  }

  async anyRecordIdSeen(accountId: string, recordIds: string[]): Promise<boolean> {
    return recordIds.some((id) => this.readSql.recordIdSeen.get(accountId, id) !== undefined);
  }

  async listUnfinished(): Promise<ImportRow[]> {
    return this.readSql.listUnfinished.all().map(toImport);
  }

  async claimImport(
    accountId: string,
    importId: string,
    worker: string,
    now: number,
    staleBefore: number,
  ): Promise<ImportRow | null> {
    // One writer at a time (exclusive), so the check and the update cannot be split by another claimant.
    return this.exclusive(() => {
      if (this.sql.busyElsewhere.get(accountId, importId, worker, staleBefore)) return null;
      const claimed = this.sql.claim.run(worker, now, now, accountId, importId, worker, staleBefore).changes > 0;
      const row = claimed ? this.sql.getImport.get(accountId, importId) : undefined;
      return row === undefined ? null : toImport(row);
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
    return this.exclusive(() => {
      const held =
        this.sql.progress.run(p.rows, p.processed, p.failed, p.bytesRead, p.lastRow, now, accountId, importId, worker)
          .changes > 0;
      if (!held) return false;
      for (const f of failures) {
        this.sql.insertFailure.run(accountId, importId, f.row, JSON.stringify(f.data), f.description);
        for (const h of f.handles) this.sql.insertFailureHandle.run(accountId, h.kind, h.value, importId, f.row);
      }
      return true;
    });
  }

  async heartbeat(accountId: string, importId: string, worker: string, now: number): Promise<boolean> {
    return this.exclusive(() => this.sql.heartbeat.run(now, accountId, importId, worker).changes > 0);
  }

  async releaseImport(accountId: string, importId: string, worker: string): Promise<void> {
    await this.exclusive(() => this.sql.release.run(accountId, importId, worker));
  }

  async setHeader(accountId: string, importId: string, header: string[]): Promise<void> {
    await this.exclusive(() => this.sql.setHeader.run(JSON.stringify(header), accountId, importId));
  }

  async finishImport(
    accountId: string,
    importId: string,
    worker: string,
    outcome: { status: "done" | "failed"; error: string | null },
    now: number,
  ): Promise<void> {
    await this.exclusive(() => this.sql.finish.run(outcome.status, outcome.error, now, accountId, importId, worker));
  }

  async listFailures(accountId: string, importId: string, afterRow: number, limit: number): Promise<ImportFailure[]> {
    return this.readSql.listFailures.all(accountId, importId, afterRow, limit).map((r) => ({
      row: r.row,
      data: r.data === null ? null : JSON.parse(r.data),
      description: r.description,
      handles: [],
    }));
  }

  async failureSizes(
    accountId: string,
    importId: string,
    afterRow: number,
    limit: number,
  ): Promise<Array<{ row: number; bytes: number }>> {
    return this.readSql.failureSizes.all(accountId, importId, afterRow, limit);
  }

  async insertSftpKey(k: SftpKeyRow): Promise<void> {
    await this.exclusive(() =>
      this.sql.insertSftpKey.run(k.accountId, k.id, k.name, k.algorithm, k.publicKey, k.fingerprint, k.createdAt),
    );
  }

  async listSftpKeys(accountId: string): Promise<SftpKeyRow[]> {
    return this.readSql.listSftpKeys.all(accountId);
  }

  async deleteSftpKey(accountId: string, keyId: string): Promise<boolean> {
    return this.exclusive(() => this.sql.deleteSftpKey.run(accountId, keyId).changes > 0);
  }

  async refreshEmailHashes(accountId: string): Promise<void> {
    await this.exclusive(() => {
      this.sql.clearEmailHashes.run(accountId);
      this.sql.fillEmailHashes.run(accountId);
    });
  }

  async profilesNamedBy(accountId: string, handles: readonly ImportHandle[]): Promise<ImportHandleOwner[]> {
    const { identities, deviceIds, userAccounts, emailHashes } = handleLookups(handles);
    const sql = this.readSql;
    const out: ImportHandleOwner[] = [];
    const add = (kind: string, value: string, profileId: string | undefined) => {
      if (profileId !== undefined) out.push({ kind, value, profileId });
    };
    for (const h of identities) add(h.kind, h.value, sql.identityOwner.get(accountId, h.kind, h.value));
    for (const d of deviceIds) add("deviceId", d, sql.deviceOwner.get(accountId, d));
    for (const u of userAccounts) {
      add("userAccount", u.value, sql.userAccountOwner.get(accountId, u.compartmentId, u.userAccountId));
    }
    for (const hash of emailHashes) add("email_hash", hash, sql.findEmailHash.get(accountId, hash));
    return out;
  }

  async findProfileByEmailHash(accountId: string, hash: string): Promise<string | null> {
    return this.readSql.findEmailHash.get(accountId, hash) ?? null;
  }
}
