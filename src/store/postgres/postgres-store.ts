/**
 * The Store on PostgreSQL (node-postgres): a pool of connections, every statement named so that each connection
 * prepares it once.
 *
 * Several API processes may share one database (docs/scaling.md), so nothing here relies on an in-process lock:
 * - `write()` is BEGIN … COMMIT on one pooled connection, at READ COMMITTED. `lockProfile` is `SELECT … FOR UPDATE`,
 *   so two writers of one profile take turns on its row lock, in this process or another.
 * - Claims of account-wide handles (identities, devices, user accounts, record ids, Charged IDs, type registrations)
 *   are `INSERT … ON CONFLICT DO NOTHING RETURNING`, then a read of the winner. A racing insert of the same key waits
 *   for the first transaction to end: if it commits its row wins, if it rolls back the waiting insert goes through.
 * - Inside a transaction, a handle look-up (identity, device, user account) that finds nothing holds that handle until
 *   COMMIT (a transaction-scoped advisory lock on its name), and every insert of a handle takes the same lock first.
 *   The pipeline decides on "this identity is new" before it claims it (a login creates the profile, then claims the
 *   identity); on SQLite nobody can claim it in between because writers run one at a time, and the hold gives the
 *   same guarantee here, per handle, instead of letting 40 racing logins make one profile and 39 refusals.
 * - Row and advisory locks taken in different orders can deadlock (two batches claiming the same two handles in
 *   opposite orders); PostgreSQL then aborts one transaction with 40P01. `write()` rolls it back and runs the function
 *   again from the start, at most 5 times, after a short random pause. That is safe because a transaction function
 *   keeps all its state inside the run (the pipeline builds a fresh UnitOfWork, and its results, per run: see
 *   Portrait.transact and Portrait.ingest) and the retry sees a fresh world. Correctness still comes from the
 *   constraints and locks; the retry only repeats work that PostgreSQL refused to finish.
 * - `reader` runs each read on any pooled connection outside a transaction, so it sees committed data only.
 *
 * Text that PostgreSQL cannot store (U+0000, and in JSON an unpaired surrogate) is refused as INVALID_VALUE rather
 * than failing the whole request; SQLite stores it (docs/scaling.md, "Where the two stores differ").
 */
import pg from "pg";
import { PortraitError } from "../../engine/errors.js";
import type { AnyRecord } from "../../engine/records.js";
import type {
  Account,
  AccountSettings,
  DeviceRow,
  IdentityKey,
  NewEvent,
  ProfileDocument,
  ProfileState,
  StoredEvent,
  UserAccountRef,
  ValueType,
} from "../../engine/types.js";
import type { ImportHandle } from "../import-store.js";
import type {
  ApiKeyRow,
  DashboardUserRow,
  DeletedCounts,
  EventPage,
  MergeRow,
  Store,
  StoreReader,
  StoreTx,
  TypeRegistration,
  TypeScope,
} from "../store.js";
import { PostgresImports, redactImportData } from "./postgres-imports.js";
import { PostgresSegments, segmentIndex } from "./postgres-segments.js";
import { migrate } from "./schema.js";

/** Larger than any ts or seq: the cursor of the first page. */
const END = Number.MAX_SAFE_INTEGER;

/** How many times `write()` runs a function that keeps losing deadlocks before it gives up. */
const MAX_ATTEMPTS = 5;

// Rows as selected (columns aliased to the domain's names where that is all the mapping needed).
interface AccountRow {
  id: string;
  name: string;
  settings: AccountSettings;
  createdAt: number;
}
interface EventRow {
  seq: number;
  profileId: string;
  id: string;
  name: string;
  ts: number;
  properties: StoredEvent["properties"];
  deviceId: string | null;
  platform: string | null;
}
interface DocumentRow {
  compartmentId: string;
  userAccountId: string;
  profileId: string;
  body: ProfileDocument["body"];
  createdAt: number;
  updatedAt: number;
}
interface MergeTableRow {
  id: string;
  targetId: string;
  sourceId: string;
  createdAt: number;
  undoneAt: number | null;
  data: MergeData;
}
/** The profile a look-up table row points at. */
interface OwnerRow {
  profile_id: string;
}
/** The part of a MergeRow kept as one JSON column. */
type MergeData = Pick<MergeRow, "eventSeqAtMerge" | "target" | "source" | "movedEventSeqs" | "droppedEvents">;

const EVENT_COLUMNS = `seq, profile_id AS "profileId", id, name, ts, properties, device_id AS "deviceId", platform`;
const DOCUMENT_COLUMNS = `compartment_id AS "compartmentId", user_account_id AS "userAccountId",
  profile_id AS "profileId", body, created_at AS "createdAt", updated_at AS "updatedAt"`;
const API_KEY_COLUMNS = `id, account_id AS "accountId", kind, name, hash, prefix, created_at AS "createdAt",
  revoked_at AS "revokedAt"`;
const MERGE_COLUMNS = `id, target_id AS "targetId", source_id AS "sourceId", created_at AS "createdAt",
  undone_at AS "undoneAt", data`;

/**
 * Every statement of the adapter. Each runs as a named statement: a connection parses and plans it the first time
 * it runs it and reuses that afterwards. Lists (profile ids, seqs, event columns) travel as one array parameter each,
 * so a statement's text never depends on the data.
 */
