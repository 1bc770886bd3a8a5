/**
 * The Store on SQLite (better-sqlite3): one connection, WAL, every statement prepared once.
 *
 * better-sqlite3 is synchronous, but a `write()` function is async and awaits between statements, so two writes
 * could interleave on the one connection. `WriteQueue` makes them take turns (FIFO): one transaction at a time is
 * exactly SQLite's own model, and it is what makes `lockProfile` a plain read.
 * Reads through `reader` use a second, read-only connection on file databases, so they see committed data only
 * (WAL lets them run beside the writer). An in-memory database has one connection, and its reads also see an open
 * transaction's writes.
 */
import Database from "better-sqlite3";
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
import { migrate } from "./schema.js";

/** Larger than any ts or seq: the cursor of the first page. */
const END = Number.MAX_SAFE_INTEGER;

// Rows as selected (columns aliased to the domain's names where that is all the mapping needed).
interface AccountRow {
  id: string;
  name: string;
  settings: string;
  createdAt: number;
}
interface EventRow {
  seq: number;
  profileId: string;
  id: string;
  name: string;
  ts: number;
  properties: string;
  deviceId: string | null;
  platform: string | null;
}
interface DocumentRow {
  compartmentId: string;
  userAccountId: string;
  profileId: string;
  body: string;
  createdAt: number;
  updatedAt: number;
}
interface MergeTableRow {
  id: string;
  targetId: string;
  sourceId: string;
  createdAt: number;
  undoneAt: number | null;
  data: string;
}
/** The part of a MergeRow kept as one JSON column. */
type MergeData = Pick<MergeRow, "eventSeqAtMerge" | "target" | "source" | "movedEventSeqs" | "droppedEvents">;

const EVENT_COLUMNS = `seq, profile_id AS profileId, id, name, ts, properties, device_id AS deviceId, platform`;
const DOCUMENT_COLUMNS = `compartment_id AS compartmentId, user_account_id AS userAccountId, profile_id AS profileId,
  body, created_at AS createdAt, updated_at AS updatedAt`;
const API_KEY_COLUMNS = `id, account_id AS accountId, kind, name, hash, prefix, created_at AS createdAt,
  revoked_at AS revokedAt`;
const MERGE_COLUMNS = `id, target_id AS targetId, source_id AS sourceId, created_at AS createdAt,
  undone_at AS undoneAt, data`;

