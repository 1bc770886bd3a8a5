/**
 * The Store on SQLite (better-sqlite3): one connection, WAL, every statement prepared once.
 *
 * better-sqlite3 is synchronous, but a `write()` function is async and awaits between statements, so two writes
 * could interleave on the one connection. `WriteQueue` makes them take turns (FIFO): one transaction at a time is
 * exactly SQLite's own model, and it is what makes `lockProfile` a plain read.
 * Reads through `reader` use a second, read-only connection on file databases, so they see committed data only
 * (WAL lets them run beside the writer). An in-memory database has one connection, and its reads also see an open
 * transaction's writes (except events a transaction has not written yet, see SqliteTx).
 *
 * Ingestion cost is what shaped the rest (PERFORMANCE.md B1):
 * - Profiles have an integer key (`pk`) inside the adapter; events refer to it, so the timeline index, which takes
 *   one random insert per event, holds integers only. Callers still speak profile ids: every id → pk look-up is
 *   made within the account, and a remembered pk (ProfileKeyHints) is checked against the row before use.
 * - A transaction writes its events behind, in multi-row INSERTs, and opens SQL savepoints only when a record
 *   actually writes through SQL (SqliteTx); most transactions open none, and run again with them only when a record
 *   fails after writing (SavepointPolicy).
 * - A count-only event's two look-ups, its device's owner and that profile's status, are answered from what
 *   committed rows said (CommittedLookups, exact: forgotten on every write of them and on another connection's
 *   commit), and its addition skips the status check for a profile the transaction saw live.
 */
import { chmodSync, existsSync, renameSync, rmSync } from "node:fs";
import Database from "better-sqlite3";
import type { ContextStatus } from "../../engine/activity.js";
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
import { type Activity, activityOf, NO_ACTIVITY, sameActivity, withActivity } from "../activity-columns.js";
import { dropOldest } from "../drop-oldest.js";
import type { ImportHandle } from "../import-store.js";
import { pageOf, pageStart } from "../page.js";
import type {
  AccountRevisions,
  ApiKeyRow,
  DashboardUserRow,
  DeletedCounts,
  EventPage,
  MergeRow,
  NewMerge,
  PageOptions,
  ProfileActivity,
  ProfileCard,
  ProfileLookup,
  ProfileStatus,
  SnapshotReader,
  Store,
  StoreReader,
  StoreTx,
  TimelineEvent,
  TimelinePage,
  TypeRegistration,
  TypeScope,
} from "../store.js";
import { ACTIVITY_OF_P, JOIN_ACTIVITY } from "./activity-join.js";
import { CommittedLookups, type KnownStatus } from "./committed-lookups.js";
import { SavepointNeeded, SavepointPolicy } from "./savepoint-policy.js";
import { migrate } from "./schema.js";
import { redactImportData, SqliteImports } from "./sqlite-imports.js";
import { SqliteSegments, segmentIndex } from "./sqlite-segments.js";

/**
 * The writer's page cache, MB (SQLite's own default is 2). It counts toward RSS in full, and a bulk import fills it: at
 * 64 MB the server stood ≈ 60 MB higher through B4 (242 against 181 MB at 100k rows) than at 8, with no difference in
 * B1 or B4 speed we could tell apart from noise at quick size. Pages that miss it come from the OS page cache.
 * Operators with memory to spare and large accounts may raise it (PORTRAIT_SQLITE_CACHE_MB).
 */
export const SQLITE_CACHE_MB = 8;

/** Profile keys remembered across transactions: ≈ 100 bytes each, so ≤ 12 MB (B1 at full size has 100k devices). */
const PROFILE_KEY_HINTS = 120_000;

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
/** OWN_EVENT_COLUMNS as a raw row. */
type OwnEventTuple = [number, string, string, number, string, string | null, string | null];
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
  seq: number;
  undoneAt: number | null;
  data: string;
}
/** The part of a MergeRow kept as one JSON column. */
type MergeData = Pick<MergeRow, "eventSeqAtMerge" | "target" | "source" | "movedEventSeqs" | "droppedEvents">;

/** Events joined to their profile (`p`), which gives the public id and the account. */
const EVENT_COLUMNS = `e.seq, p.id AS profileId, e.id, e.name, e.ts, e.properties, e.device_id AS deviceId,
  e.platform`;
/** Events of one profile whose id the caller already knows. */
const OWN_EVENT_COLUMNS = `seq, id, name, ts, properties, device_id AS deviceId, platform`;
const DOCUMENT_COLUMNS = `compartment_id AS compartmentId, user_account_id AS userAccountId, profile_id AS profileId,
  body, created_at AS createdAt, updated_at AS updatedAt`;
const API_KEY_COLUMNS = `id, account_id AS accountId, kind, name, hash, prefix, created_at AS createdAt,
  revoked_at AS revokedAt`;
const MERGE_COLUMNS = `id, target_id AS targetId, source_id AS sourceId, created_at AS createdAt, rowid AS seq,
  undone_at AS undoneAt, data`;