const SQL = {
  // Accounts, keys, dashboard users, meta.
  insertAccount: "INSERT INTO accounts (id, name, settings, created_at) VALUES ($1, $2, $3, $4)",
  getAccount: `SELECT id, name, settings, created_at AS "createdAt" FROM accounts WHERE id = $1`,
  listAccounts: `SELECT id, name, settings, created_at AS "createdAt" FROM accounts ORDER BY created_at, id`,
  updateAccountSettings: "UPDATE accounts SET settings = $1 WHERE id = $2",
  insertApiKey: `INSERT INTO api_keys (id, account_id, kind, name, hash, prefix, created_at, revoked_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
  findApiKeyByHash: `SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE hash = $1`,
  listApiKeys: `SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id`,
  // A second revoke keeps the first revocation time.
  revokeApiKey: "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $1) WHERE account_id = $2 AND id = $3",
  insertDashboardUser: "INSERT INTO dashboard_users (username, account_id, password_hash) VALUES ($1, $2, $3)",
  findDashboardUser: `SELECT account_id AS "accountId", username, password_hash AS "passwordHash"
    FROM dashboard_users WHERE username = $1`,
  getMeta: "SELECT value FROM meta WHERE key = $1",
  setMeta: "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",

  // Profiles. The columns beside `state` are rewritten from it on every write so they never go stale.
  getProfile: "SELECT state FROM profiles WHERE account_id = $1 AND id = $2",
  lockProfile: "SELECT state FROM profiles WHERE account_id = $1 AND id = $2 FOR UPDATE",
  insertProfile: `INSERT INTO profiles
    (account_id, id, state, merged_into, orphan_of, control_group_excluded, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
  updateProfile: `UPDATE profiles
    SET state = $1, merged_into = $2, orphan_of = $3, control_group_excluded = $4, created_at = $5, updated_at = $6
    WHERE account_id = $7 AND id = $8`,
  listOrphans: "SELECT id FROM profiles WHERE account_id = $1 AND orphan_of = $2 ORDER BY id",
  listTombstones: "SELECT id FROM profiles WHERE account_id = $1 AND merged_into = $2 ORDER BY id",
  // Tombstones are left out: they act as their target (SEMANTICS §7). The primary key gives the id order.
  listProfileIds: `SELECT id FROM profiles WHERE account_id = $1 AND id > $2 AND merged_into IS NULL
    ORDER BY id LIMIT $3`,
  countControlGroupExcluded: `SELECT count(*) AS n FROM profiles
    WHERE account_id = $1 AND control_group_excluded AND merged_into IS NULL`,

  // Handles. Inside a transaction, a look-up that finds nothing holds the handle (an advisory lock on its name, until
  // COMMIT), and every insert of a handle takes that lock first, in the same statement: see HandleLocks below.
  holdHandle: "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",

  // Identities.
  findIdentity: "SELECT profile_id FROM identities WHERE account_id = $1 AND key = $2 AND value = $3",
  insertIdentity: `WITH held AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended($5, 0)))
    INSERT INTO identities (account_id, key, value, profile_id) SELECT $1, $2, $3, $4 FROM held
    ON CONFLICT (account_id, key, value) DO NOTHING RETURNING profile_id`,
  releaseIdentity: "DELETE FROM identities WHERE account_id = $1 AND key = $2 AND value = $3 AND profile_id = $4",
  releaseIdentityKey: "DELETE FROM identities WHERE account_id = $1 AND key = $2",

  // Devices.
  findDevice: `SELECT device_id AS "deviceId", profile_id AS "profileId", push_token AS "pushToken", platform
    FROM devices WHERE account_id = $1 AND device_id = $2`,
  listDevices: `SELECT device_id AS "deviceId", profile_id AS "profileId", push_token AS "pushToken", platform
    FROM devices WHERE account_id = $1 AND profile_id = $2 ORDER BY device_id`,
  insertDevice: `WITH held AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended($6, 0)))
    INSERT INTO devices (account_id, device_id, profile_id, push_token, platform) SELECT $1, $2, $3, $4, $5 FROM held
    ON CONFLICT (account_id, device_id) DO NOTHING RETURNING profile_id`,
  upsertDevice: `WITH held AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended($6, 0)))
    INSERT INTO devices (account_id, device_id, profile_id, push_token, platform) SELECT $1, $2, $3, $4, $5 FROM held
    ON CONFLICT (account_id, device_id) DO UPDATE
    SET profile_id = excluded.profile_id, push_token = excluded.push_token, platform = excluded.platform`,
  deleteDevice: "DELETE FROM devices WHERE account_id = $1 AND device_id = $2",

  // User accounts and their documents.
  findUserAccount: `SELECT profile_id FROM user_accounts
    WHERE account_id = $1 AND compartment_id = $2 AND user_account_id = $3`,
  listUserAccounts: `SELECT compartment_id AS "compartmentId", user_account_id AS "userAccountId" FROM user_accounts
    WHERE account_id = $1 AND profile_id = $2 ORDER BY compartment_id, user_account_id`,
  insertUserAccount: `WITH held AS MATERIALIZED (SELECT pg_advisory_xact_lock(hashtextextended($5, 0)))
    INSERT INTO user_accounts (account_id, compartment_id, user_account_id, profile_id) SELECT $1, $2, $3, $4 FROM held
    ON CONFLICT (account_id, compartment_id, user_account_id) DO NOTHING RETURNING profile_id`,
  releaseUserAccount:
    "DELETE FROM user_accounts WHERE account_id = $1 AND compartment_id = $2 AND user_account_id = $3",
  getDocument: `SELECT ${DOCUMENT_COLUMNS} FROM documents
    WHERE account_id = $1 AND compartment_id = $2 AND user_account_id = $3`,
  listDocuments: `SELECT ${DOCUMENT_COLUMNS} FROM documents WHERE account_id = $1 AND profile_id = $2
    ORDER BY compartment_id, user_account_id`,
  // One document per user account, whichever profile it is on: a put for another profile moves it there.
  putDocument: `INSERT INTO documents (account_id, compartment_id, user_account_id, profile_id, body, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (account_id, compartment_id, user_account_id) DO UPDATE
    SET profile_id = excluded.profile_id, body = excluded.body, created_at = excluded.created_at,
        updated_at = excluded.updated_at`,
  deleteDocument: "DELETE FROM documents WHERE account_id = $1 AND compartment_id = $2 AND user_account_id = $3",

  // Idempotency and Charged IDs.
  claimRecordId: `INSERT INTO record_ids (account_id, record_id, created_at) VALUES ($1, $2, $3)
    ON CONFLICT (account_id, record_id) DO NOTHING`,
  claimChargedId: `INSERT INTO charged_ids (account_id, profile_id, charged_id) VALUES ($1, $2, $3)
    ON CONFLICT (account_id, profile_id, charged_id) DO NOTHING`,
  listChargedIds: "SELECT charged_id FROM charged_ids WHERE account_id = $1 AND profile_id = $2 ORDER BY charged_id",
  releaseChargedIds: "DELETE FROM charged_ids WHERE account_id = $1 AND profile_id = $2",

  // Events. A batch is one statement: the columns travel as arrays, unnested in step.
  // The seqs are drawn first and numbered in ascending order, then joined to the events by position, so the events
  // of a batch get increasing seqs in their given order however PostgreSQL schedules the rows.
  insertEvents: `WITH seqs AS (
      SELECT row_number() OVER (ORDER BY seq) AS ord, seq
      FROM (SELECT nextval('events_seq_seq') AS seq FROM generate_series(1, cardinality($2::text[]))) drawn
    ), inserted AS (
      INSERT INTO events (seq, account_id, profile_id, id, name, ts, properties, device_id, platform)
      SELECT seqs.seq, $1, e.profile_id, e.id, e.name, e.ts, e.properties, e.device_id, e.platform
      FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::jsonb[], $7::text[], $8::text[])
        WITH ORDINALITY AS e(profile_id, id, name, ts, properties, device_id, platform, ord)
      JOIN seqs USING (ord)
    )
    SELECT seq FROM seqs ORDER BY ord`,
  restoreEvents: `INSERT INTO events (seq, account_id, profile_id, id, name, ts, properties, device_id, platform)
    SELECT e.seq, $1, e.profile_id, e.id, e.name, e.ts, e.properties, e.device_id, e.platform
    FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::jsonb[], $8::text[], $9::text[])
      AS e(seq, profile_id, id, name, ts, properties, device_id, platform)`,
  // A backward probe of events_by_seq. Seqs are never reused, so this never goes back below a seq still in use.
  maxEventSeq: "SELECT max(seq) AS seq FROM events WHERE account_id = $1",
  // Newest first; the cursor is the last (ts, seq) of the previous page. A backward scan of the primary key.
  eventsPageOfProfile: `SELECT ${EVENT_COLUMNS} FROM events
    WHERE account_id = $1 AND profile_id = $2 AND (ts, seq) < ($3::bigint, $4::bigint)
    ORDER BY ts DESC, seq DESC LIMIT $5`,
  // Several timelines: the newest `limit` of each profile (one short index scan each), then the newest of those.
  eventsPageOfProfiles: `SELECT e.* FROM unnest($2::text[]) AS p(id)
    CROSS JOIN LATERAL (
      SELECT ${EVENT_COLUMNS} FROM events
      WHERE account_id = $1 AND profile_id = p.id AND (ts, seq) < ($3::bigint, $4::bigint)
      ORDER BY ts DESC, seq DESC LIMIT $5
    ) e
    ORDER BY e.ts DESC, e.seq DESC LIMIT $5`,
  eventsBySeq: `SELECT ${EVENT_COLUMNS} FROM events WHERE account_id = $1 AND seq = ANY($2::bigint[]) ORDER BY seq`,
  eventSeqsOfProfile: "SELECT seq FROM events WHERE account_id = $1 AND profile_id = $2 ORDER BY seq",
  moveEvents: "UPDATE events SET profile_id = $1 WHERE account_id = $2 AND seq = ANY($3::bigint[])",
  deleteEvents: "DELETE FROM events WHERE account_id = $1 AND seq = ANY($2::bigint[])",

  // Type registry.
  insertType: `INSERT INTO type_registry (account_id, scope, path, type) VALUES ($1, $2, $3, $4)
    ON CONFLICT (account_id, scope, path) DO NOTHING RETURNING type`,
  getType: "SELECT type FROM type_registry WHERE account_id = $1 AND scope = $2 AND path = $3",
  changeType: "UPDATE type_registry SET type = $1 WHERE account_id = $2 AND scope = $3 AND path = $4",
  listTypes: "SELECT scope, path, type FROM type_registry WHERE account_id = $1 ORDER BY scope, path",

  // Merges and their journals.
  insertMerge: `INSERT INTO merges (account_id, id, target_id, source_id, created_at, undone_at, data)
    VALUES ($1, $2, $3, $4, $5, $6, $7)`,
  getMerge: `SELECT ${MERGE_COLUMNS} FROM merges WHERE account_id = $1 AND id = $2`,
  // Each side uses its own index (a BitmapOr); seq breaks ties of created_at in insertion order.
  listMergesTouching: `SELECT ${MERGE_COLUMNS} FROM merges
    WHERE account_id = $1 AND (target_id = $2 OR source_id = $2)
    ORDER BY created_at DESC, seq DESC`,
  markMergeUndone: "UPDATE merges SET undone_at = $1 WHERE account_id = $2 AND id = $3",
  appendJournal: "INSERT INTO merge_journal (account_id, merge_id, record) VALUES ($1, $2, $3)",
  listJournal: "SELECT record FROM merge_journal WHERE account_id = $1 AND merge_id = $2 ORDER BY seq",
  deleteJournalsTouching: `DELETE FROM merge_journal
    WHERE account_id = $1 AND merge_id IN (
      SELECT id FROM merges WHERE account_id = $1 AND (target_id = $2 OR source_id = $2)
    )`,
  deleteMergesTouching: "DELETE FROM merges WHERE account_id = $1 AND (target_id = $2 OR source_id = $2)",

  // Deleting a profile (SEMANTICS §10): one statement per table it owns rows in.
  deleteProfile: "DELETE FROM profiles WHERE account_id = $1 AND id = $2",
  deleteIdentitiesOf: "DELETE FROM identities WHERE account_id = $1 AND profile_id = $2",
  deleteDevicesOf: "DELETE FROM devices WHERE account_id = $1 AND profile_id = $2",
  deleteUserAccountsOf: "DELETE FROM user_accounts WHERE account_id = $1 AND profile_id = $2",
  deleteDocumentsOf: "DELETE FROM documents WHERE account_id = $1 AND profile_id = $2",
  deleteEventsOf: "DELETE FROM events WHERE account_id = $1 AND profile_id = $2",
} as const;

type StatementName = keyof typeof SQL;

/** What statements run on: the pool (one read on any connection) or the one connection of a transaction. */
type Queryable = pg.Pool | pg.PoolClient;

/** Runs a named statement; errors about text PostgreSQL cannot store become a record's INVALID_VALUE. */
async function run<R extends pg.QueryResultRow>(
  db: Queryable,
  name: StatementName,
  values: unknown[],
): Promise<pg.QueryResult<R>> {
  try {
    return await db.query<R>({ name, text: SQL[name], values });
  } catch (error) {
    throw unstorable(error) ?? error;
  }
}

async function rows<R extends pg.QueryResultRow>(db: Queryable, name: StatementName, values: unknown[]): Promise<R[]> {
  return (await run<R>(db, name, values)).rows;
}

async function first<R extends pg.QueryResultRow>(
  db: Queryable,
  name: StatementName,
  values: unknown[],
): Promise<R | undefined> {
  return (await run<R>(db, name, values)).rows[0];
}

/** character_not_in_repertoire (U+0000 in text) and untranslatable_character (U+0000 escaped in jsonb). */
const UNSTORABLE_TEXT = new Set(["22021", "22P05"]);

function unstorable(error: unknown): PortraitError | null {
  if (!(error instanceof Error) || !UNSTORABLE_TEXT.has((error as { code?: string }).code ?? "")) return null;
  return new PortraitError("INVALID_VALUE", "text must not contain the character U+0000 (NUL)");
}

/** JSON.stringify escapes exactly these as \u…: U+0000 and unpaired surrogates, neither of which jsonb accepts. */
const JSONB_UNSAFE = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f])/i;