/** Every statement of the adapter, prepared once when the store opens. */
function prepareStatements(db: Database.Database) {
  /** A statement whose result is its first column. */
  const value = <P extends unknown[], V>(sql: string) => db.prepare<P, V>(sql).pluck();
  const row = <P extends unknown[], R>(sql: string) => db.prepare<P, R>(sql);
  const run = <P extends unknown[] | object>(sql: string) => db.prepare<P>(sql);

  return {
    begin: run<[]>("BEGIN IMMEDIATE"),
    commit: run<[]>("COMMIT"),
    rollback: run<[]>("ROLLBACK"),

    // Accounts, keys, dashboard users, meta.
    insertAccount: run<[string, string, string, number]>(
      "INSERT INTO accounts (id, name, settings, created_at) VALUES (?, ?, ?, ?)",
    ),
    getAccount: row<[string], AccountRow>(
      "SELECT id, name, settings, created_at AS createdAt FROM accounts WHERE id = ?",
    ),
    listAccounts: row<[], AccountRow>(
      "SELECT id, name, settings, created_at AS createdAt FROM accounts ORDER BY created_at, id",
    ),
    updateAccountSettings: run<[string, string]>("UPDATE accounts SET settings = ? WHERE id = ?"),
    insertApiKey: run<[string, string, string, string, string, string, number, number | null]>(
      `INSERT INTO api_keys (id, account_id, kind, name, hash, prefix, created_at, revoked_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    findApiKeyByHash: row<[string], ApiKeyRow>(`SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE hash = ?`),
    listApiKeys: row<[string], ApiKeyRow>(
      `SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE account_id = ? ORDER BY created_at, id`,
    ),
    // A second revoke keeps the first revocation time.
    revokeApiKey: run<[number, string, string]>(
      "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE account_id = ? AND id = ?",
    ),
    insertDashboardUser: run<[string, string, string]>(
      "INSERT INTO dashboard_users (username, account_id, password_hash) VALUES (?, ?, ?)",
    ),
    findDashboardUser: row<[string], DashboardUserRow>(
      `SELECT account_id AS accountId, username, password_hash AS passwordHash FROM dashboard_users
       WHERE username = ?`,
    ),
    getMeta: value<[string], string>("SELECT value FROM meta WHERE key = ?"),
    setMeta: run<[string, string]>(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    ),

    // Profiles. The columns beside `state` are rewritten from it on every write so they never go stale.
    getProfile: value<[string, string], string>("SELECT state FROM profiles WHERE account_id = ? AND id = ?"),
    insertProfile: run<[string, string, string, string | null, string | null, number, number, number]>(
      `INSERT INTO profiles (account_id, id, state, merged_into, orphan_of, control_group_excluded, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    updateProfile: run<[string, string | null, string | null, number, number, number, string, string]>(
      `UPDATE profiles
       SET state = ?, merged_into = ?, orphan_of = ?, control_group_excluded = ?, created_at = ?, updated_at = ?
       WHERE account_id = ? AND id = ?`,
    ),
    listOrphans: value<[string, string], string>(
      "SELECT id FROM profiles WHERE account_id = ? AND orphan_of = ? ORDER BY id",
    ),
    listTombstones: value<[string, string], string>(
      "SELECT id FROM profiles WHERE account_id = ? AND merged_into = ? ORDER BY id",
    ),
    // Tombstones are left out: they act as their target (SEMANTICS §7). The primary key gives the id order.
    listProfileIds: value<[string, string, number], string>(
      "SELECT id FROM profiles WHERE account_id = ? AND id > ? AND merged_into IS NULL ORDER BY id LIMIT ?",
    ),
    countControlGroupExcluded: value<[string], number>(
      `SELECT count(*) FROM profiles
       WHERE account_id = ? AND control_group_excluded = 1 AND merged_into IS NULL`,
    ),

    // Identities.
    findIdentity: value<[string, string, string], string>(
      "SELECT profile_id FROM identities WHERE account_id = ? AND key = ? AND value = ?",
    ),
    insertIdentity: run<[string, string, string, string]>(
      `INSERT INTO identities (account_id, key, value, profile_id) VALUES (?, ?, ?, ?)
       ON CONFLICT (account_id, key, value) DO NOTHING`,
    ),
    releaseIdentity: run<[string, string, string, string]>(
      "DELETE FROM identities WHERE account_id = ? AND key = ? AND value = ? AND profile_id = ?",
    ),
    releaseIdentityKey: run<[string, string]>("DELETE FROM identities WHERE account_id = ? AND key = ?"),

    // Devices.
    findDevice: row<[string, string], DeviceRow>(
      `SELECT device_id AS deviceId, profile_id AS profileId, push_token AS pushToken, platform FROM devices
       WHERE account_id = ? AND device_id = ?`,
    ),
    listDevices: row<[string, string], DeviceRow>(
      `SELECT device_id AS deviceId, profile_id AS profileId, push_token AS pushToken, platform FROM devices
       WHERE account_id = ? AND profile_id = ? ORDER BY device_id`,
    ),
    insertDevice: run<[string, string, string, string | null, string | null]>(
      `INSERT INTO devices (account_id, device_id, profile_id, push_token, platform) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (account_id, device_id) DO NOTHING`,
    ),
    upsertDevice: run<[string, string, string, string | null, string | null]>(
      `INSERT INTO devices (account_id, device_id, profile_id, push_token, platform) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (account_id, device_id) DO UPDATE
       SET profile_id = excluded.profile_id, push_token = excluded.push_token, platform = excluded.platform`,
    ),
    deleteDevice: run<[string, string]>("DELETE FROM devices WHERE account_id = ? AND device_id = ?"),

    // User accounts and their documents.
    findUserAccount: value<[string, string, string], string>(
      "SELECT profile_id FROM user_accounts WHERE account_id = ? AND compartment_id = ? AND user_account_id = ?",
    ),
    listUserAccounts: row<[string, string], UserAccountRef>(
      `SELECT compartment_id AS compartmentId, user_account_id AS userAccountId FROM user_accounts
       WHERE account_id = ? AND profile_id = ? ORDER BY compartment_id, user_account_id`,
    ),
    insertUserAccount: run<[string, string, string, string]>(
      `INSERT INTO user_accounts (account_id, compartment_id, user_account_id, profile_id) VALUES (?, ?, ?, ?)
       ON CONFLICT (account_id, compartment_id, user_account_id) DO NOTHING`,
    ),
    releaseUserAccount: run<[string, string, string]>(
      "DELETE FROM user_accounts WHERE account_id = ? AND compartment_id = ? AND user_account_id = ?",
    ),
    getDocument: row<[string, string, string], DocumentRow>(
      `SELECT ${DOCUMENT_COLUMNS} FROM documents WHERE account_id = ? AND compartment_id = ? AND user_account_id = ?`,
    ),
    listDocuments: row<[string, string], DocumentRow>(
      `SELECT ${DOCUMENT_COLUMNS} FROM documents WHERE account_id = ? AND profile_id = ?
       ORDER BY compartment_id, user_account_id`,
    ),
    putDocument: run<[string, string, string, string, string, number, number]>(
      `INSERT INTO documents (account_id, compartment_id, user_account_id, profile_id, body, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (account_id, compartment_id, user_account_id) DO UPDATE
       SET profile_id = excluded.profile_id, body = excluded.body, created_at = excluded.created_at,
           updated_at = excluded.updated_at`,
    ),
    deleteDocument: run<[string, string, string]>(
      "DELETE FROM documents WHERE account_id = ? AND compartment_id = ? AND user_account_id = ?",
    ),

    // Idempotency and Charged IDs.
    claimRecordId: run<[string, string, number]>(
      "INSERT OR IGNORE INTO record_ids (account_id, record_id, created_at) VALUES (?, ?, ?)",
    ),
    claimChargedId: run<[string, string, string]>(
      "INSERT OR IGNORE INTO charged_ids (account_id, profile_id, charged_id) VALUES (?, ?, ?)",
    ),
    listChargedIds: value<[string, string], string>(
      "SELECT charged_id FROM charged_ids WHERE account_id = ? AND profile_id = ? ORDER BY charged_id",
    ),
    releaseChargedIds: run<[string, string]>("DELETE FROM charged_ids WHERE account_id = ? AND profile_id = ?"),

    // Events. Lists of profiles or seqs travel as one JSON array parameter, so the statements stay prepared.
    insertEvent: run<[string, string, string, string, number, string, string | null, string | null]>(
      `INSERT INTO events (account_id, profile_id, id, name, ts, properties, device_id, platform)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    restoreEvent: run<[number, string, string, string, string, number, string, string | null, string | null]>(
      `INSERT INTO events (seq, account_id, profile_id, id, name, ts, properties, device_id, platform)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    raiseSeqHighWater: run<[string, number]>(
      `INSERT INTO event_seq_high_water (account_id, seq) VALUES (?, ?)
       ON CONFLICT (account_id) DO UPDATE SET seq = max(seq, excluded.seq)`,
    ),
    maxEventSeq: value<[string], number>("SELECT seq FROM event_seq_high_water WHERE account_id = ?"),
    // Newest first; the cursor is the last (ts, seq) of the previous page.
    eventsPageOfProfile: row<[string, string, number, number, number], EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events
       WHERE account_id = ? AND profile_id = ? AND (ts, seq) < (?, ?)
       ORDER BY ts DESC, seq DESC LIMIT ?`,
    ),
    eventsPageOfProfiles: row<[string, string, number, number, number], EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events
       WHERE account_id = ? AND profile_id IN (SELECT value FROM json_each(?)) AND (ts, seq) < (?, ?)
       ORDER BY ts DESC, seq DESC LIMIT ?`,
    ),
    // By seq: `+account_id` keeps the planner on the seq (rowid) look-ups rather than scanning the account's events.
    eventsBySeq: row<[string, string], EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events
       WHERE seq IN (SELECT value FROM json_each(?)) AND +account_id = ? ORDER BY seq`,
    ),
    eventSeqsOfProfile: value<[string, string], number>(
      "SELECT seq FROM events WHERE account_id = ? AND profile_id = ? ORDER BY seq",
    ),
    moveEvents: run<[string, string, string]>(
      "UPDATE events SET profile_id = ? WHERE seq IN (SELECT value FROM json_each(?)) AND +account_id = ?",
    ),
    deleteEvents: run<[string, string]>(
      "DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?)) AND +account_id = ?",
    ),

    // Type registry.
    insertType: run<[string, string, string, string]>(
      `INSERT INTO type_registry (account_id, scope, path, type) VALUES (?, ?, ?, ?)
       ON CONFLICT (account_id, scope, path) DO NOTHING`,
    ),
    getType: value<[string, string, string], ValueType>(
      "SELECT type FROM type_registry WHERE account_id = ? AND scope = ? AND path = ?",
    ),
    changeType: run<[string, string, string, string]>(
      "UPDATE type_registry SET type = ? WHERE account_id = ? AND scope = ? AND path = ?",
    ),
    listTypes: row<[string], TypeRegistration>(
      "SELECT scope, path, type FROM type_registry WHERE account_id = ? ORDER BY scope, path",
    ),

    // Merges and their journals.
    insertMerge: run<[string, string, string, string, number, number | null, string]>(
      `INSERT INTO merges (account_id, id, target_id, source_id, created_at, undone_at, data)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    getMerge: row<[string, string], MergeTableRow>(
      `SELECT ${MERGE_COLUMNS} FROM merges WHERE account_id = ? AND id = ?`,
    ),
    // The union lets each side use its own index; rowid breaks ties of created_at in insertion order.
    listMergesTouching: row<[{ accountId: string; profileId: string }], MergeTableRow>(
      `SELECT ${MERGE_COLUMNS} FROM merges
       WHERE rowid IN (
         SELECT rowid FROM merges WHERE account_id = @accountId AND target_id = @profileId
         UNION ALL
         SELECT rowid FROM merges WHERE account_id = @accountId AND source_id = @profileId
       )
       ORDER BY created_at DESC, rowid DESC`,
    ),
    markMergeUndone: run<[number, string, string]>("UPDATE merges SET undone_at = ? WHERE account_id = ? AND id = ?"),
    appendJournal: run<{ accountId: string; mergeId: string; record: string }>(
      `INSERT INTO merge_journal (account_id, merge_id, seq, record)
       SELECT @accountId, @mergeId, coalesce(max(seq), 0) + 1, @record FROM merge_journal
       WHERE account_id = @accountId AND merge_id = @mergeId`,
    ),
    listJournal: value<[string, string], string>(
      "SELECT record FROM merge_journal WHERE account_id = ? AND merge_id = ? ORDER BY seq",
    ),
    deleteJournalsTouching: run<{ accountId: string; profileId: string }>(
      `DELETE FROM merge_journal
       WHERE account_id = @accountId AND merge_id IN (
         SELECT id FROM merges WHERE account_id = @accountId AND target_id = @profileId
         UNION ALL
         SELECT id FROM merges WHERE account_id = @accountId AND source_id = @profileId
       )`,
    ),
    deleteMergesTouching: run<{ accountId: string; profileId: string }>(
      `DELETE FROM merges
       WHERE rowid IN (
         SELECT rowid FROM merges WHERE account_id = @accountId AND target_id = @profileId
         UNION ALL
         SELECT rowid FROM merges WHERE account_id = @accountId AND source_id = @profileId
       )`,
    ),

    // Deleting a profile (SEMANTICS §10): one statement per table it owns rows in.
    deleteProfile: run<[string, string]>("DELETE FROM profiles WHERE account_id = ? AND id = ?"),
    deleteIdentitiesOf: run<[string, string]>("DELETE FROM identities WHERE account_id = ? AND profile_id = ?"),
    deleteDevicesOf: run<[string, string]>("DELETE FROM devices WHERE account_id = ? AND profile_id = ?"),
    deleteUserAccountsOf: run<[string, string]>("DELETE FROM user_accounts WHERE account_id = ? AND profile_id = ?"),
    deleteDocumentsOf: run<[string, string]>("DELETE FROM documents WHERE account_id = ? AND profile_id = ?"),
    deleteEventsOf: run<[string, string]>("DELETE FROM events WHERE account_id = ? AND profile_id = ?"),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

interface SavepointStatements {
  open: Database.Statement<[]>;
  release: Database.Statement<[]>;
  rollbackTo: Database.Statement<[]>;
}

function toEvent(row: EventRow): StoredEvent {
  return {
    seq: row.seq,
    profileId: row.profileId,
    id: row.id,
    name: row.name,
    ts: row.ts,
    properties: JSON.parse(row.properties),
    deviceId: row.deviceId,
    platform: row.platform,
  };
}

function toDocument(row: DocumentRow): ProfileDocument {
  return {
    compartmentId: row.compartmentId,
    userAccountId: row.userAccountId,
    profileId: row.profileId,
    body: JSON.parse(row.body),
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

function toAccount(row: AccountRow): Account {
  return { id: row.id, name: row.name, settings: JSON.parse(row.settings), createdAt: row.createdAt };
}

function toMerge(row: MergeTableRow): MergeRow {
  const data: MergeData = JSON.parse(row.data);
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

/** FIFO turn-taking for write transactions on the single connection. */
class WriteQueue {
  private busy = false;
  private readonly waiting: Array<() => void> = [];

  async acquire(): Promise<void> {
    if (!this.busy) {
      this.busy = true;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Hands the turn straight to the next waiter, so nobody can slip in between. */
  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.busy = false;
  }
}

class SqliteReader implements StoreReader {
  constructor(protected readonly sql: Statements) {}

  /** The statements, once the caller may use them for this account (a transaction narrows this). */
  protected use(_accountId: string): Statements {
    return this.sql;
  }

  async getProfile(accountId: string, profileId: string): Promise<ProfileState | null> {
    const state = this.use(accountId).getProfile.get(accountId, profileId);
    return state === undefined ? null : JSON.parse(state);
  }

  async findProfileByIdentity(accountId: string, key: IdentityKey, value: string): Promise<string | null> {
    return this.use(accountId).findIdentity.get(accountId, key, value) ?? null;
  }

  async findDevice(accountId: string, deviceId: string): Promise<DeviceRow | null> {
    return this.use(accountId).findDevice.get(accountId, deviceId) ?? null;
  }

  async findProfileByUserAccount(accountId: string, ref: UserAccountRef): Promise<string | null> {
    return this.use(accountId).findUserAccount.get(accountId, ref.compartmentId, ref.userAccountId) ?? null;
  }

  async listDevices(accountId: string, profileId: string): Promise<DeviceRow[]> {
    return this.use(accountId).listDevices.all(accountId, profileId);
  }

  async listUserAccounts(accountId: string, profileId: string): Promise<UserAccountRef[]> {
    return this.use(accountId).listUserAccounts.all(accountId, profileId);
  }

  async listOrphans(accountId: string, profileId: string): Promise<string[]> {
    return this.use(accountId).listOrphans.all(accountId, profileId);
  }

  async listTombstones(accountId: string, profileId: string): Promise<string[]> {
    return this.use(accountId).listTombstones.all(accountId, profileId);
  }

  async listEvents(
    accountId: string,
    profileIds: string[],
    opts: { before?: { ts: number; seq: number } | null; limit: number },
  ): Promise<EventPage> {
    const sql = this.use(accountId);
    const { limit } = opts;
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`listEvents: limit must be ≥ 1, got ${limit}`);
    if (profileIds.length === 0) return { events: [], next: null };
    const ts = opts.before?.ts ?? END;
    const seq = opts.before?.seq ?? END;
    // One row more than asked tells whether another page exists.
    const rows =
      profileIds.length === 1
        ? sql.eventsPageOfProfile.all(accountId, profileIds[0]!, ts, seq, limit + 1)
        : sql.eventsPageOfProfiles.all(accountId, JSON.stringify(profileIds), ts, seq, limit + 1);
    const more = rows.length > limit;
    if (more) rows.length = limit;
    const last = rows[rows.length - 1];
    return { events: rows.map(toEvent), next: more && last ? { ts: last.ts, seq: last.seq } : null };
  }

  async getDocument(accountId: string, ref: UserAccountRef): Promise<ProfileDocument | null> {
    const row = this.use(accountId).getDocument.get(accountId, ref.compartmentId, ref.userAccountId);
    return row === undefined ? null : toDocument(row);
  }

  async listDocuments(accountId: string, profileId: string): Promise<ProfileDocument[]> {
    return this.use(accountId).listDocuments.all(accountId, profileId).map(toDocument);
  }

  async listChargedIds(accountId: string, profileId: string): Promise<string[]> {
    return this.use(accountId).listChargedIds.all(accountId, profileId);
  }

  async listTypes(accountId: string): Promise<TypeRegistration[]> {
    return this.use(accountId).listTypes.all(accountId);
  }

  async getMerge(accountId: string, mergeId: string): Promise<MergeRow | null> {
    const row = this.use(accountId).getMerge.get(accountId, mergeId);
    return row === undefined ? null : toMerge(row);
  }

  async listMergesTouching(accountId: string, profileId: string): Promise<MergeRow[]> {
    return this.use(accountId).listMergesTouching.all({ accountId, profileId }).map(toMerge);
  }

  async countControlGroupExcluded(accountId: string): Promise<number> {
    return this.use(accountId).countControlGroupExcluded.get(accountId) ?? 0;
  }

  async listProfileIds(accountId: string, afterId: string | null, limit: number): Promise<string[]> {
    // Every id sorts after "", so a null cursor starts at the first profile.
    return this.use(accountId).listProfileIds.all(accountId, afterId ?? "", limit);
  }

  async maxEventSeq(accountId: string): Promise<number> {
    return this.use(accountId).maxEventSeq.get(accountId) ?? 0;
  }
}

/** The transaction handed to one `write()` function; unusable once that write has committed or rolled back. */
class SqliteTx extends SqliteReader implements StoreTx {
  private open = true;
  /** Savepoints currently open, innermost last. */
  private depth = 0;

  constructor(
    sql: Statements,
    private readonly db: Database.Database,
    private readonly accountId: string,
    private readonly savepointsAt: (depth: number) => SavepointStatements,
  ) {
    super(sql);
  }

  close(): void {
    this.open = false;
  }

  /** SEMANTICS §1: no write ever crosses accounts, so a transaction serves only the account it was opened for. */
  protected override use(accountId: string): Statements {
    if (!this.open) throw new Error("This transaction has already finished; use the store inside write() only.");
    if (accountId !== this.accountId) {
      throw new Error(`A transaction of account ${this.accountId} cannot touch account ${accountId}.`);
    }
    return this.sql;
  }

  async lockProfile(accountId: string, profileId: string): Promise<ProfileState | null> {
    // Only one write transaction runs at a time (WriteQueue + BEGIN IMMEDIATE), so a read is already exclusive.
    return this.getProfile(accountId, profileId);
  }

  async insertProfile(accountId: string, state: ProfileState): Promise<void> {
    this.use(accountId).insertProfile.run(
      accountId,
      state.id,
      JSON.stringify(state),
      state.mergedInto,
      state.orphanOf,
      state.flags.controlGroupExcluded ? 1 : 0,
      state.createdAt,
      state.updatedAt,
    );
  }

  async updateProfile(accountId: string, state: ProfileState): Promise<void> {
    const result = this.use(accountId).updateProfile.run(
      JSON.stringify(state),
      state.mergedInto,
      state.orphanOf,
      state.flags.controlGroupExcluded ? 1 : 0,
      state.createdAt,
      state.updatedAt,
      accountId,
      state.id,
    );
    // Updating a profile that does not exist is a bug upstream; saying so beats losing the write silently.
    if (result.changes === 0) throw new Error(`updateProfile: account ${accountId} has no profile ${state.id}.`);
  }

  async claimIdentity(accountId: string, key: IdentityKey, value: string, profileId: string): Promise<string> {
    const sql = this.use(accountId);
    if (sql.insertIdentity.run(accountId, key, value, profileId).changes === 1) return profileId;
    return sql.findIdentity.get(accountId, key, value)!;
  }

  async releaseIdentity(accountId: string, key: IdentityKey, value: string, profileId: string): Promise<void> {
    this.use(accountId).releaseIdentity.run(accountId, key, value, profileId);
  }

  async releaseIdentityKey(accountId: string, key: IdentityKey): Promise<void> {
    this.use(accountId).releaseIdentityKey.run(accountId, key);
  }

  async claimDevice(accountId: string, device: DeviceRow): Promise<string> {
    const sql = this.use(accountId);
    const { deviceId, profileId } = device;
    if (sql.insertDevice.run(accountId, deviceId, profileId, device.pushToken, device.platform).changes === 1) {
      return profileId;
    }
    return sql.findDevice.get(accountId, deviceId)!.profileId;
  }

  async upsertDevice(accountId: string, device: DeviceRow): Promise<void> {
    this.use(accountId).upsertDevice.run(
      accountId,
      device.deviceId,
      device.profileId,
      device.pushToken ?? null,
      device.platform ?? null,
    );
  }

  async deleteDevice(accountId: string, deviceId: string): Promise<void> {
    this.use(accountId).deleteDevice.run(accountId, deviceId);
  }

  async claimUserAccount(accountId: string, ref: UserAccountRef, profileId: string): Promise<string> {
    const sql = this.use(accountId);
    if (sql.insertUserAccount.run(accountId, ref.compartmentId, ref.userAccountId, profileId).changes === 1) {
      return profileId;
    }
    return sql.findUserAccount.get(accountId, ref.compartmentId, ref.userAccountId)!;
  }

  async releaseUserAccount(accountId: string, ref: UserAccountRef): Promise<void> {
    this.use(accountId).releaseUserAccount.run(accountId, ref.compartmentId, ref.userAccountId);
  }

  async putDocument(accountId: string, doc: ProfileDocument): Promise<void> {
    this.use(accountId).putDocument.run(
      accountId,
      doc.compartmentId,
      doc.userAccountId,
      doc.profileId,
      JSON.stringify(doc.body),
      doc.createdAt,
      doc.updatedAt,
    );
  }

  async deleteDocument(accountId: string, ref: UserAccountRef): Promise<boolean> {
    return this.use(accountId).deleteDocument.run(accountId, ref.compartmentId, ref.userAccountId).changes > 0;
  }

  async claimRecordId(accountId: string, recordId: string, at: number): Promise<boolean> {
    return this.use(accountId).claimRecordId.run(accountId, recordId, at).changes === 1;
  }

  async claimChargedId(accountId: string, profileId: string, chargedId: string): Promise<boolean> {
    return this.use(accountId).claimChargedId.run(accountId, profileId, chargedId).changes === 1;
  }

  async releaseChargedIds(accountId: string, profileId: string): Promise<void> {
    this.use(accountId).releaseChargedIds.run(accountId, profileId);
  }

  async insertEvents(accountId: string, events: NewEvent[]): Promise<number[]> {
    const sql = this.use(accountId);
    const seqs = new Array<number>(events.length);
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      const result = sql.insertEvent.run(
        accountId,
        e.profileId,
        e.id,
        e.name,
        e.ts,
        JSON.stringify(e.properties),
        e.deviceId ?? null,
        e.platform ?? null,
      );
      seqs[i] = Number(result.lastInsertRowid);
    }
    const last = seqs[seqs.length - 1];
    if (last !== undefined) sql.raiseSeqHighWater.run(accountId, last);
    return seqs;
  }

  async listEventsBySeq(accountId: string, seqs: number[]): Promise<StoredEvent[]> {
    return this.use(accountId).eventsBySeq.all(JSON.stringify(seqs), accountId).map(toEvent);
  }

  async listEventSeqs(accountId: string, profileId: string): Promise<number[]> {
    return this.use(accountId).eventSeqsOfProfile.all(accountId, profileId);
  }

  async moveEvents(accountId: string, seqs: number[], toProfileId: string): Promise<void> {
    this.use(accountId).moveEvents.run(toProfileId, JSON.stringify(seqs), accountId);
  }

  async deleteEvents(accountId: string, seqs: number[]): Promise<void> {
    this.use(accountId).deleteEvents.run(JSON.stringify(seqs), accountId);
  }

  async restoreEvents(accountId: string, events: StoredEvent[]): Promise<void> {
    const sql = this.use(accountId);
    let highest = 0;
    for (const e of events) {
      sql.restoreEvent.run(
        e.seq,
        accountId,
        e.profileId,
        e.id,
        e.name,
        e.ts,
        JSON.stringify(e.properties),
        e.deviceId ?? null,
        e.platform ?? null,
      );
      highest = Math.max(highest, e.seq);
    }
    if (highest > 0) sql.raiseSeqHighWater.run(accountId, highest);
  }

  async registerType(accountId: string, scope: TypeScope, path: string, type: ValueType): Promise<ValueType> {
    const sql = this.use(accountId);
    if (sql.insertType.run(accountId, scope, path, type).changes === 1) return type;
    return sql.getType.get(accountId, scope, path)!;
  }

  async changeType(accountId: string, scope: TypeScope, path: string, type: ValueType): Promise<void> {
    this.use(accountId).changeType.run(type, accountId, scope, path);
  }

  async insertMerge(accountId: string, merge: MergeRow): Promise<void> {
    const data: MergeData = {
      eventSeqAtMerge: merge.eventSeqAtMerge,
      target: merge.target,
      source: merge.source,
      movedEventSeqs: merge.movedEventSeqs,
      droppedEvents: merge.droppedEvents,
    };
    this.use(accountId).insertMerge.run(
      accountId,
      merge.id,
      merge.targetId,
      merge.sourceId,
      merge.createdAt,
      merge.undoneAt,
      JSON.stringify(data),
    );
  }

  async markMergeUndone(accountId: string, mergeId: string, at: number): Promise<void> {
    this.use(accountId).markMergeUndone.run(at, accountId, mergeId);
  }

  async appendJournal(accountId: string, mergeId: string, record: AnyRecord): Promise<void> {
    this.use(accountId).appendJournal.run({ accountId, mergeId, record: JSON.stringify(record) });
  }

  async listJournal(accountId: string, mergeId: string): Promise<AnyRecord[]> {
    return this.use(accountId)
      .listJournal.all(accountId, mergeId)
      .map((record) => JSON.parse(record));
  }

  async deleteMergesTouching(accountId: string, profileId: string): Promise<void> {
    const sql = this.use(accountId);
    sql.deleteJournalsTouching.run({ accountId, profileId });
    sql.deleteMergesTouching.run({ accountId, profileId });
  }

  async deleteProfileData(accountId: string, profileId: string): Promise<DeletedCounts> {
    const sql = this.use(accountId);
    const counts: DeletedCounts = {
      profiles: sql.deleteProfile.run(accountId, profileId).changes,
      identities: sql.deleteIdentitiesOf.run(accountId, profileId).changes,
      devices: sql.deleteDevicesOf.run(accountId, profileId).changes,
      events: sql.deleteEventsOf.run(accountId, profileId).changes,
    };
    sql.deleteUserAccountsOf.run(accountId, profileId);
    sql.deleteDocumentsOf.run(accountId, profileId);
    sql.releaseChargedIds.run(accountId, profileId);
    return counts;
  }

  async savepoint<T>(fn: () => Promise<T>): Promise<T> {
    this.use(this.accountId);
    // Open savepoints form a stack, so naming each by its depth keeps names unique and the statements reusable.
    const depth = this.depth;
    const savepoint = this.savepointsAt(depth);
    savepoint.open.run();
    this.depth = depth + 1;
    try {
      const result = await fn();
      this.leave(depth);
      savepoint.release.run();
      return result;
    } catch (error) {
      this.depth = depth;
      // A failed COMMIT-level error may already have ended the transaction; there is then nothing to undo here.
      if (this.db.inTransaction) {
        savepoint.rollbackTo.run();
        savepoint.release.run();
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

export class SqliteStore implements Store {
  readonly dialect = "sqlite" as const;
  readonly reader: StoreReader;
  private readonly sql: Statements;
  private readonly queue = new WriteQueue();
  private readonly savepoints: SavepointStatements[] = [];
  private closed = false;

  private constructor(
    private readonly db: Database.Database,
    private readonly readDb: Database.Database | null,
  ) {
    this.sql = prepareStatements(db);
    this.reader = new SqliteReader(readDb ? prepareStatements(readDb) : this.sql);
  }

  /** Opens (creating if needed) a database file, or an in-memory database for `:memory:`, migrated to the latest. */
  static open(file: string): SqliteStore {
    const db = new Database(file);
    try {
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("foreign_keys = OFF");
      db.pragma("busy_timeout = 5000");
      // Checkpoint every ~40 MB of WAL instead of 4 MB: random inserts into the timeline index dirty many pages, and a
      // page rewritten by several commits is then written back (and synced) once. Measured ≈ +50% event inserts.
      db.pragma("wal_autocheckpoint = 10000");
      migrate(db);
      const readDb = file === ":memory:" || file === "" ? null : new Database(file, { readonly: true });
      readDb?.pragma("busy_timeout = 5000");
      return new SqliteStore(db, readDb);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  /** Migrations already ran in `open` (statements cannot be prepared against missing tables); this is a no-op then. */
  async migrate(): Promise<void> {
    await this.queue.acquire();
    try {
      migrate(this.db);
    } finally {
      this.queue.release();
    }
  }

  /** Waits for the write in progress (and those queued before), then closes the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.queue.acquire();
    try {
      if (!this.closed) {
        this.readDb?.close();
        this.db.close();
      }
      this.closed = true;
    } finally {
      this.queue.release();
    }
  }

  async createAccount(account: Account): Promise<void> {
    this.sql.insertAccount.run(account.id, account.name, JSON.stringify(account.settings), account.createdAt);
  }

  async getAccount(accountId: string): Promise<Account | null> {
    const row = this.sql.getAccount.get(accountId);
    return row === undefined ? null : toAccount(row);
  }

  async listAccounts(): Promise<Account[]> {
    return this.sql.listAccounts.all().map(toAccount);
  }

  async updateAccountSettings(accountId: string, settings: AccountSettings): Promise<void> {
    const result = this.sql.updateAccountSettings.run(JSON.stringify(settings), accountId);
    if (result.changes === 0) throw new Error(`updateAccountSettings: no account ${accountId}.`);
  }

  async insertApiKey(key: ApiKeyRow): Promise<void> {
    this.sql.insertApiKey.run(
      key.id,
      key.accountId,
      key.kind,
      key.name,
      key.hash,
      key.prefix,
      key.createdAt,
      key.revokedAt,
    );
  }

  async findApiKeyByHash(hash: string): Promise<ApiKeyRow | null> {
    return this.sql.findApiKeyByHash.get(hash) ?? null;
  }

  async listApiKeys(accountId: string): Promise<ApiKeyRow[]> {
    return this.sql.listApiKeys.all(accountId);
  }

  async revokeApiKey(accountId: string, keyId: string, at: number): Promise<boolean> {
    return this.sql.revokeApiKey.run(at, accountId, keyId).changes > 0;
  }

  async insertDashboardUser(user: DashboardUserRow): Promise<void> {
    this.sql.insertDashboardUser.run(user.username, user.accountId, user.passwordHash);
  }

  async findDashboardUser(username: string): Promise<DashboardUserRow | null> {
    return this.sql.findDashboardUser.get(username) ?? null;
  }

  async getMeta(key: string): Promise<string | null> {
    return this.sql.getMeta.get(key) ?? null;
  }

  async setMeta(key: string, value: string): Promise<void> {
    this.sql.setMeta.run(key, value);
  }

  async write<T>(accountId: string, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    await this.queue.acquire();
    const tx = new SqliteTx(this.sql, this.db, accountId, (depth) => this.savepointStatements(depth));
    try {
      this.sql.begin.run();
      try {
        const result = await fn(tx);
        this.sql.commit.run();
        return result;
      } catch (error) {
        if (this.db.inTransaction) this.sql.rollback.run();
        throw error;
      }
    } finally {
      tx.close();
      this.queue.release();
    }
  }

  private savepointStatements(depth: number): SavepointStatements {
    let statements = this.savepoints[depth];
    if (statements === undefined) {
      const name = `record_${depth}`;
      statements = {
        open: this.db.prepare(`SAVEPOINT ${name}`),
        release: this.db.prepare(`RELEASE ${name}`),
        rollbackTo: this.db.prepare(`ROLLBACK TO ${name}`),
      };
      this.savepoints[depth] = statements;
    }
    return statements;
  }
}