/** Every statement of the adapter, prepared once when the store opens. */
function prepareStatements(db: Database.Database) {
  /** A statement whose result is its first column. */
  const value = <P extends unknown[], V>(sql: string) => db.prepare<P, V>(sql).pluck();
  const row = <P extends unknown[], R>(sql: string) => db.prepare<P, R>(sql);
  const run = <P extends unknown[] | object>(sql: string) => db.prepare<P>(sql);

  return {
    begin: run<[]>("BEGIN IMMEDIATE"),
    // Changes when another connection commits (CommittedLookups).
    dataVersion: value<[], number>("PRAGMA data_version"),
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
    updateAccountSettings: run<[string, string]>(
      "UPDATE accounts SET settings = ?, settings_revision = settings_revision + 1 WHERE id = ?",
    ),
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
    // A look-up by pk also checks account and id: a pk from the hint cache may be stale, never wrong.
    getProfile: row<[string, string], StateRow>(
      `SELECT p.pk, p.state, ${ACTIVITY_OF_P} FROM profiles p ${JOIN_ACTIVITY} WHERE p.account_id = ? AND p.id = ?`,
    ).raw(),
    getProfileByPk: row<[number, string, string], StateRow>(
      `SELECT p.pk, p.state, ${ACTIVITY_OF_P} FROM profiles p ${JOIN_ACTIVITY}
       WHERE p.pk = ? AND p.account_id = ? AND p.id = ?`,
    ).raw(),
    // StoreReader.getProfileCard: the profile page's five reads in one statement. Each statement run cost about as much
    // as the index probes it made: under B5 the five were 37% of the server's busy time.
    profileCard: row<[string, string], CardRow>(
      `SELECT p.pk, p.state, ${ACTIVITY_OF_P}, ${CARD_OF_P} FROM profiles p ${JOIN_ACTIVITY}
       WHERE p.account_id = ? AND p.id = ?`,
    ).raw(),
    profileCardByIdentity: row<[string, string, string, string], CardRow>(
      `SELECT p.pk, p.state, ${ACTIVITY_OF_P}, ${CARD_OF_P} FROM profiles p ${JOIN_ACTIVITY}
       WHERE p.account_id = ? AND p.id = (SELECT profile_id FROM identities WHERE account_id = ? AND key = ? AND value = ?)`,
    ).raw(),
    profilePk: value<[string, string], number>("SELECT pk FROM profiles WHERE account_id = ? AND id = ?"),
    checkProfilePk: value<[number, string, string], number>(
      "SELECT pk FROM profiles WHERE pk = ? AND account_id = ? AND id = ?",
    ),
    insertProfile: run<[string, string, string, string | null, string | null, string | null, number, number, number]>(
      `INSERT INTO profiles (account_id, id, state, merged_into, orphan_of, journal_merge_id, control_group_excluded,
         created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    // A profile without an activity row has none yet (activity-join.ts): the row is written with the first activity.
    setActivity: run<[number, ...Activity]>(
      `INSERT INTO profile_activity (pk, first_seen, last_seen, event_count) VALUES (?, ?, ?, ?)
       ON CONFLICT (pk) DO UPDATE
       SET first_seen = excluded.first_seen, last_seen = excluded.last_seen, event_count = excluded.event_count`,
    ),
    updateProfile: run<[string, string | null, string | null, string | null, number, number, number, number]>(
      `UPDATE profiles
       SET state = ?, merged_into = ?, orphan_of = ?, journal_merge_id = ?, control_group_excluded = ?, created_at = ?,
         updated_at = ?
       WHERE pk = ?`,
    ),
    // The common update (activity, counters, properties): the indexed columns are unchanged, so only state moves.
    updateProfileState: run<[string, number, number]>("UPDATE profiles SET state = ?, updated_at = ? WHERE pk = ?"),
    peekProfile: row<[string, string], [number, string | null, string | null]>(
      "SELECT pk, merged_into, journal_merge_id FROM profiles WHERE account_id = ? AND id = ?",
    ).raw(),
    peekProfileByPk: row<[number, string, string], [string | null, string | null]>(
      "SELECT merged_into, journal_merge_id FROM profiles WHERE pk = ? AND account_id = ? AND id = ?",
    ).raw(),
    // StoreTx.addActivity: engine/activity.ts applyActivityDelta in SQL, on a live profile with no merge journal only.
    // The status is read from the profile row, which the update leaves alone (its page stays clean).
    addActivity: run<[{ pk: number; first: number; last: number; events: number }]>(
      `INSERT INTO profile_activity (pk, first_seen, last_seen, event_count)
       SELECT @pk, @first, @last, @events
       WHERE EXISTS (SELECT 1 FROM profiles WHERE pk = @pk AND merged_into IS NULL AND journal_merge_id IS NULL)
       ON CONFLICT (pk) DO UPDATE SET
         first_seen = min(coalesce(first_seen, excluded.first_seen), excluded.first_seen),
         last_seen = max(coalesce(last_seen, excluded.last_seen), excluded.last_seen),
         event_count = event_count + excluded.event_count`,
    ),
    // The same, for a profile the transaction saw live (SqliteTx.seenLive): no guard.
    addActivityToLive: run<[{ pk: number; first: number; last: number; events: number }]>(
      `INSERT INTO profile_activity (pk, first_seen, last_seen, event_count)
       VALUES (@pk, @first, @last, @events)
       ON CONFLICT (pk) DO UPDATE SET
         first_seen = min(coalesce(first_seen, excluded.first_seen), excluded.first_seen),
         last_seen = max(coalesce(last_seen, excluded.last_seen), excluded.last_seen),
         event_count = event_count + excluded.event_count`,
    ),
    // With an addition that restamps the context-set Timezone with its own zone (ActivityDelta.timezone), first the
    // stamp, guarded by the zone. The stamp is bound as a BigInt when whole, so that it stays a JSON integer.
    restampTimezone: run<[{ pk: number; tz: string; tzTs: number | bigint }]>(
      `UPDATE profiles
       SET state = json_set(state, '$.props.Timezone.ts', max(json_extract(state, '$.props.Timezone.ts'), @tzTs))
       WHERE pk = @pk AND merged_into IS NULL AND journal_merge_id IS NULL
         AND json_extract(state, '$.props.Timezone.v') = @tz AND json_extract(state, '$.timezoneFromContext') = 1`,
    ),
    peekContext: row<[string, string], [string | null, number | null, number | null, string | null, number | null]>(
      `SELECT json_extract(state, '$.props.Timezone.v'), json_extract(state, '$.props.Timezone.ts'),
         json_extract(state, '$.timezoneFromContext'), json_extract(state, '$.acquiredKind'),
         json_extract(state, '$.acquiredTs')
       FROM profiles WHERE account_id = ? AND id = ?`,
    ).raw(),
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
       WHERE account_id = ? AND control_group_excluded = 1 AND merged_into IS NULL AND orphan_of IS NULL`,
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
    // StoreTx.listIdentityHolders: the account's identity rows in profile order from identities_by_profile, which holds
    // the key too (the primary key's columns are in every index of a WITHOUT ROWID table), so the walk reads no table
    // row and stops at the page's last holder; across pages it reads each of the account's rows once.
    listIdentityHolders: value<[string, string, string, number, number], string>(
      `SELECT profile_id FROM identities INDEXED BY identities_by_profile
       WHERE account_id = ? AND profile_id > ? AND key = ?
       GROUP BY profile_id HAVING count(*) > ? ORDER BY profile_id LIMIT ?`,
    ),
    // StoreTx.listStringPropertyHolders: the account's live profiles in id order from profiles_live (covering), each
    // probed in the property index (sqlite-segments.ts) by primary key (profile, path, ord 0) for one string ('s',
    // not an element of a list). Each page starts where the last one stopped, so across pages every live profile is
    // probed once, from indexes only (starting from the path's values instead would sort them all for every page).
    listStringPropertyHolders: value<[string, string, string, string, number], string>(
      `SELECT p.id FROM profiles p INDEXED BY profiles_live
       WHERE p.account_id = ? AND p.id > ? AND p.merged_into IS NULL AND p.orphan_of IS NULL
         AND EXISTS (SELECT 1 FROM segment_values v
           WHERE v.profile_pk = p.pk AND v.ord = 0 AND v.kind = 's' AND v.many = 0
             AND v.path_id = (SELECT id FROM segment_paths WHERE account_id = ? AND path = ?))
       ORDER BY p.id LIMIT ?`,
    ),

    // Devices.
    // Raw (an array per row): cheaper than better-sqlite3's named rows on the hottest read of ingestion.
    findDevice: row<[string, string], [string, string, string | null, string | null]>(
      "SELECT device_id, profile_id, push_token, platform FROM devices WHERE account_id = ? AND device_id = ?",
    ).raw(),
    // INDEXED BY: without statistics SQLite would rather walk the account's part of the primary key.
    listDevices: row<[string, string], DeviceRow>(
      `SELECT device_id AS deviceId, profile_id AS profileId, push_token AS pushToken, platform
       FROM devices INDEXED BY devices_by_profile
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
    // Claimed outside the record's savepoint, and released again if the record fails (SqliteTx.claimRecordId).
    claimRecordId: run<[string, string, number]>(
      "INSERT OR IGNORE INTO record_ids (account_id, record_id, created_at) VALUES (?, ?, ?)",
    ),
    releaseRecordId: run<[string, string]>("DELETE FROM record_ids WHERE account_id = ? AND record_id = ?"),
    claimChargedId: run<[string, string, string]>(
      "INSERT OR IGNORE INTO charged_ids (account_id, profile_id, charged_id) VALUES (?, ?, ?)",
    ),
    listChargedIds: value<[string, string], string>(
      "SELECT charged_id FROM charged_ids WHERE account_id = ? AND profile_id = ? ORDER BY charged_id",
    ),
    releaseChargedIds: run<[string, string]>("DELETE FROM charged_ids WHERE account_id = ? AND profile_id = ?"),

    // Events. Lists of profiles or seqs travel as one JSON array parameter, so the statements stay prepared.
    // An event's account is its profile's: statements by seq join the profile and compare its account.
    // Seqs come from the adapter (see SqliteTx): AUTOINCREMENT still keeps sqlite_sequence at the highest one.
    eventSeqBase: value<[], number>("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)"),
    // One row per run: with the events' two indexes, a 64-row INSERT cost 17–20 against 12–16 µs of CPU per row in
    // isolation (rows of B1's shape, 4,000 per commit), though without indexes it is the cheaper one.
    insertEvent: run<[number, number, number, string, string, string, string | null, string | null]>(
      "INSERT INTO events (seq, profile_pk, ts, name, id, properties, device_id, platform) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    raiseSeqHighWater: run<[string, number]>(
      `INSERT INTO event_seq_high_water (account_id, seq) VALUES (?, ?)
       ON CONFLICT (account_id) DO UPDATE SET seq = max(seq, excluded.seq)`,
    ),
    maxEventSeq: value<[string], number>("SELECT seq FROM event_seq_high_water WHERE account_id = ?"),
    // Newest first; the cursor is the last (ts, seq) of the previous page.
    // Raw (an array per row): the profile page reads 100 of these per request; named rows cost ≈ 2× as much.
    eventsPageOfProfile: row<[number, number, number, number], OwnEventTuple>(
      `SELECT ${OWN_EVENT_COLUMNS} FROM events
       WHERE profile_pk = ? AND (ts, seq) < (?, ?)
       ORDER BY ts DESC, seq DESC LIMIT ?`,
    ).raw(),
    eventsPageOfProfiles: row<[string, string, number, number, number], EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM profiles p JOIN events e ON e.profile_pk = p.pk
       WHERE p.account_id = ? AND p.id IN (SELECT value FROM json_each(?)) AND (e.ts, e.seq) < (?, ?)
       ORDER BY e.ts DESC, e.seq DESC LIMIT ?`,
    ),
    // By seq: CROSS JOIN keeps the planner on the seq (rowid) look-ups rather than walking the account's profiles.
    eventsBySeq: row<[string, string], EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM events e CROSS JOIN profiles p ON p.pk = e.profile_pk
       WHERE e.seq IN (SELECT value FROM json_each(?)) AND p.account_id = ? ORDER BY e.seq`,
    ),
    countEventsBySeq: value<[string, string], number>(
      `SELECT count(*) FROM events e CROSS JOIN profiles p ON p.pk = e.profile_pk
       WHERE e.seq IN (SELECT value FROM json_each(?)) AND p.account_id = ?`,
    ),
    eventSeqsOfProfile: value<[number], number>("SELECT seq FROM events WHERE profile_pk = ? ORDER BY seq"),
    moveEvents: run<[number, string, string]>(
      `UPDATE events SET profile_pk = ?
       WHERE seq IN (SELECT value FROM json_each(?)) AND (SELECT account_id FROM profiles WHERE pk = profile_pk) = ?`,
    ),
    deleteEvents: run<[string, string]>(
      `DELETE FROM events
       WHERE seq IN (SELECT value FROM json_each(?)) AND (SELECT account_id FROM profiles WHERE pk = profile_pk) = ?`,
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
    bumpTypesRevision: run<[string]>("UPDATE accounts SET types_revision = types_revision + 1 WHERE id = ?"),
    revisions: row<[string], AccountRevisions>(
      "SELECT types_revision AS types, settings_revision AS settings FROM accounts WHERE id = ?",
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
    // The union lets each side use its own index. The last written first: the rowid is the insertion order (one above
    // the highest in the table, and writers run one at a time), so it is the order merges committed in (MergeRow.seq).
    listMergesTouching: row<[{ accountId: string; profileId: string }], MergeTableRow>(
      `SELECT ${MERGE_COLUMNS} FROM merges
       WHERE rowid IN (
         SELECT rowid FROM merges WHERE account_id = @accountId AND target_id = @profileId
         UNION ALL
         SELECT rowid FROM merges WHERE account_id = @accountId AND source_id = @profileId
       )
       ORDER BY rowid DESC`,
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
    deleteProfile: run<[number]>("DELETE FROM profiles WHERE pk = ?"),
    deleteActivity: run<[number]>("DELETE FROM profile_activity WHERE pk = ?"),
    deleteIdentitiesOf: run<[string, string]>("DELETE FROM identities WHERE account_id = ? AND profile_id = ?"),
    deleteDevicesOf: run<[string, string]>(
      "DELETE FROM devices INDEXED BY devices_by_profile WHERE account_id = ? AND profile_id = ?",
    ),
    deleteUserAccountsOf: run<[string, string]>("DELETE FROM user_accounts WHERE account_id = ? AND profile_id = ?"),
    deleteDocumentsOf: run<[string, string]>("DELETE FROM documents WHERE account_id = ? AND profile_id = ?"),
    deleteEventsOf: run<[number]>("DELETE FROM events WHERE profile_pk = ?"),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

interface SavepointStatements {
  open: Database.Statement<[]>;
  release: Database.Statement<[]>;
  rollbackTo: Database.Statement<[]>;
}

/** Up to this many profiles, a timeline page is read as one index walk per profile (see `listEvents`). */
const PAGE_WALKS_MAX = 32;

/** An event made from a row's columns (positional: a page makes 100 of them, and no row object in between). */
type EventOf<E> = (
  seq: number,
  profileId: string,
  id: string,
  name: string,
  ts: number,
  properties: string,
  deviceId: string | null,
  platform: string | null,
) => E;

const storedEvent: EventOf<StoredEvent> = (seq, profileId, id, name, ts, properties, deviceId, platform) => ({
  seq,
  profileId,
  id,
  name,
  ts,
  properties: JSON.parse(properties),
  deviceId,
  platform,
});

const timelineEvent: EventOf<TimelineEvent> = (seq, profileId, id, name, ts, propertiesJson, deviceId, platform) => ({
  seq,
  profileId,
  id,
  name,
  ts,
  propertiesJson,
  deviceId,
  platform,
});

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
    seq: row.seq,
    undoneAt: row.undoneAt,
    eventSeqAtMerge: data.eventSeqAtMerge,
    target: data.target,
    source: data.source,
    movedEventSeqs: data.movedEventSeqs,
    droppedEvents: data.droppedEvents,
  };
}

/**
 * Profile id → pk, remembered across transactions and shared by both connections, so that the hot reads and
 * writes go by integer key. A hint is never trusted: each use checks the row's account and id (a hint can outlive
 * a rolled-back insert or a deleted profile, and the same id may exist in two accounts). Bounded: when full, the
 * oldest eighth goes.
 */
class ProfileKeyHints {
  private readonly pks = new Map<string, number>();

  constructor(private readonly limit: number) {}

  get(profileId: string): number | undefined {
    return this.pks.get(profileId);
  }

  set(profileId: string, pk: number): void {
    if (this.pks.get(profileId) === pk) return;
    if (this.pks.size >= this.limit) dropOldest(this.pks, Math.ceil(this.limit / 8));
    this.pks.set(profileId, pk);
  }

  delete(profileId: string): void {
    this.pks.delete(profileId);
  }
}

/** FIFO turn-taking on one connection: write transactions on the writer's, snapshots on theirs. */
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

/** A profile row as the reads of its state return it: pk, the JSON, then the activity columns. */
type StateRow = [pk: number, state: string, ...Activity];

/**
 * What a profile page lists beside the profile `p` (ProfileCard), in listDevices', listUserAccounts' and
 * listOrphans' orders, as the last columns of a CardRow.
 */
const CARD_OF_P = `
  (SELECT json_group_array(device_id ORDER BY device_id) FROM devices INDEXED BY devices_by_profile
    WHERE account_id = p.account_id AND profile_id = p.id),
  (SELECT json_group_array(json_array(compartment_id, user_account_id) ORDER BY compartment_id, user_account_id)
    FROM user_accounts WHERE account_id = p.account_id AND profile_id = p.id),
  (SELECT count(*) FROM profiles o WHERE o.account_id = p.account_id AND o.orphan_of = p.id)`;
type CardRow = [...StateRow, deviceIds: string, userAccounts: string, orphanCount: number];

/** A whole number as a BigInt, so that SQLite binds it as an INTEGER (a JS number is bound as a REAL). */
function integral(n: number): number | bigint {
  return Number.isSafeInteger(n) ? BigInt(n) : n;
}

class SqliteReader implements StoreReader {
  constructor(
    protected readonly sql: Statements,
    protected readonly hints: ProfileKeyHints,
  ) {}

  /** The statements, once the caller may use them for this account (a transaction narrows this). */
  protected use(_accountId: string): Statements {
    return this.sql;
  }

  /** The pk of a profile of this account, or undefined when the account has no such profile. */
  protected pkOf(sql: Statements, accountId: string, profileId: string): number | undefined {
    const hint = this.hints.get(profileId);
    if (hint !== undefined && sql.checkProfilePk.get(hint, accountId, profileId) !== undefined) return hint;
    const pk = sql.profilePk.get(accountId, profileId);
    if (pk !== undefined) this.hints.set(profileId, pk);
    return pk;
  }

  /** Called with each profile row read, so a transaction can remember its key and columns. */
  protected found(_pk: number, _state: ProfileState): void {}

  async getProfile(accountId: string, profileId: string): Promise<ProfileState | null> {
    const sql = this.use(accountId);
    const hint = this.hints.get(profileId);
    if (hint !== undefined) {
      const row = sql.getProfileByPk.get(hint, accountId, profileId);
      if (row !== undefined) return this.parsed(row);
    }
    const row = sql.getProfile.get(accountId, profileId);
    if (row === undefined) return null;
    this.hints.set(profileId, row[0]);
    return this.parsed(row);
  }

  private parsed(row: StateRow): ProfileState {
    const state = withActivity(JSON.parse(row[1]) as ProfileState, row[2], row[3], row[4]);
    this.found(row[0], state);
    return state;
  }

  async findProfileByIdentity(accountId: string, key: IdentityKey, value: string): Promise<string | null> {
    return this.use(accountId).findIdentity.get(accountId, key, value) ?? null;
  }

  async findDevice(accountId: string, deviceId: string): Promise<DeviceRow | null> {
    const row = this.use(accountId).findDevice.get(accountId, deviceId);
    return row === undefined ? null : { deviceId: row[0], profileId: row[1], pushToken: row[2], platform: row[3] };
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

  async listEvents(accountId: string, profileIds: string[], opts: PageOptions): Promise<EventPage> {
    return this.eventsPage(accountId, profileIds, opts, "listEvents", storedEvent);
  }

  /** A page of the given profiles' events, newest first, each row made into an event by `as`. */
  protected eventsPage<E extends { ts: number; seq: number }>(
    accountId: string,
    profileIds: string[],
    opts: PageOptions,
    what: string,
    as: EventOf<E>,
  ): { events: E[]; next: { ts: number; seq: number } | null } {
    const sql = this.use(accountId);
    const { ts, seq, read } = pageStart(opts, what);
    if (profileIds.length === 0) return { events: [], next: null };
    let events: E[];
    if (profileIds.length <= PAGE_WALKS_MAX) {
      // A person and a few orphans: one walk of the timeline index per profile, each stopping after a page, then
      // merged here. The single joined query would sort every event of all of them to keep one page.
      events = [];
      for (const profileId of new Set(profileIds)) {
        const pk = this.pkOf(sql, accountId, profileId);
        if (pk === undefined) continue;
        for (const r of sql.eventsPageOfProfile.all(pk, ts, seq, read)) {
          events.push(as(r[0], profileId, r[1], r[2], r[3], r[4], r[5], r[6]));
        }
      }
      if (events.length > 0 && profileIds.length > 1) {
        events.sort((a, b) => b.ts - a.ts || b.seq - a.seq);
        if (events.length > read) events.length = read;
      }
    } else {
      events = sql.eventsPageOfProfiles
        .all(accountId, JSON.stringify(profileIds), ts, seq, read)
        .map((r) => as(r.seq, r.profileId, r.id, r.name, r.ts, r.properties, r.deviceId, r.platform));
    }
    return pageOf(events, opts.limit);
  }

  async getProfileCard(accountId: string, lookup: ProfileLookup): Promise<ProfileCard | null> {
    const sql = this.use(accountId);
    const row =
      "profileId" in lookup
        ? sql.profileCard.get(accountId, lookup.profileId)
        : sql.profileCardByIdentity.get(accountId, accountId, lookup.identity.key, lookup.identity.value);
    if (row === undefined) return null;
    const accounts = JSON.parse(row[6]) as Array<[string, string]>;
    return {
      state: this.parsed([row[0], row[1], row[2], row[3], row[4]]),
      deviceIds: JSON.parse(row[5]) as string[],
      userAccounts: accounts.map(([compartmentId, userAccountId]) => ({ compartmentId, userAccountId })),
      orphanCount: row[7],
    };
  }

  // In-process, so the profile's status, its orphans and its events are three quick reads; the properties stay text.
  async timelinePage(accountId: string, profileId: string, opts: PageOptions): Promise<TimelinePage | null> {
    const sql = this.use(accountId);
    const status = sql.peekProfile.get(accountId, profileId);
    if (status === undefined || status[1] !== null) return null;
    const orphans = sql.listOrphans.all(accountId, profileId);
    return this.eventsPage(accountId, [profileId, ...orphans], opts, "timelinePage", timelineEvent);
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

  async revisions(accountId: string): Promise<AccountRevisions> {
    return this.use(accountId).revisions.get(accountId) ?? { types: 0, settings: 0 };
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

/** What a transaction knows of a profile row: its pk, and its columns and activity as last read or written (if known). */
interface ProfileKey {
  pk: number;
  columns: ProfileColumns | null;
  activity: Activity | null;
}

/** The columns beside `state` except updated_at: they change rarely, and an update that keeps them is cheaper. */
interface ProfileColumns {
  mergedInto: string | null;
  orphanOf: string | null;
  journalMergeId: string | null;
  controlGroupExcluded: boolean;
  createdAt: number;
}

function profileColumns(state: ProfileState): ProfileColumns {
  return {
    mergedInto: state.mergedInto,
    orphanOf: state.orphanOf,
    journalMergeId: state.journalMergeId,
    controlGroupExcluded: state.flags.controlGroupExcluded,
    createdAt: state.createdAt,
  };
}

function sameColumns(a: ProfileColumns, b: ProfileColumns): boolean {
  return (
    a.mergedInto === b.mergedInto &&
    a.orphanOf === b.orphanOf &&
    a.journalMergeId === b.journalMergeId &&
    a.controlGroupExcluded === b.controlGroupExcluded &&
    a.createdAt === b.createdAt
  );
}

/** An event accepted by `insertEvents` and not yet written (see SqliteTx). */
interface PendingEvent {
  seq: number;
  profilePk: number;
  ts: number;
  name: string;
  id: string;
  properties: string;
  deviceId: string | null;
  platform: string | null;
}

/** An open savepoint: where the pending events and the seq counter stood when it opened. */
interface Frame {
  pendingAt: number;
  /** How many record ids this transaction had claimed when the frame began. */
  recordIdsAt: number;
  nextSeq: number | undefined;
  /** The SQL SAVEPOINT is opened only before the first SQL write inside it. */
  opened: boolean;
  /** In a transaction without savepoints (SavepointPolicy): something was written through SQL inside this frame. */
  wrote: boolean;
}

/**
 * The transaction handed to one `write()` function; unusable once that write has committed or rolled back.
 *
 * Events are written behind: `insertEvents` assigns seqs from the counter it read once (the transaction holds the
 * write lock, so nobody else can take one) and keeps the rows in memory; they go to SQL in multi-row INSERTs before
 * anything reads or changes events, and at commit. Savepoints are lazy too: SAVEPOINT runs only before the first
 * SQL write inside one, so a record that only reads and adds events costs no SQL at all for its atomicity. The
 * ordering rule that keeps rollbacks exact: events added before a savepoint opened are written before its SAVEPOINT.
 */
class SqliteTx extends SqliteReader implements StoreTx {
  private open = true;
  /** Set when a record failed after writing in a run without savepoints: nothing more runs in this transaction. */
  mustRunAgain: SavepointNeeded | null = null;
  /** Savepoints currently open, innermost last. */
  private readonly frames: Frame[] = [];
  /**
   * Profile id → pk, known to hold for the rest of this transaction (it holds the write lock): learned from this
   * transaction's own reads and inserts, forgotten on delete and on any savepoint rollback.
   */
  private readonly keys = new Map<string, ProfileKey>();
  private readonly pending: PendingEvent[] = [];
  /** How many of `pending` are in SQL already. */
  private written = 0;
  /**
   * Record ids this transaction claimed, oldest first. A claim is written at once but outside the savepoints (it opens
   * none), and a savepoint that rolls back releases the claims made since it began: a record whose only write is its
   * id (most SDK events) then needs no savepoint, whose statement journal made such an event ≈ 10% dearer.
   */
  private readonly claimedRecordIds: string[] = [];
  /** The next seq to give, read from sqlite_sequence at the first insert. */
  private nextSeq: number | undefined;
  /**
   * Devices and profile statuses this transaction wrote: it neither answers them from `lookups` nor teaches them
   * there until it ends, since what it reads of them may be its own uncommitted rows. `wroteEveryDevice`: a write it
   * could not name device by device (a profile's devices deleted together).
   */
  private readonly wroteDevices = new Set<string>();
  private wroteEveryDevice = false;
  private readonly wroteStatuses = new Set<string>();
  /**
   * Profiles this transaction saw live and unjournalled in their committed status (peekProfile) and has not written
   * since: no other writer runs until it ends, so `addActivity` need not check their rows again.
   */
  private readonly seenLive = new Set<string>();

  constructor(
    sql: Statements,
    hints: ProfileKeyHints,
    private readonly lookups: CommittedLookups,
    private readonly db: Database.Database,
    private readonly accountId: string,
    private readonly savepointsAt: (depth: number) => SavepointStatements,
    /** False: no SQL savepoint; a record that fails after writing makes the transaction run again (SavepointPolicy). */
    private readonly savepoints: boolean,
  ) {
    super(sql, hints);
  }

  private wroteDevice(deviceId: string): void {
    this.wroteDevices.add(deviceId);
    this.lookups.devices.delete(this.accountId, deviceId);
  }

  private wroteStatus(profileId: string): void {
    this.wroteStatuses.add(profileId);
    this.seenLive.delete(profileId);
    this.lookups.statuses.delete(this.accountId, profileId);
  }

  override async findDevice(accountId: string, deviceId: string): Promise<DeviceRow | null> {
    const sql = this.use(accountId);
    const committed = !this.wroteEveryDevice && !this.wroteDevices.has(deviceId);
    if (committed) {
      const known = this.lookups.devices.get(accountId, deviceId);
      // A copy: the caller may change what it is given.
      if (known !== undefined) {
        return {
          deviceId: known.deviceId,
          profileId: known.profileId,
          pushToken: known.pushToken,
          platform: known.platform,
        };
      }
    }
    const row = sql.findDevice.get(accountId, deviceId);
    if (row === undefined) return null;
    if (committed)
      this.lookups.devices.set(accountId, deviceId, {
        deviceId: row[0],
        profileId: row[1],
        pushToken: row[2],
        platform: row[3],
      });
    return { deviceId: row[0], profileId: row[1], pushToken: row[2], platform: row[3] };
  }

  close(): void {
    this.open = false;
  }

  /** SEMANTICS §1: no write ever crosses accounts, so a transaction serves only the account it was opened for. */
  protected override use(accountId: string): Statements {
    if (!this.open) throw new Error("This transaction has already finished; use the store inside write() only.");
    if (this.mustRunAgain) throw this.mustRunAgain;
    if (accountId !== this.accountId) {
      throw new Error(`A transaction of account ${this.accountId} cannot touch account ${accountId}.`);
    }
    return this.sql;
  }

  /** The statements for a SQL write: every savepoint open so far is opened in SQL first. */
  private forWrite(accountId: string): Statements {
    const sql = this.use(accountId);
    this.openSavepoints();
    return sql;
  }

  /** The statements for reading or changing stored events: the pending ones are written first. */
  private forEvents(accountId: string): Statements {
    const sql = this.forWrite(accountId);
    this.writePending(this.pending.length);
    return sql;
  }

  private openSavepoints(): void {
    if (!this.savepoints) {
      for (const frame of this.frames) frame.wrote = true;
      return;
    }
    for (let depth = 0; depth < this.frames.length; depth++) {
      const frame = this.frames[depth]!;
      if (frame.opened) continue;
      // Events added before this savepoint belong outside it: they must not be undone by its rollback.
      this.writePending(frame.pendingAt);
      this.savepointsAt(depth).open.run();
      frame.opened = true;
    }
  }

  /** Writes the pending events up to (not including) index `end`. */
  private writePending(end: number): void {
    if (this.written >= end) return;
    const sql = this.sql;
    let highest = 0;
    for (; this.written < end; this.written++) {
      const e = this.pending[this.written]!;
      sql.insertEvent.run(e.seq, e.profilePk, e.ts, e.name, e.id, e.properties, e.deviceId, e.platform);
      if (e.seq > highest) highest = e.seq;
    }
    sql.raiseSeqHighWater.run(this.accountId, highest);
  }

  /** Before COMMIT: the last pending events. */
  finish(): void {
    this.forEvents(this.accountId);
  }

  protected override found(pk: number, state: ProfileState): void {
    this.keys.set(state.id, { pk, columns: profileColumns(state), activity: activityOf(state) });
    segmentIndex(this.db).loaded(this, state);
  }

  protected override pkOf(sql: Statements, accountId: string, profileId: string): number | undefined {
    const known = this.keys.get(profileId);
    if (known !== undefined) return known.pk;
    const pk = super.pkOf(sql, accountId, profileId);
    if (pk !== undefined) this.keys.set(profileId, { pk, columns: null, activity: null });
    return pk;
  }

  /** The pk of a profile that must exist. */
  private requirePk(sql: Statements, accountId: string, profileId: string, what: string): number {
    const pk = this.pkOf(sql, accountId, profileId);
    if (pk === undefined) throw new Error(`${what}: account ${accountId} has no profile ${profileId}.`);
    return pk;
  }

  async lockProfile(accountId: string, profileId: string): Promise<ProfileState | null> {
    // Only one write transaction runs at a time (WriteQueue + BEGIN IMMEDIATE), so a read is already exclusive.
    return this.getProfile(accountId, profileId);
  }

  async insertProfile(accountId: string, state: ProfileState): Promise<void> {
    const sql = this.forWrite(accountId);
    this.wroteStatus(state.id);
    const result = sql.insertProfile.run(
      accountId,
      state.id,
      JSON.stringify(state),
      state.mergedInto,
      state.orphanOf,
      state.journalMergeId,
      state.flags.controlGroupExcluded ? 1 : 0,
      state.createdAt,
      state.updatedAt,
    );
    const pk = Number(result.lastInsertRowid);
    const activity = activityOf(state);
    if (!sameActivity(activity, NO_ACTIVITY)) sql.setActivity.run(pk, ...activity);
    // Not remembered across transactions (hints): a bulk import creates a million profiles it never comes back to,
    // and their hints were ≈ 13 MB of its server's heap. A profile used again is remembered on its first read.
    this.keys.set(state.id, { pk, columns: profileColumns(state), activity });
    segmentIndex(this.db).written(this, accountId, pk, state, true);
  }

  async updateProfile(accountId: string, state: ProfileState): Promise<void> {
    const sql = this.forWrite(accountId);
    // Updating a profile that does not exist is a bug upstream; saying so beats losing the write silently.
    const pk = this.requirePk(sql, accountId, state.id, "updateProfile");
    segmentIndex(this.db).written(this, accountId, pk, state, false);
    const key = this.keys.get(state.id)!;
    const activity = activityOf(state);
    // Activity rows are narrow and separate, so that count-only additions dirty small pages: skip them when unchanged.
    if (key.activity === null || !sameActivity(key.activity, activity)) {
      sql.setActivity.run(pk, ...activity);
      key.activity = activity;
    }
    const columns = profileColumns(state);
    if (key.columns !== null && sameColumns(key.columns, columns)) {
      sql.updateProfileState.run(JSON.stringify(state), state.updatedAt, pk);
      return;
    }
    // The columns changed (or were not read): the status among them, as far as anyone else knows.
    this.wroteStatus(state.id);
    sql.updateProfile.run(
      JSON.stringify(state),
      state.mergedInto,
      state.orphanOf,
      state.journalMergeId,
      state.flags.controlGroupExcluded ? 1 : 0,
      state.createdAt,
      state.updatedAt,
      pk,
    );
    key.columns = columns;
  }

  async peekProfile(accountId: string, profileId: string): Promise<ProfileStatus | null> {
    const sql = this.use(accountId);
    const committed = !this.wroteStatuses.has(profileId);
    if (committed) {
      const known = this.lookups.statuses.get(accountId, profileId);
      if (known !== undefined) {
        if (!this.keys.has(profileId)) this.keys.set(profileId, { pk: known.pk, columns: null, activity: null });
        return this.peeked(profileId, known, true);
      }
    }
    const pk = this.keys.get(profileId)?.pk ?? this.hints.get(profileId);
    if (pk !== undefined) {
      const status = sql.peekProfileByPk.get(pk, accountId, profileId);
      if (status !== undefined) {
        const found = { pk, mergedInto: status[0], journalMergeId: status[1] };
        return this.readStatus(profileId, found, committed);
      }
    }
    const row = sql.peekProfile.get(accountId, profileId);
    if (row === undefined) return null;
    this.hints.set(profileId, row[0]);
    if (!this.keys.has(profileId)) this.keys.set(profileId, { pk: row[0], columns: null, activity: null });
    const found = { pk: row[0], mergedInto: row[1], journalMergeId: row[2] };
    return this.readStatus(profileId, found, committed);
  }

  /** A status read from the profile's row: remembered when it is the committed one (`committed`). */
  private readStatus(profileId: string, status: KnownStatus, committed: boolean): ProfileStatus {
    if (committed) this.lookups.statuses.set(this.accountId, profileId, status);
    return this.peeked(profileId, status, committed);
  }

  private peeked(profileId: string, status: KnownStatus, committed: boolean): ProfileStatus {
    // Only a committed status stays true to the end: one of this transaction's own rows may still roll back.
    if (committed && status.mergedInto === null && status.journalMergeId === null) this.seenLive.add(profileId);
    return { mergedInto: status.mergedInto, journalMergeId: status.journalMergeId };
  }

  async peekContext(accountId: string, profileId: string): Promise<ContextStatus | null> {
    const row = this.use(accountId).peekContext.get(accountId, profileId);
    if (row === undefined) return null;
    const [tz, tzTs, fromContext, kind, acquiredTs] = row;
    return {
      timezone: typeof tz === "string" ? tz : null,
      timezoneTs: tzTs,
      timezoneFromContext: fromContext === 1,
      acquiredKind: kind === "utm" || kind === "referrer" ? kind : null,
      acquiredTs,
    };
  }

  async addActivity(accountId: string, deltas: readonly ProfileActivity[]): Promise<void> {
    const sql = this.forWrite(accountId);
    for (const d of deltas) {
      const pk = this.requirePk(sql, accountId, d.profileId, "addActivity");
      const { firstTs: first, lastTs: last, events, timezone } = d;
      const key = this.keys.get(d.profileId);
      if (key !== undefined) key.activity = null;
      // The zone's stamp first: its guard (the zone is still this one) is the only one the addition cannot check.
      const restamped =
        !timezone || sql.restampTimezone.run({ pk, tz: timezone.value, tzTs: integral(timezone.ts) }).changes === 1;
      // A profile this transaction saw live needs no second look at its row, which at B1's full size is mostly a page
      // read from the OS (6.2-6.7 against 2.3-2.6 µs of CPU per addition over 100k profiles, 8 MB cache).
      const add = this.seenLive.has(d.profileId) ? sql.addActivityToLive : sql.addActivity;
      const changed = restamped ? add.run({ pk, first, last, events }).changes : 0;
      // One writer at a time: the status peekProfile read still holds, so a miss is a bug upstream.
      if (changed !== 1) {
        throw new Error(
          `addActivity: profile ${d.profileId} is not live and unjournalled, or not in the zone it restamps.`,
        );
      }
    }
  }

  async claimIdentity(accountId: string, key: IdentityKey, value: string, profileId: string): Promise<string> {
    const sql = this.forWrite(accountId);
    if (sql.insertIdentity.run(accountId, key, value, profileId).changes === 1) return profileId;
    return sql.findIdentity.get(accountId, key, value)!;
  }

  async releaseIdentity(accountId: string, key: IdentityKey, value: string, profileId: string): Promise<void> {
    this.forWrite(accountId).releaseIdentity.run(accountId, key, value, profileId);
  }

  async releaseIdentityKey(accountId: string, key: IdentityKey): Promise<void> {
    this.forWrite(accountId).releaseIdentityKey.run(accountId, key);
  }

  async listIdentityHolders(
    accountId: string,
    key: IdentityKey,
    moreThan: number,
    afterId: string | null,
    limit: number,
  ): Promise<string[]> {
    // Every id sorts after "", so a null cursor starts at the first profile.
    return this.use(accountId).listIdentityHolders.all(accountId, afterId ?? "", key, moreThan, limit);
  }

  async listStringPropertyHolders(
    accountId: string,
    key: string,
    afterId: string | null,
    limit: number,
  ): Promise<string[]> {
    const after = afterId ?? "";
    return this.use(accountId).listStringPropertyHolders.all(accountId, after, accountId, key, limit);
  }

  async claimDevice(accountId: string, device: DeviceRow): Promise<string> {
    const sql = this.forWrite(accountId);
    this.wroteDevice(device.deviceId);
    const { deviceId, profileId } = device;
    if (sql.insertDevice.run(accountId, deviceId, profileId, device.pushToken, device.platform).changes === 1) {
      return profileId;
    }
    return sql.findDevice.get(accountId, deviceId)![1];
  }

  async upsertDevice(accountId: string, device: DeviceRow): Promise<void> {
    this.forWrite(accountId);
    this.wroteDevice(device.deviceId);
    this.sql.upsertDevice.run(
      accountId,
      device.deviceId,
      device.profileId,
      device.pushToken ?? null,
      device.platform ?? null,
    );
  }

  async deleteDevice(accountId: string, deviceId: string): Promise<void> {
    this.forWrite(accountId);
    this.wroteDevice(deviceId);
    this.sql.deleteDevice.run(accountId, deviceId);
  }

  async claimUserAccount(accountId: string, ref: UserAccountRef, profileId: string): Promise<string> {
    const sql = this.forWrite(accountId);
    if (sql.insertUserAccount.run(accountId, ref.compartmentId, ref.userAccountId, profileId).changes === 1) {
      return profileId;
    }
    return sql.findUserAccount.get(accountId, ref.compartmentId, ref.userAccountId)!;
  }

  async releaseUserAccount(accountId: string, ref: UserAccountRef): Promise<void> {
    this.forWrite(accountId).releaseUserAccount.run(accountId, ref.compartmentId, ref.userAccountId);
  }

  async putDocument(accountId: string, doc: ProfileDocument): Promise<void> {
    this.forWrite(accountId).putDocument.run(
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
    return this.forWrite(accountId).deleteDocument.run(accountId, ref.compartmentId, ref.userAccountId).changes > 0;
  }

  async claimRecordId(accountId: string, recordId: string, at: number): Promise<boolean> {
    // Not forWrite: no savepoint is opened for it (savepoint() releases it if the record fails).
    if (this.use(accountId).claimRecordId.run(accountId, recordId, at).changes !== 1) return false;
    this.claimedRecordIds.push(recordId);
    return true;
  }

  async claimChargedId(accountId: string, profileId: string, chargedId: string): Promise<boolean> {
    return this.forWrite(accountId).claimChargedId.run(accountId, profileId, chargedId).changes === 1;
  }

  async releaseChargedIds(accountId: string, profileId: string): Promise<void> {
    this.forWrite(accountId).releaseChargedIds.run(accountId, profileId);
  }

  async insertEvents(accountId: string, events: NewEvent[]): Promise<number[]> {
    const sql = this.use(accountId);
    // Everything SQL would refuse is refused here, inside the caller's savepoint, not later at commit.
    const rows = events.map((e) => toPendingEvent(e, this.requirePk(sql, accountId, e.profileId, "insertEvents")));
    let next = this.nextSeq ?? sql.eventSeqBase.get()! + 1;
    const seqs = new Array<number>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const row = rows[i]!;
      row.seq = next++;
      seqs[i] = row.seq;
      this.pending.push(row);
    }
    this.nextSeq = next;
    return seqs;
  }

  override async listEvents(
    accountId: string,
    profileIds: string[],
    opts: { before?: { ts: number; seq: number } | null; limit: number },
  ): Promise<EventPage> {
    this.forEvents(accountId);
    return super.listEvents(accountId, profileIds, opts);
  }

  override async timelinePage(accountId: string, profileId: string, opts: PageOptions): Promise<TimelinePage | null> {
    this.forEvents(accountId);
    return super.timelinePage(accountId, profileId, opts);
  }

  override async maxEventSeq(accountId: string): Promise<number> {
    this.forEvents(accountId);
    return super.maxEventSeq(accountId);
  }

  async listEventsBySeq(accountId: string, seqs: number[]): Promise<StoredEvent[]> {
    return this.forEvents(accountId)
      .eventsBySeq.all(JSON.stringify(seqs), accountId)
      .map((r) => storedEvent(r.seq, r.profileId, r.id, r.name, r.ts, r.properties, r.deviceId, r.platform));
  }

  async listEventSeqs(accountId: string, profileId: string): Promise<number[]> {
    const sql = this.forEvents(accountId);
    const pk = this.pkOf(sql, accountId, profileId);
    return pk === undefined ? [] : sql.eventSeqsOfProfile.all(pk);
  }

  async moveEvents(accountId: string, seqs: number[], toProfileId: string): Promise<void> {
    const sql = this.forEvents(accountId);
    const list = JSON.stringify(seqs);
    const pk = this.pkOf(sql, accountId, toProfileId);
    if (pk === undefined) {
      // Events always belong to a profile of their account: moving some to an unknown profile is a bug upstream.
      if (sql.countEventsBySeq.get(list, accountId)! > 0) {
        throw new Error(`moveEvents: account ${accountId} has no profile ${toProfileId}.`);
      }
      return;
    }
    sql.moveEvents.run(pk, list, accountId);
  }

  async deleteEvents(accountId: string, seqs: number[]): Promise<void> {
    this.forEvents(accountId).deleteEvents.run(JSON.stringify(seqs), accountId);
  }

  async restoreEvents(accountId: string, events: StoredEvent[]): Promise<void> {
    const sql = this.forEvents(accountId);
    let highest = 0;
    for (const e of events) {
      const row = toPendingEvent(e, this.requirePk(sql, accountId, e.profileId, "restoreEvents"));
      sql.insertEvent.run(e.seq, row.profilePk, row.ts, row.name, row.id, row.properties, row.deviceId, row.platform);
      highest = Math.max(highest, e.seq);
    }
    if (highest > 0) sql.raiseSeqHighWater.run(accountId, highest);
    // Restored seqs are old ones, below the counter; should one not be, the next new seq still comes after it.
    if (this.nextSeq !== undefined && highest >= this.nextSeq) this.nextSeq = highest + 1;
  }

  async registerType(accountId: string, scope: TypeScope, path: string, type: ValueType): Promise<ValueType> {
    const sql = this.forWrite(accountId);
    if (sql.insertType.run(accountId, scope, path, type).changes === 1) return type;
    return sql.getType.get(accountId, scope, path)!;
  }

  async changeType(accountId: string, scope: TypeScope, path: string, type: ValueType): Promise<void> {
    const sql = this.forWrite(accountId);
    if (sql.changeType.run(type, accountId, scope, path).changes > 0) sql.bumpTypesRevision.run(accountId);
  }

  async getAccount(accountId: string): Promise<Account | null> {
    const row = this.use(accountId).getAccount.get(accountId);
    return row === undefined ? null : toAccount(row);
  }

  /** Writers run one at a time (BEGIN IMMEDIATE, across processes too): this transaction already holds the account. */
  async lockAccount(accountId: string): Promise<void> {
    this.use(accountId);
  }

  /** Writers run one at a time (BEGIN IMMEDIATE, across processes too): a count stays true until COMMIT. */
  async lockControlGroupExclusions(accountId: string): Promise<void> {
    this.use(accountId);
  }

  async updateSettings(accountId: string, settings: AccountSettings): Promise<void> {
    if (this.forWrite(accountId).updateAccountSettings.run(JSON.stringify(settings), accountId).changes === 0) {
      throw new Error(`updateSettings: no account ${accountId}.`);
    }
  }

  async insertMerge(accountId: string, merge: NewMerge): Promise<void> {
    const data: MergeData = {
      eventSeqAtMerge: merge.eventSeqAtMerge,
      target: merge.target,
      source: merge.source,
      movedEventSeqs: merge.movedEventSeqs,
      droppedEvents: merge.droppedEvents,
    };
    this.forWrite(accountId).insertMerge.run(
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
    this.forWrite(accountId).markMergeUndone.run(at, accountId, mergeId);
  }

  async appendJournal(accountId: string, mergeId: string, record: AnyRecord): Promise<void> {
    this.forWrite(accountId).appendJournal.run({ accountId, mergeId, record: JSON.stringify(record) });
  }

  async listJournal(accountId: string, mergeId: string): Promise<AnyRecord[]> {
    return this.use(accountId)
      .listJournal.all(accountId, mergeId)
      .map((record) => JSON.parse(record));
  }

  async deleteMergesTouching(accountId: string, profileId: string): Promise<void> {
    const sql = this.forWrite(accountId);
    sql.deleteJournalsTouching.run({ accountId, profileId });
    sql.deleteMergesTouching.run({ accountId, profileId });
  }

  async deleteProfileData(accountId: string, profileId: string): Promise<DeletedCounts> {
    const sql = this.forEvents(accountId);
    const pk = this.pkOf(sql, accountId, profileId);
    this.keys.delete(profileId);
    this.hints.delete(profileId);
    this.wroteStatus(profileId);
    // Its devices go by profile, not one by one.
    this.wroteEveryDevice = true;
    this.lookups.devices.clear();
    if (pk !== undefined) {
      segmentIndex(this.db).deleted(this, pk, profileId);
      sql.deleteActivity.run(pk);
    }
    const counts: DeletedCounts = {
      profiles: pk === undefined ? 0 : sql.deleteProfile.run(pk).changes,
      identities: sql.deleteIdentitiesOf.run(accountId, profileId).changes,
      devices: sql.deleteDevicesOf.run(accountId, profileId).changes,
      events: pk === undefined ? 0 : sql.deleteEventsOf.run(pk).changes,
    };
    sql.deleteUserAccountsOf.run(accountId, profileId);
    sql.deleteDocumentsOf.run(accountId, profileId);
    sql.releaseChargedIds.run(accountId, profileId);
    return counts;
  }

  async redactImportData(accountId: string, profileId: string, handles: readonly ImportHandle[]): Promise<void> {
    this.forWrite(accountId);
    redactImportData(this.db, accountId, profileId, handles);
  }

  async savepoint<T>(fn: () => Promise<T>): Promise<T> {
    this.use(this.accountId);
    // Open savepoints form a stack, so naming each by its depth keeps names unique and the statements reusable.
    const depth = this.frames.length;
    const frame: Frame = {
      pendingAt: this.pending.length,
      recordIdsAt: this.claimedRecordIds.length,
      nextSeq: this.nextSeq,
      opened: false,
      wrote: false,
    };
    this.frames.push(frame);
    try {
      const result = await fn();
      this.leave(depth);
      if (frame.opened) this.savepointsAt(depth).release.run();
      return result;
    } catch (error) {
      this.frames.length = depth;
      // Writes that only a savepoint could take back: the whole transaction runs again, with savepoints, where the
      // caller meets this error as it is. The mark stops a caller that swallows the error from writing or committing.
      if (frame.wrote) {
        this.mustRunAgain ??= new SavepointNeeded(error);
        throw this.mustRunAgain;
      }
      // What the savepoint added is taken back: its pending events, the seqs they took, and (in SQL) its writes.
      this.pending.length = frame.pendingAt;
      this.written = Math.min(this.written, frame.pendingAt);
      this.nextSeq = frame.nextSeq;
      // Keys learned inside the savepoint may name rows it inserted and now takes back.
      this.keys.clear();
      segmentIndex(this.db).rolledBack(this);
      // A failed COMMIT-level error may already have ended the transaction; there is then nothing to undo here.
      if (frame.opened && this.db.inTransaction) {
        const savepoint = this.savepointsAt(depth);
        savepoint.rollbackTo.run();
        savepoint.release.run();
      }
      // Record ids are claimed outside savepoints (claimRecordId): those claimed since this one began go now.
      if (this.db.inTransaction) {
        for (const recordId of this.claimedRecordIds.slice(frame.recordIdsAt)) {
          this.sql.releaseRecordId.run(this.accountId, recordId);
        }
      }
      this.claimedRecordIds.length = frame.recordIdsAt;
      throw error;
    }
  }

  /** Savepoints must nest: two run side by side (not awaited in turn) would release each other's writes. */
  private leave(depth: number): void {
    if (this.frames.length !== depth + 1) {
      throw new Error("Savepoints of one transaction must nest; await each before starting the next.");
    }
    this.frames.length = depth;
  }
}

/** An event as the events table takes it; `seq` is filled in by the caller. Checks what STRICT would refuse. */
function toPendingEvent(e: NewEvent, profilePk: number): PendingEvent {
  if (!Number.isSafeInteger(e.ts)) throw new TypeError(`insertEvents: ts must be an integer, got ${e.ts}`);
  if (typeof e.name !== "string" || typeof e.id !== "string") {
    throw new TypeError("insertEvents: an event needs a string name and id");
  }
  const deviceId = e.deviceId ?? null;
  const platform = e.platform ?? null;
  if ((deviceId !== null && typeof deviceId !== "string") || (platform !== null && typeof platform !== "string")) {
    throw new TypeError("insertEvents: deviceId and platform must be strings or null");
  }
  const properties = JSON.stringify(e.properties);
  if (typeof properties !== "string") throw new TypeError("insertEvents: properties must be a JSON object");
  return { seq: 0, profilePk, ts: e.ts, name: e.name, id: e.id, properties, deviceId, platform };
}

export class SqliteStore implements Store {
  readonly dialect = "sqlite" as const;
  readonly reader: StoreReader;
  readonly imports: SqliteImports;
  readonly segments: SqliteSegments;
  private readonly sql: Statements;
  private readonly hints = new ProfileKeyHints(PROFILE_KEY_HINTS);
  private readonly lookups = new CommittedLookups();
  private readonly queue = new WriteQueue();
  private readonly savepointPolicy = new SavepointPolicy();
  /**
   * The connection snapshots read on (Store.snapshot), opened at the first: its read transaction must not hold the
   * reader's connection, whose other reads would then see the snapshot too. Snapshots take turns on it.
   */
  private snapshotDb: { db: Database.Database; sql: Statements } | null = null;
  private readonly snapshotTurns = new WriteQueue();
  private readonly savepoints: SavepointStatements[] = [];
  private closed = false;

  private constructor(
    private readonly db: Database.Database,
    private readonly readDb: Database.Database | null,
  ) {
    this.sql = prepareStatements(db);
    this.reader = new SqliteReader(readDb ? prepareStatements(readDb) : this.sql, this.hints);
    this.imports = new SqliteImports(db, readDb, (fn) => this.exclusive(fn));
    this.segments = new SqliteSegments(db, readDb, (fn) => this.exclusive(fn));
  }

  /**
   * Opens (creating if needed) a database file, or an in-memory database for `:memory:`, migrated to the latest.
   * `cacheMb`: the writer's page cache (PORTRAIT_SQLITE_CACHE_MB, default SQLITE_CACHE_MB).
   */
  static open(file: string, opts: { cacheMb?: number } = {}): SqliteStore {
    const db = new Database(file);
    try {
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      db.pragma("foreign_keys = OFF");
      db.pragma("busy_timeout = 5000");
      // Checkpoint every ~40 MB of WAL instead of 4 MB: random inserts into the timeline index dirty many pages, and a
      // page rewritten by several commits is then written back (and synced) once. Measured ≈ +50% event inserts.
      db.pragma("wal_autocheckpoint = 10000");
      // Savepoint journals in memory: on disk, a journal that once outgrew 64 KB stayed a file for the whole
      // transaction, and every page a later record touched cost a write (measured ≈ 4 pwrite calls per record).
      db.pragma("temp_store = MEMORY");
      db.pragma(`cache_size = ${-1024 * (opts.cacheMb ?? SQLITE_CACHE_MB)}`);
      migrate(db);
      assertWritable(db);
      const readDb = file === ":memory:" || file === "" ? null : new Database(file, { readonly: true });
      readDb?.pragma("busy_timeout = 5000");
      return new SqliteStore(db, readDb);
    } catch (error) {
      db.close();
      throw error;
    }
  }

  /**
   * A consistent copy of the whole store in `file` (which must not exist), taken while the server may be writing:
   * `VACUUM INTO` reads one snapshot (WAL: writers go on) and writes it compacted. A plain file copy of a live store
   * misses what is still in the WAL. Written aside, then renamed, readable by its owner only (people's data).
   */
  async backupTo(file: string): Promise<void> {
    if (existsSync(file)) throw new Error(`${file} exists already: a backup never overwrites a file`);
    const partial = `${file}.part-${process.pid}`;
    try {
      (this.readDb ?? this.db).prepare("VACUUM INTO ?").run(partial);
      chmodSync(partial, 0o600);
      renameSync(partial, file);
    } catch (e) {
      // The file written aside is ours, not the caller's: a failure names the file asked for.
      throw new Error(`could not write ${file}: ${(e as Error).message.replaceAll(partial, file)}`);
    } finally {
      rmSync(partial, { force: true });
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
    await this.snapshotTurns.acquire();
    try {
      if (!this.closed) {
        this.snapshotDb?.db.close();
        this.readDb?.close();
        this.db.close();
      }
      this.closed = true;
    } finally {
      this.snapshotTurns.release();
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
    try {
      let savepoints = this.savepointPolicy.next();
      for (;;) {
        try {
          return await this.attempt(accountId, fn, savepoints);
        } catch (error) {
          if (!(error instanceof SavepointNeeded) || savepoints) throw error;
          this.savepointPolicy.ranAgain();
          savepoints = true;
        }
      }
    } finally {
      this.queue.release();
    }
  }

  /** Transactions run again with savepoints (SavepointPolicy) since the store opened. */
  get savepointReruns(): number {
    return this.savepointPolicy.reruns;
  }

  /** One run of a write function in one transaction, the writer's turn already taken. */
  private async attempt<T>(accountId: string, fn: (tx: StoreTx) => Promise<T>, savepoints: boolean): Promise<T> {
    const tx = new SqliteTx(
      this.sql,
      this.hints,
      this.lookups,
      this.db,
      accountId,
      (depth) => this.savepointStatements(depth),
      savepoints,
    );
    try {
      this.sql.begin.run();
      this.lookups.begin(this.sql.dataVersion.get()!);
      try {
        const result = await fn(tx);
        if (tx.mustRunAgain) throw tx.mustRunAgain;
        tx.finish();
        this.sql.commit.run();
        segmentIndex(this.db).committed(tx);
        return result;
      } catch (error) {
        if (this.db.inTransaction) this.sql.rollback.run();
        // Whatever this run ended with came after a record that must run again with savepoints: that run decides.
        throw tx.mustRunAgain ?? error;
      }
    } finally {
      tx.close();
    }
  }

  async snapshot<T>(accountId: string, fn: (reader: SnapshotReader) => Promise<T>): Promise<T> {
    // An in-memory store has one connection: the snapshot takes the writers' turn (nothing can write meanwhile).
    const own = this.readDb !== null;
    await (own ? this.snapshotTurns : this.queue).acquire();
    try {
      if (this.closed) throw new Error("The store is closed.");
      const { db, sql } = own ? this.openSnapshotDb() : { db: this.db, sql: this.sql };
      const reader = new SqliteSnapshot(sql, this.hints, accountId);
      // Deferred: the read transaction's snapshot is taken by its first read and kept until COMMIT (WAL).
      db.exec("BEGIN");
      try {
        return await fn(reader);
      } finally {
        reader.close();
        if (db.inTransaction) db.exec("COMMIT");
      }
    } finally {
      (own ? this.snapshotTurns : this.queue).release();
    }
  }

  private openSnapshotDb(): { db: Database.Database; sql: Statements } {
    if (this.snapshotDb === null) {
      const db = new Database(this.db.name, { readonly: true });
      db.pragma("busy_timeout = 5000");
      this.snapshotDb = { db, sql: prepareStatements(db) };
    }
    return this.snapshotDb;
  }

  /** Runs `fn` in its own transaction, in turn with `write()` (the import bookkeeping's writes). */
  private async exclusive<T>(fn: () => T): Promise<T> {
    await this.queue.acquire();
    try {
      return this.db.transaction(fn).immediate();
    } finally {
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

/** The reader handed to one `snapshot()` function: the statements of a connection inside one read transaction. */
class SqliteSnapshot extends SqliteReader implements SnapshotReader {
  private open = true;

  constructor(
    sql: Statements,
    hints: ProfileKeyHints,
    private readonly accountId: string,
  ) {
    super(sql, hints);
  }

  close(): void {
    this.open = false;
  }

  protected override use(accountId: string): Statements {
    if (!this.open) throw new Error("This snapshot has ended; use its reader inside snapshot() only.");
    if (accountId !== this.accountId) {
      throw new Error(`A snapshot of account ${this.accountId} cannot read account ${accountId}.`);
    }
    return this.sql;
  }

  async listJournal(accountId: string, mergeId: string): Promise<AnyRecord[]> {
    return this.use(accountId)
      .listJournal.all(accountId, mergeId)
      .map((record) => JSON.parse(record));
  }
}

/**
 * SQLite opens a file it may not write (another user's, 0644) read-only without a word, and a migrated store needs no
 * write at start: the server then answered /healthz and failed every write with a 500. A write rolled back at once
 * (the user version set to itself) makes that an error at start.
 */
function assertWritable(db: Database.Database): void {
  const version = db.pragma("user_version", { simple: true }) as number;
  try {
    db.exec("BEGIN IMMEDIATE");
    db.pragma(`user_version = ${version}`);
  } catch (error) {
    const code = (error as { code?: string }).code ?? "";
    if (code.startsWith("SQLITE_READONLY")) {
      const uid = process.getuid?.() ?? "?";
      const readOnly = new Error(
        `the file is read-only for this process (uid ${uid}): check its owner and permissions`,
      );
      throw Object.assign(readOnly, { code });
    }
    throw error;
  } finally {
    if (db.inTransaction) db.exec("ROLLBACK");
  }
}