/** A value as a jsonb parameter. Objects cannot be passed as they are: node-postgres sends JS arrays as SQL arrays. */
function json(value: unknown): string {
  const text = JSON.stringify(value);
  if (text.includes("\\u") && JSONB_UNSAFE.test(text)) {
    throw new PortraitError(
      "INVALID_VALUE",
      "text must not contain the character U+0000 (NUL) or an unpaired UTF-16 surrogate",
    );
  }
  return text;
}

function toEvent(row: EventRow): StoredEvent {
  return {
    seq: row.seq,
    profileId: row.profileId,
    id: row.id,
    name: row.name,
    ts: row.ts,
    properties: row.properties,
    deviceId: row.deviceId,
    platform: row.platform,
  };
}

function toDocument(row: DocumentRow): ProfileDocument {
  return {
    compartmentId: row.compartmentId,
    userAccountId: row.userAccountId,
    profileId: row.profileId,
    body: row.body,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

function toAccount(row: AccountRow): Account {
  return { id: row.id, name: row.name, settings: row.settings, createdAt: row.createdAt };
}

function toMerge(row: MergeTableRow): MergeRow {
  const data = row.data;
  return {
    id: row.id,
    targetId: row.targetId,
    sourceId: row.sourceId,
    createdAt: row.createdAt,
    undoneAt: row.undoneAt,
    eventSeqAtMerge: data.eventSeqAtMerge,
    target: data.target,
    source: data.source,
    movedEventSeqs: data.movedEventSeqs,
    droppedEvents: data.droppedEvents,
  };
}

/**
 * bigint (seqs, epoch milliseconds, counts) as a JS number rather than node-postgres's default string. Every value
 * Portrait stores there is a safe integer; one that is not is a corrupt row, and saying so beats rounding it.
 */
function parseBigint(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError(`bigint ${text} is beyond the safe integer range`);
  return n;
}

const TYPES = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === pg.types.builtins.INT8 && format !== "binary"
      ? parseBigint
      : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"],
};

/**
 * The name of a handle's advisory lock (hashed to 64 bits in SQL). JSON keeps the parts apart whatever they contain; two
 * names that hash alike only make their transactions take turns.
 */
const handleName = {
  identity: (accountId: string, key: IdentityKey, value: string) => JSON.stringify(["identity", accountId, key, value]),
  device: (accountId: string, deviceId: string) => JSON.stringify(["device", accountId, deviceId]),
  userAccount: (accountId: string, ref: UserAccountRef) =>
    JSON.stringify(["user_account", accountId, ref.compartmentId, ref.userAccountId]),
};

/** Deadlock detected, serialization failure: PostgreSQL gave up on the transaction, not on the data. */
const RETRYABLE = new Set(["40P01", "40001"]);

function isRetryable(error: unknown): boolean {
  return error instanceof Error && RETRYABLE.has((error as { code?: string }).code ?? "");
}

/** A short random pause that grows with the attempt, so the transactions that collided do not collide again. */
function backOff(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, attempt * (5 + Math.random() * 20)));
}

class PostgresReader implements StoreReader {
  constructor(private readonly connection: Queryable) {}

  /** Where to run a read, once the caller may use it for this account (a transaction narrows this). */
  protected db(_accountId: string): Queryable {
    return this.connection;
  }

  async getProfile(accountId: string, profileId: string): Promise<ProfileState | null> {
    const row = await first<{ state: ProfileState }>(this.db(accountId), "getProfile", [accountId, profileId]);
    return row?.state ?? null;
  }

  async findProfileByIdentity(accountId: string, key: IdentityKey, value: string): Promise<string | null> {
    const row = await first<OwnerRow>(this.db(accountId), "findIdentity", [accountId, key, value]);
    return row?.profile_id ?? null;
  }

  async findDevice(accountId: string, deviceId: string): Promise<DeviceRow | null> {
    return (await first<DeviceRow>(this.db(accountId), "findDevice", [accountId, deviceId])) ?? null;
  }

  async findProfileByUserAccount(accountId: string, ref: UserAccountRef): Promise<string | null> {
    const row = await first<OwnerRow>(this.db(accountId), "findUserAccount", [
      accountId,
      ref.compartmentId,
      ref.userAccountId,
    ]);
    return row?.profile_id ?? null;
  }

  async listDevices(accountId: string, profileId: string): Promise<DeviceRow[]> {
    return rows<DeviceRow>(this.db(accountId), "listDevices", [accountId, profileId]);
  }

  async listUserAccounts(accountId: string, profileId: string): Promise<UserAccountRef[]> {
    return rows<UserAccountRef>(this.db(accountId), "listUserAccounts", [accountId, profileId]);
  }

  async listOrphans(accountId: string, profileId: string): Promise<string[]> {
    return (await rows<{ id: string }>(this.db(accountId), "listOrphans", [accountId, profileId])).map((r) => r.id);
  }

  async listTombstones(accountId: string, profileId: string): Promise<string[]> {
    return (await rows<{ id: string }>(this.db(accountId), "listTombstones", [accountId, profileId])).map((r) => r.id);
  }

  async listEvents(
    accountId: string,
    profileIds: string[],
    opts: { before?: { ts: number; seq: number } | null; limit: number },
  ): Promise<EventPage> {
    const db = this.db(accountId);
    const { limit } = opts;
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`listEvents: limit must be ≥ 1, got ${limit}`);
    const ids = [...new Set(profileIds)];
    if (ids.length === 0) return { events: [], next: null };
    const ts = opts.before?.ts ?? END;
    const seq = opts.before?.seq ?? END;
    // One row more than asked tells whether another page exists.
    const found =
      ids.length === 1
        ? await rows<EventRow>(db, "eventsPageOfProfile", [accountId, ids[0], ts, seq, limit + 1])
        : await rows<EventRow>(db, "eventsPageOfProfiles", [accountId, ids, ts, seq, limit + 1]);
    const more = found.length > limit;
    if (more) found.length = limit;
    const last = found[found.length - 1];
    return { events: found.map(toEvent), next: more && last ? { ts: last.ts, seq: last.seq } : null };
  }

  async getDocument(accountId: string, ref: UserAccountRef): Promise<ProfileDocument | null> {
    const row = await first<DocumentRow>(this.db(accountId), "getDocument", [
      accountId,
      ref.compartmentId,
      ref.userAccountId,
    ]);
    return row === undefined ? null : toDocument(row);
  }

  async listDocuments(accountId: string, profileId: string): Promise<ProfileDocument[]> {
    return (await rows<DocumentRow>(this.db(accountId), "listDocuments", [accountId, profileId])).map(toDocument);
  }

  async listChargedIds(accountId: string, profileId: string): Promise<string[]> {
    const found = await rows<{ charged_id: string }>(this.db(accountId), "listChargedIds", [accountId, profileId]);
    return found.map((r) => r.charged_id);
  }

  async listTypes(accountId: string): Promise<TypeRegistration[]> {
    return rows<TypeRegistration>(this.db(accountId), "listTypes", [accountId]);
  }

  async getMerge(accountId: string, mergeId: string): Promise<MergeRow | null> {
    const row = await first<MergeTableRow>(this.db(accountId), "getMerge", [accountId, mergeId]);
    return row === undefined ? null : toMerge(row);
  }

  async listMergesTouching(accountId: string, profileId: string): Promise<MergeRow[]> {
    return (await rows<MergeTableRow>(this.db(accountId), "listMergesTouching", [accountId, profileId])).map(toMerge);
  }

  async countControlGroupExcluded(accountId: string): Promise<number> {
    return (await first<{ n: number }>(this.db(accountId), "countControlGroupExcluded", [accountId]))?.n ?? 0;
  }

  async listProfileIds(accountId: string, afterId: string | null, limit: number): Promise<string[]> {
    // Every id sorts after "" (byte order, COLLATE "C"), so a null cursor starts at the first profile.
    const found = await rows<{ id: string }>(this.db(accountId), "listProfileIds", [accountId, afterId ?? "", limit]);
    return found.map((r) => r.id);
  }

  async maxEventSeq(accountId: string): Promise<number> {
    return (await first<{ seq: number | null }>(this.db(accountId), "maxEventSeq", [accountId]))?.seq ?? 0;
  }
}

/** The transaction handed to one `write()` function; unusable once that write has committed or rolled back. */
class PostgresTx extends PostgresReader implements StoreTx {
  private open = true;
  /** Savepoints currently open, innermost last. */
  private depth = 0;

  constructor(
    private readonly client: pg.PoolClient,
    private readonly accountId: string,
  ) {
    super(client);
  }

  close(): void {
    this.open = false;
  }

  /** SEMANTICS §1: no write ever crosses accounts, so a transaction serves only the account it was opened for. */
  protected override db(accountId: string): Queryable {
    if (!this.open) throw new Error("This transaction has already finished; use the store inside write() only.");
    if (accountId !== this.accountId) {
      throw new Error(`A transaction of account ${this.accountId} cannot touch account ${accountId}.`);
    }
    return this.client;
  }

  async lockProfile(accountId: string, profileId: string): Promise<ProfileState | null> {
    // The row lock lasts until COMMIT: a second writer of this profile, in any process, waits here.
    const row = await first<{ state: ProfileState }>(this.db(accountId), "lockProfile", [accountId, profileId]);
    if (row) segmentIndex.loaded(this, row.state);
    return row?.state ?? null;
  }

  async insertProfile(accountId: string, state: ProfileState): Promise<void> {
    await run(this.db(accountId), "insertProfile", [
      accountId,
      state.id,
      json(state),
      state.mergedInto,
      state.orphanOf,
      state.flags.controlGroupExcluded,
      state.createdAt,
      state.updatedAt,
    ]);
    await segmentIndex.written(this, this.client, accountId, state, true);
  }

  async updateProfile(accountId: string, state: ProfileState): Promise<void> {
    const result = await run(this.db(accountId), "updateProfile", [
      json(state),
      state.mergedInto,
      state.orphanOf,
      state.flags.controlGroupExcluded,
      state.createdAt,
      state.updatedAt,
      accountId,
      state.id,
    ]);
    // Updating a profile that does not exist is a bug upstream; saying so beats losing the write silently.
    if (result.rowCount === 0) throw new Error(`updateProfile: account ${accountId} has no profile ${state.id}.`);
    await segmentIndex.written(this, this.client, accountId, state, false);
  }

  override async findProfileByIdentity(accountId: string, key: IdentityKey, value: string): Promise<string | null> {
    return this.holdIfAbsent(handleName.identity(accountId, key, value), () =>
      super.findProfileByIdentity(accountId, key, value),
    );
  }

  override async findDevice(accountId: string, deviceId: string): Promise<DeviceRow | null> {
    return this.holdIfAbsent(handleName.device(accountId, deviceId), () => super.findDevice(accountId, deviceId));
  }

  override async findProfileByUserAccount(accountId: string, ref: UserAccountRef): Promise<string | null> {
    return this.holdIfAbsent(handleName.userAccount(accountId, ref), () =>
      super.findProfileByUserAccount(accountId, ref),
    );
  }

  /**
   * A look-up that finds nothing holds the handle until COMMIT, then looks again (a new statement, so a new snapshot:
   * it sees what a transaction that held the handle before committed). The transaction can then act on "this handle is
   * free" as it would on SQLite, where writers run one at a time: a competing claim waits for it instead of slipping
   * in between (two logins with one new identity make one profile, not two with one of them refused).
   * A handle that is found is not held: its owner is a profile, and writers of that profile queue on its row lock.
   */
  private async holdIfAbsent<V>(name: string, read: () => Promise<V | null>): Promise<V | null> {
    const found = await read();
    if (found !== null) return found;
    await run(this.client, "holdHandle", [name]);
    return read();
  }

  async claimIdentity(accountId: string, key: IdentityKey, value: string, profileId: string): Promise<string> {
    const db = this.db(accountId);
    const held = handleName.identity(accountId, key, value);
    return claim(
      async () => (await first<OwnerRow>(db, "insertIdentity", [accountId, key, value, profileId, held]))?.profile_id,
      async () => (await first<OwnerRow>(db, "findIdentity", [accountId, key, value]))?.profile_id,
    );
  }

  async releaseIdentity(accountId: string, key: IdentityKey, value: string, profileId: string): Promise<void> {
    await run(this.db(accountId), "releaseIdentity", [accountId, key, value, profileId]);
  }

  async releaseIdentityKey(accountId: string, key: IdentityKey): Promise<void> {
    await run(this.db(accountId), "releaseIdentityKey", [accountId, key]);
  }

  async claimDevice(accountId: string, device: DeviceRow): Promise<string> {
    const db = this.db(accountId);
    const { deviceId, profileId } = device;
    const held = handleName.device(accountId, deviceId);
    const row = [accountId, deviceId, profileId, device.pushToken ?? null, device.platform ?? null, held];
    return claim(
      async () => (await first<OwnerRow>(db, "insertDevice", row))?.profile_id,
      async () => (await first<DeviceRow>(db, "findDevice", [accountId, deviceId]))?.profileId,
    );
  }

  async upsertDevice(accountId: string, device: DeviceRow): Promise<void> {
    await run(this.db(accountId), "upsertDevice", [
      accountId,
      device.deviceId,
      device.profileId,
      device.pushToken ?? null,
      device.platform ?? null,
      handleName.device(accountId, device.deviceId),
    ]);
  }

  async deleteDevice(accountId: string, deviceId: string): Promise<void> {
    await run(this.db(accountId), "deleteDevice", [accountId, deviceId]);
  }

  async claimUserAccount(accountId: string, ref: UserAccountRef, profileId: string): Promise<string> {
    const db = this.db(accountId);
    const key = [accountId, ref.compartmentId, ref.userAccountId];
    return claim(
      async () =>
        (await first<OwnerRow>(db, "insertUserAccount", [...key, profileId, handleName.userAccount(accountId, ref)]))
          ?.profile_id,
      async () => (await first<OwnerRow>(db, "findUserAccount", key))?.profile_id,
    );
  }

  async releaseUserAccount(accountId: string, ref: UserAccountRef): Promise<void> {
    await run(this.db(accountId), "releaseUserAccount", [accountId, ref.compartmentId, ref.userAccountId]);
  }

  async putDocument(accountId: string, doc: ProfileDocument): Promise<void> {
    await run(this.db(accountId), "putDocument", [
      accountId,
      doc.compartmentId,
      doc.userAccountId,
      doc.profileId,
      json(doc.body),
      doc.createdAt,
      doc.updatedAt,
    ]);
  }

  async deleteDocument(accountId: string, ref: UserAccountRef): Promise<boolean> {
    const result = await run(this.db(accountId), "deleteDocument", [accountId, ref.compartmentId, ref.userAccountId]);
    return (result.rowCount ?? 0) > 0;
  }

  async claimRecordId(accountId: string, recordId: string, at: number): Promise<boolean> {
    // A racing claim of the same id waits for this transaction: false if it commits, true if it rolls back.
    return (await run(this.db(accountId), "claimRecordId", [accountId, recordId, at])).rowCount === 1;
  }

  async claimChargedId(accountId: string, profileId: string, chargedId: string): Promise<boolean> {
    return (await run(this.db(accountId), "claimChargedId", [accountId, profileId, chargedId])).rowCount === 1;
  }

  async releaseChargedIds(accountId: string, profileId: string): Promise<void> {
    await run(this.db(accountId), "releaseChargedIds", [accountId, profileId]);
  }

  async insertEvents(accountId: string, events: NewEvent[]): Promise<number[]> {
    const db = this.db(accountId);
    if (events.length === 0) return [];
    const inserted = await rows<{ seq: number }>(db, "insertEvents", [
      accountId,
      events.map((e) => e.profileId),
      events.map((e) => e.id),
      events.map((e) => e.name),
      events.map((e) => e.ts),
      events.map((e) => json(e.properties)),
      events.map((e) => e.deviceId ?? null),
      events.map((e) => e.platform ?? null),
    ]);
    return inserted.map((r) => r.seq);
  }

  async listEventsBySeq(accountId: string, seqs: number[]): Promise<StoredEvent[]> {
    return (await rows<EventRow>(this.db(accountId), "eventsBySeq", [accountId, seqs])).map(toEvent);
  }

  async listEventSeqs(accountId: string, profileId: string): Promise<number[]> {
    const found = await rows<{ seq: number }>(this.db(accountId), "eventSeqsOfProfile", [accountId, profileId]);
    return found.map((r) => r.seq);
  }

  async moveEvents(accountId: string, seqs: number[], toProfileId: string): Promise<void> {
    await run(this.db(accountId), "moveEvents", [toProfileId, accountId, seqs]);
  }

  async deleteEvents(accountId: string, seqs: number[]): Promise<void> {
    await run(this.db(accountId), "deleteEvents", [accountId, seqs]);
  }

  async restoreEvents(accountId: string, events: StoredEvent[]): Promise<void> {
    const db = this.db(accountId);
    if (events.length === 0) return;
    await run(db, "restoreEvents", [
      accountId,
      events.map((e) => e.seq),
      events.map((e) => e.profileId),
      events.map((e) => e.id),
      events.map((e) => e.name),
      events.map((e) => e.ts),
      events.map((e) => json(e.properties)),
      events.map((e) => e.deviceId ?? null),
      events.map((e) => e.platform ?? null),
    ]);
  }

  async registerType(accountId: string, scope: TypeScope, path: string, type: ValueType): Promise<ValueType> {
    const db = this.db(accountId);
    return claim(
      async () => (await first<{ type: ValueType }>(db, "insertType", [accountId, scope, path, type]))?.type,
      async () => (await first<{ type: ValueType }>(db, "getType", [accountId, scope, path]))?.type,
    );
  }

  async changeType(accountId: string, scope: TypeScope, path: string, type: ValueType): Promise<void> {
    await run(this.db(accountId), "changeType", [type, accountId, scope, path]);
  }

  async insertMerge(accountId: string, merge: MergeRow): Promise<void> {
    const data: MergeData = {
      eventSeqAtMerge: merge.eventSeqAtMerge,
      target: merge.target,
      source: merge.source,
      movedEventSeqs: merge.movedEventSeqs,
      droppedEvents: merge.droppedEvents,
    };
    await run(this.db(accountId), "insertMerge", [
      accountId,
      merge.id,
      merge.targetId,
      merge.sourceId,
      merge.createdAt,
      merge.undoneAt,
      json(data),
    ]);
  }

  async markMergeUndone(accountId: string, mergeId: string, at: number): Promise<void> {
    await run(this.db(accountId), "markMergeUndone", [at, accountId, mergeId]);
  }

  async appendJournal(accountId: string, mergeId: string, record: AnyRecord): Promise<void> {
    await run(this.db(accountId), "appendJournal", [accountId, mergeId, json(record)]);
  }

  async listJournal(accountId: string, mergeId: string): Promise<AnyRecord[]> {
    const found = await rows<{ record: AnyRecord }>(this.db(accountId), "listJournal", [accountId, mergeId]);
    return found.map((r) => r.record);
  }

  async deleteMergesTouching(accountId: string, profileId: string): Promise<void> {
    const db = this.db(accountId);
    await run(db, "deleteJournalsTouching", [accountId, profileId]);
    await run(db, "deleteMergesTouching", [accountId, profileId]);
  }

  async deleteProfileData(accountId: string, profileId: string): Promise<DeletedCounts> {
    const db = this.db(accountId);
    const count = async (name: StatementName) => (await run(db, name, [accountId, profileId])).rowCount ?? 0;
    const counts: DeletedCounts = {
      profiles: await count("deleteProfile"),
      identities: await count("deleteIdentitiesOf"),
      devices: await count("deleteDevicesOf"),
      events: await count("deleteEventsOf"),
    };
    await count("deleteUserAccountsOf");
    await count("deleteDocumentsOf");
    await count("releaseChargedIds");
    await segmentIndex.deleted(this, db, accountId, profileId);
    return counts;
  }

  async redactImportData(accountId: string, profileId: string, handles: readonly ImportHandle[]): Promise<void> {
    this.db(accountId);
    await redactImportData(this.client, accountId, profileId, handles);
  }

  async savepoint<T>(fn: () => Promise<T>): Promise<T> {
    const client = this.db(this.accountId);
    // Open savepoints form a stack, so naming each by its depth keeps names unique.
    const depth = this.depth;
    const name = `record_${depth}`;
    await client.query(`SAVEPOINT ${name}`);
    this.depth = depth + 1;
    try {
      const result = await fn();
      this.leave(depth);
      await client.query(`RELEASE SAVEPOINT ${name}`);
      return result;
    } catch (error) {
      this.depth = depth;
      segmentIndex.rolledBack(this);
      // Also what brings the transaction back from PostgreSQL's "aborted" state after a failed statement. If the
      // connection itself is gone there is nothing to undo here: the caller's rollback (or the server) ends it.
      try {
        await client.query(`ROLLBACK TO SAVEPOINT ${name}`);
        await client.query(`RELEASE SAVEPOINT ${name}`);
      } catch {
        // The original error says more than this one.
      }
      throw error;
    }
  }

  /** Savepoints must nest: two run side by side (not awaited in turn) would release each other's writes. */
  private leave(depth: number): void {
    if (this.depth !== depth + 1) {
      throw new Error("Savepoints of one transaction must nest; await each before starting the next.");
    }
    this.depth = depth;
  }
}

/**
 * Insert-if-absent, then the owner: this claim's value when its insert won, else the value already there. The winner
 * can be released between the two statements (by a transaction that committed meanwhile); the claim then simply
 * tries again, and the handle is free or owned anew.
 */
async function claim<V>(insert: () => Promise<V | undefined>, read: () => Promise<V | undefined>): Promise<V> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const mine = await insert();
    if (mine !== undefined) return mine;
    const theirs = await read();
    if (theirs !== undefined) return theirs;
  }
  throw new Error("A claimed handle was taken and released 10 times in a row; giving up.");
}

export class PostgresStore implements Store {
  readonly dialect = "postgres" as const;
  readonly reader: StoreReader;
  readonly imports: PostgresImports;
  readonly segments: PostgresSegments;
  private closing: Promise<void> | null = null;

  private constructor(private readonly pool: pg.Pool) {
    this.reader = new PostgresReader(pool);
    this.imports = new PostgresImports(pool);
    this.segments = new PostgresSegments(pool);
  }

  /**
   * A pool of `max` connections (default 10) to the database at `url`; fails now, not at the first request, when the
   * database cannot be reached. Run `migrate()` before use.
   */
  static async connect(url: string, opts: { max?: number } = {}): Promise<PostgresStore> {
    const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10, types: TYPES });
    // An idle connection that the server closes emits an error; the pool drops it and opens a new one when needed.
    pool.on("error", () => undefined);
    try {
      await pool.query("SELECT 1");
    } catch (error) {
      await pool.end();
      throw error;
    }
    return new PostgresStore(pool);
  }

  async migrate(): Promise<void> {
    await migrate(this.pool);
    await this.segments.backfill();
  }

  /** Waits for the connections in use (a write in progress commits), then closes them all. */
  async close(): Promise<void> {
    this.closing ??= this.pool.end();
    return this.closing;
  }

  async createAccount(account: Account): Promise<void> {
    await run(this.pool, "insertAccount", [account.id, account.name, json(account.settings), account.createdAt]);
  }

  async getAccount(accountId: string): Promise<Account | null> {
    const row = await first<AccountRow>(this.pool, "getAccount", [accountId]);
    return row === undefined ? null : toAccount(row);
  }

  async listAccounts(): Promise<Account[]> {
    return (await rows<AccountRow>(this.pool, "listAccounts", [])).map(toAccount);
  }

  async updateAccountSettings(accountId: string, settings: AccountSettings): Promise<void> {
    const result = await run(this.pool, "updateAccountSettings", [json(settings), accountId]);
    if (result.rowCount === 0) throw new Error(`updateAccountSettings: no account ${accountId}.`);
  }

  async insertApiKey(key: ApiKeyRow): Promise<void> {
    await run(this.pool, "insertApiKey", [
      key.id,
      key.accountId,
      key.kind,
      key.name,
      key.hash,
      key.prefix,
      key.createdAt,
      key.revokedAt,
    ]);
  }

  async findApiKeyByHash(hash: string): Promise<ApiKeyRow | null> {
    return (await first<ApiKeyRow>(this.pool, "findApiKeyByHash", [hash])) ?? null;
  }

  async listApiKeys(accountId: string): Promise<ApiKeyRow[]> {
    return rows<ApiKeyRow>(this.pool, "listApiKeys", [accountId]);
  }

  async revokeApiKey(accountId: string, keyId: string, at: number): Promise<boolean> {
    return ((await run(this.pool, "revokeApiKey", [at, accountId, keyId])).rowCount ?? 0) > 0;
  }

  async insertDashboardUser(user: DashboardUserRow): Promise<void> {
    await run(this.pool, "insertDashboardUser", [user.username, user.accountId, user.passwordHash]);
  }

  async findDashboardUser(username: string): Promise<DashboardUserRow | null> {
    return (await first<DashboardUserRow>(this.pool, "findDashboardUser", [username])) ?? null;
  }

  async getMeta(key: string): Promise<string | null> {
    return (await first<{ value: string }>(this.pool, "getMeta", [key]))?.value ?? null;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await run(this.pool, "setMeta", [key, value]);
  }

  async write<T>(accountId: string, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.attempt(accountId, fn);
      if ("value" in outcome) return outcome.value;
      if (attempt >= MAX_ATTEMPTS || !isRetryable(outcome.error)) throw outcome.error;
      await backOff(attempt);
    }
  }

  /** One run of a write function in its own transaction: committed with its value, or rolled back with its error. */
  private async attempt<T>(
    accountId: string,
    fn: (tx: StoreTx) => Promise<T>,
  ): Promise<{ value: T } | { error: unknown }> {
    const client = await this.pool.connect();
    const tx = new PostgresTx(client, accountId);
    // A connection whose ROLLBACK failed is in an unknown state: it is closed rather than given back to the pool.
    let broken: Error | undefined;
    try {
      // Explicit, whatever default_transaction_isolation says: the locking above is designed for READ COMMITTED.
      await client.query("BEGIN ISOLATION LEVEL READ COMMITTED");
      const value = await fn(tx);
      await client.query("COMMIT");
      return { value };
    } catch (error) {
      await client.query("ROLLBACK").catch((e: Error) => {
        broken = e;
      });
      return { error };
    } finally {
      tx.close();
      client.release(broken);
    }
  }
}
