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
 * - The number of those locks is bounded: the server's lock table is shared by all its connections
 *   (max_locks_per_transaction × max_connections, 6,400 by default), and a group creating thousands of people would
 *   fill it ("out of shared memory"). Every handle lock is taken behind the account's handles lock in shared mode, in
 *   the same statement. A transaction that would hold more than HANDLE_LOCKS (64) handle locks through a prefetch, or
 *   MAX_HANDLE_LOCKS (256) taken one at a time, takes the account's handles lock exclusively instead and no handle
 *   lock after that: until it commits, every other transaction of that account that looks up a missing handle or
 *   inserts one waits for it, which its handle locks did for its own handles only (HandleLocks).
 * - Row and advisory locks taken in different orders can deadlock (two batches claiming the same two handles in
 *   opposite orders, or two transactions both turning the account's handles lock from shared to exclusive);
 *   PostgreSQL then aborts one transaction with 40P01. `write()` rolls it back and runs the function again from the
 *   start, at most 5 times, after a short random pause (a run that had turned the account's lock exclusive takes it
 *   exclusively at its first hold the next time, so it cannot lose that way twice). That is safe because a transaction
 *   function keeps all its state inside the run (the pipeline builds a fresh UnitOfWork, and its results, per run: see
 *   Portrait.transact and Portrait.ingest) and the retry sees a fresh world. Correctness still comes from the
 *   constraints and locks; the retry only repeats work that PostgreSQL refused to finish. A function that loses every
 *   run ends with the last one's error, which the API answers 503 UNAVAILABLE (nothing applied: api/errors.ts). Each
 *   deadlock costs its victim deadlock_timeout, so locks are taken in one order where the code can (a prefetch takes
 *   every profile lock it knows of in one ordered statement: docs/scaling.md "Lock order").
 * - `reader` runs each read on any pooled connection outside a transaction, so it sees committed data only.
 * - The one thing remembered across transactions is which profile a count-only event's device belongs to
 *   (DeviceOwners), and it is checked at every use against the owner's handles revision, which a trigger moves with
 *   any committed change of the profile's devices: a device another process moved is probed again, never trusted.
 *
 * Text that PostgreSQL cannot store (U+0000, and in JSON an unpaired surrogate) is refused as INVALID_VALUE rather
 * than failing the whole request, should it get past the engine, which refuses it for both stores; a pooled look-up
 * by such a value finds nobody (docs/scaling.md, "Where the two stores differ").
 */
import pg from "pg";
import { type ContextStatus, contextStatusOf } from "../../engine/activity.js";
import { PortraitError } from "../../engine/errors.js";
import type { AnyRecord } from "../../engine/records.js";
import { indexValues } from "../../engine/segment/index-values.js";
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
import { pageOf, pageStart } from "../page.js";
import { composeProfileCard, composeTimelinePage } from "../profile-card.js";
import type {
  AccountChange,
  AccountRevisions,
  ApiKeyRow,
  BatchHandles,
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
import { ACTIVITY, type ActivityRow, activitySqlOf, type StateRow, stateOf } from "./activity-columns.js";
import { PG_CONNECT_TIMEOUT_MS } from "./connect-timeout.js";
import { DeviceOwners, type RememberedDevice } from "./device-owners.js";
import { inTransaction } from "./in-transaction.js";
import { PostgresImports, redactImportData } from "./postgres-imports.js";
import { IndexRowColumns, PostgresSegments, segmentIndex } from "./postgres-segments.js";
import { migrate } from "./schema.js";
import { serverSettingsWarnings } from "./server-settings.js";
import { TurnBatch } from "./turn-batch.js";

/** The LISTEN/NOTIFY channel of key revocations and settings changes (PostgresStore.watchAccounts). */
const ACCOUNT_CHANNEL = "portrait_accounts";

/**
 * Ingest groups of one account written at once by default (Store.concurrentWriters). Two let one group's records be
 * applied in node while the other's statements run in PostgreSQL. Groups that touch the same profiles queue on their
 * row locks: count-only events lock theirs only at the end, in id order (addActivity), so on B1 (random batches over
 * shared profiles) 2 writers measured 21.6k–24.9k events/s against 18.4k for 1, and 3 no better than 2; logins and
 * profile pushes (B2) 8.0k against 7.1k records/s (docs/performance.md).
 */
const CONCURRENT_WRITERS = 2;

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
  seq: number;
  undoneAt: number | null;
  data: MergeData;
}
/** The statements that read a batch's handles (prefetchHandles). */
type HandlesStatement = "prefetchHandles" | "prefetchHandlesWithStatus" | "prefetchHandlesWithContext";
/** The profile a look-up table row points at. */
interface OwnerRow {
  profile_id: string;
}
/** A device or identity row as prefetch reads it: `name` is the device id or the identity key. */
interface HandleRow {
  kind: "device" | "identity" | "owner";
  name: string;
  value: string | null;
  profile_id: string;
  push_token: string | null;
  platform: string | null;
  /** prefetchHandlesWithStatus only: null when the owner has no profile row. */
  present?: boolean | null;
}
/** STATUS_COLUMNS as selected. */
interface StatusRow {
  row: string;
  merged_into: string | null;
  journal_merge_id: string | null;
  /** The profile's handles revision (schema version 9): moves whenever one of its device rows changes or goes. */
  rev: number;
  /** The context columns: absent when the status was read alone (PROFILE_STATUS). */
  tz?: string | null;
  tz_ts: number | null;
  tz_from_context: boolean;
  acquired_kind: string | null;
  acquired_ts: number | null;
}
/** A profile's status and context, as prefetch reads them for count-only events. */
interface Peeked {
  status: ProfileStatus;
  /** Null when read without it (prefetchHandlesWithStatus): peekContext then reads it. */
  context: ContextStatus | null;
  /** The row's address when it was read: where addActivity looks first. */
  row: string;
}

function peeked(row: StatusRow): Peeked {
  const kind = row.acquired_kind;
  return {
    row: row.row,
    status: { mergedInto: row.merged_into, journalMergeId: row.journal_merge_id },
    context:
      row.tz === undefined
        ? null
        : {
            timezone: row.tz,
            timezoneTs: row.tz_ts,
            timezoneFromContext: row.tz_from_context,
            acquiredKind: kind === "utm" || kind === "referrer" ? kind : null,
            acquiredTs: row.acquired_ts,
          },
  };
}
/** Devices (by id) and identity values (by identityKey, to their owner) that prefetch found. */
interface FoundHandles {
  devices: Map<string, DeviceRow>;
  identities: Map<string, string>;
  /** The owners' statuses, when read with them. */
  statuses: Map<string, Peeked>;
  /** Devices read in the same row as their owner's handles revision (what DeviceOwners may learn). */
  withRevs: RememberedDevice[];
  /** The handles revisions of the profiles asked for by id (the rows of kind 'owner'). */
  revs: Map<string, number>;
}
/** The part of a MergeRow kept as one JSON column. */
type MergeData = Pick<MergeRow, "eventSeqAtMerge" | "target" | "source" | "movedEventSeqs" | "droppedEvents">;

const EVENT_COLUMNS = `seq, profile_id AS "profileId", id, name, ts, properties, device_id AS "deviceId", platform`;
/** As EVENT_COLUMNS, the properties as JSON text (StoreReader.timelinePage passes them through). */
const TIMELINE_COLUMNS = EVENT_COLUMNS.replace("properties", `properties::text AS "propertiesJson"`);
/**
 * A page over several timelines: the newest `limit` ($5) of each profile `p.id` of `profiles` before ($3, $4), one short
 * index scan each, then the newest of those.
 */
function pageOfEach(profiles: string, columns = EVENT_COLUMNS): string {
  return `SELECT e.* FROM ${profiles}
    CROSS JOIN LATERAL (
      SELECT ${columns} FROM events
      WHERE account_id = $1 AND profile_id = p.id AND (ts, seq) < ($3::bigint, $4::bigint)
      ORDER BY ts DESC, seq DESC LIMIT $5
    ) e
    ORDER BY e.ts DESC, e.seq DESC LIMIT $5`;
}

/** StoreReader.timelinePage: a live profile's events with its orphans', newest first ($2 the profile; as pageOfEach). */
const TIMELINE_PAGE = pageOfEach(
  `(
    SELECT id FROM profiles WHERE account_id = $1 AND id = $2 AND merged_into IS NULL
    UNION ALL
    SELECT o.id FROM profiles o WHERE o.account_id = $1 AND o.orphan_of = $2
      AND EXISTS (SELECT 1 FROM profiles l WHERE l.account_id = $1 AND l.id = $2 AND l.merged_into IS NULL)
  ) AS p(id)`,
  TIMELINE_COLUMNS,
);

/** A profile card row (profileCard): the state, its activity columns and what the page lists beside it. */
type CardRow = ProfileCard & ActivityRow;

/**
 * A profile's status (StoreTx.peekProfile) and what the context rules read of it (peekContext). Each field of the
 * state is a look-up inside its jsonb: a group whose count-only events carry no context reads the status alone
 * (PROFILE_STATUS; in isolation 43 against 46 ms of PostgreSQL CPU for the handles of 3,300 devices).
 */
const PROFILE_STATUS = `ctid::text AS row, merged_into, state->>'journalMergeId' AS journal_merge_id, handles_rev AS rev`;
const STATUS_COLUMNS = `${PROFILE_STATUS},
  state#>>'{props,Timezone,v}' AS tz, (state#>>'{props,Timezone,ts}')::float8 AS tz_ts,
  coalesce((state->>'timezoneFromContext')::boolean, false) AS tz_from_context,
  state->>'acquiredKind' AS acquired_kind, (state->>'acquiredTs')::float8 AS acquired_ts`;
const OWNER = "WHERE account_id = $1 AND id = x.profile_id";

/**
 * The devices ($2) and identity values ($3, $4) of a batch with their owners: one index probe each (a join could scan
 * the whole account: see updateProfiles), and with `status`, the owner's status (and context) from one more; then the
 * status of the profiles ($5) that remembered devices name (DeviceOwners), one probe each, as rows of kind 'owner'.
 */
function prefetchHandles(status: string | null): string {
  const columns = status ? `, s.*` : "";
  const owner = status ? `LEFT JOIN LATERAL (SELECT true AS present, ${status} FROM profiles ${OWNER}) s ON true` : "";
  const owners = status
    ? `
    UNION ALL
    SELECT 'owner', o.id, NULL, o.id, NULL, NULL, s.*
      FROM unnest($5::text[]) AS o(id)
      CROSS JOIN LATERAL (SELECT true AS present, ${status} FROM profiles WHERE account_id = $1 AND id = o.id) s`
    : "";
  return `SELECT 'device' AS kind, d.id AS name, NULL AS value, x.profile_id, x.push_token, x.platform${columns}
      FROM unnest($2::text[]) AS d(id)
      CROSS JOIN LATERAL (
        SELECT profile_id, push_token, platform FROM devices WHERE account_id = $1 AND device_id = d.id LIMIT 1
      ) x ${owner}
    UNION ALL
    SELECT 'identity', h.key, h.value, x.profile_id, NULL, NULL${columns}
      FROM unnest($3::text[], $4::text[]) AS h(key, value)
      CROSS JOIN LATERAL (
        SELECT profile_id FROM identities WHERE account_id = $1 AND key = h.key AND value = h.value LIMIT 1
      ) x ${owner}${owners}`;
}

/** The rows beside a profile that its page shows (profileCard), in listDevices' and listUserAccounts' orders. */
const CARD_COLUMNS = `
  ARRAY(SELECT d.device_id FROM devices d WHERE d.account_id = $1 AND d.profile_id = p.id ORDER BY d.device_id)
    AS "deviceIds",
  coalesce((
    SELECT json_agg(json_build_object('compartmentId', u.compartment_id, 'userAccountId', u.user_account_id)
      ORDER BY u.compartment_id, u.user_account_id)
    FROM user_accounts u WHERE u.account_id = $1 AND u.profile_id = p.id
  ), '[]') AS "userAccounts",
  (SELECT count(*)::int FROM profiles o WHERE o.account_id = $1 AND o.orphan_of = p.id) AS "orphanCount"`;
const DOCUMENT_COLUMNS = `compartment_id AS "compartmentId", user_account_id AS "userAccountId",
  profile_id AS "profileId", body, created_at AS "createdAt", updated_at AS "updatedAt"`;
const API_KEY_COLUMNS = `id, account_id AS "accountId", kind, name, hash, prefix, created_at AS "createdAt",
  revoked_at AS "revokedAt"`;
const MERGE_COLUMNS = `id, target_id AS "targetId", source_id AS "sourceId", created_at AS "createdAt", seq,
  undone_at AS "undoneAt", data`;

/**
 * The locks in front of a handle insert (`held`, one row): the account's handles lock shared, then the handle's own
 * lock, whose name is parameter `$name`; a null name (this transaction holds the account's handles exclusively) takes
 * only the first, which a transaction holding it exclusively already has.
 */
const HOLD_HANDLE = (name: number, account: number) => `WITH held AS MATERIALIZED (
      SELECT CASE WHEN $${name}::text IS NOT NULL THEN pg_advisory_xact_lock(hashtextextended($${name}, 0)) END
      FROM (SELECT pg_advisory_xact_lock_shared(hashtextextended($${account}, 0))) account
    )`;

/**
 * Every statement of the adapter. Each runs as a named statement: a connection parses and plans it the first time
 * it runs it and reuses that afterwards. Lists (profile ids, seqs, event columns) travel as one array parameter each,
 * so a statement's text never depends on the data.
 */
export const SQL = {
  // Accounts, keys, dashboard users, meta.
  insertAccount: "INSERT INTO accounts (id, name, settings, created_at) VALUES ($1, $2, $3, $4)",
  getAccount: `SELECT id, name, settings, created_at AS "createdAt" FROM accounts WHERE id = $1`,
  listAccounts: `SELECT id, name, settings, created_at AS "createdAt" FROM accounts ORDER BY created_at, id`,
  updateAccountSettings: `WITH changed AS (
      UPDATE accounts SET settings = $1, settings_revision = settings_revision + 1 WHERE id = $2 RETURNING id
    )
    SELECT pg_notify('${ACCOUNT_CHANNEL}', json_build_object('kind', 'settings', 'accountId', id)::text)
    FROM changed`,
  insertApiKey: `INSERT INTO api_keys (id, account_id, kind, name, hash, prefix, created_at, revoked_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
  findApiKeyByHash: `SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE hash = $1`,
  listApiKeys: `SELECT ${API_KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at, id`,
  // A second revoke keeps the first revocation time.
  // Both announce the change to every process (PostgresStore.watchAccounts), delivered when it commits.
  revokeApiKey: `WITH revoked AS (
      UPDATE api_keys SET revoked_at = coalesce(revoked_at, $1) WHERE account_id = $2 AND id = $3 RETURNING id
    )
    SELECT pg_notify('${ACCOUNT_CHANNEL}', json_build_object('kind', 'key', 'accountId', $2::text, 'keyId', id)::text)
    FROM revoked`,
  insertDashboardUser: "INSERT INTO dashboard_users (username, account_id, password_hash) VALUES ($1, $2, $3)",
  findDashboardUser: `SELECT account_id AS "accountId", username, password_hash AS "passwordHash"
    FROM dashboard_users WHERE username = $1`,
  getMeta: "SELECT value FROM meta WHERE key = $1",
  setMeta: "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",

  // Profiles. The columns beside `state` are rewritten from it on every write so they never go stale.
  getProfile: `SELECT state, ${ACTIVITY} FROM profiles WHERE account_id = $1 AND id = $2`,
  lockProfile: `SELECT state, ${ACTIVITY} FROM profiles WHERE account_id = $1 AND id = $2 FOR UPDATE`,
  updateProfile: `UPDATE profiles
    SET state = $1, merged_into = $2, orphan_of = $3, control_group_excluded = $4, created_at = $5, updated_at = $6,
      (${ACTIVITY}) = (${activitySqlOf("$1::jsonb")})
    WHERE account_id = $7 AND id = $8`,
  // Updates written behind (PostgresTx): the last state of each profile, all in one statement. The rows travel as one
  // JSON document (an array of jsonb states would be escaped into an array literal and parsed twice), and each is found
  // by its own index probe, then by its row address (a join could scan the whole account: see prefetchHandles). A row
  // that a concurrent writer moved between the two is left out of RETURNING and written again by id.
  updateProfiles: `UPDATE profiles AS p
    SET state = u.state, merged_into = u.merged_into, orphan_of = u.orphan_of,
        control_group_excluded = u.control_group_excluded, created_at = u.created_at, updated_at = u.updated_at,
        (${ACTIVITY}) = (${activitySqlOf("u.state")})
    FROM (
      SELECT u.*, found.ctid AS row FROM jsonb_to_recordset($2::jsonb) AS u(id text, state jsonb, merged_into text,
        orphan_of text, control_group_excluded boolean, created_at bigint, updated_at bigint)
      CROSS JOIN LATERAL (SELECT ctid FROM profiles WHERE account_id = $1 AND id = u.id LIMIT 1) found
    ) u
    WHERE p.ctid = u.row AND p.account_id = $1 AND p.id = u.id
    RETURNING p.id`,
  // New profiles written behind (PostgresTx.insertProfile), all in one statement, as one JSON document (see above).
  insertProfileRows: `INSERT INTO profiles
    (account_id, id, state, merged_into, orphan_of, control_group_excluded, created_at, updated_at, ${ACTIVITY})
    SELECT $1, p.id, p.state, p.merged_into, p.orphan_of, p.control_group_excluded, p.created_at, p.updated_at,
      ${activitySqlOf("p.state")}
    FROM jsonb_to_recordset($2::jsonb) AS p(id text, state jsonb, merged_into text, orphan_of text,
      control_group_excluded boolean, created_at bigint, updated_at bigint)`,
  // The property index rows of those new profiles, all in one statement: the rows and ords of postgres-segments.ts
  // (INSERT_ROWS, one profile per statement), with the profile id as a column.
  insertSegmentRows: `INSERT INTO segment_values (account_id, profile_id, path, ord, kind, many, str, num)
    SELECT $1, r.profile_id, r.path, r.ord, r.kind, r.many, r.str, r.num
    FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::bool[], $7::text[], $8::float8[])
      AS r(profile_id, path, ord, kind, many, str, num)`,
  // A profile page's card (StoreReader.getProfileCard) in one statement: the state, and what the page lists or counts
  // beside it, each from its by-profile index; by id, or by an identity value through the identity index.
  profileCard: `SELECT p.state, ${ACTIVITY}, ${CARD_COLUMNS}
    FROM profiles p WHERE p.account_id = $1 AND p.id = $2`,
  profileCardByIdentity: `SELECT p.state, ${ACTIVITY}, ${CARD_COLUMNS}
    FROM identities i JOIN profiles p ON p.account_id = i.account_id AND p.id = i.profile_id
    WHERE i.account_id = $1 AND i.key = $2 AND i.value = $3`,
  // The same for the look-ups of one turn (PooledReader): `n` is a look-up's place in the arrays.
  profileCards: `SELECT l.n::int AS n, p.state, ${ACTIVITY}, ${CARD_COLUMNS}
    FROM unnest($2::text[]) WITH ORDINALITY AS l(id, n)
    JOIN profiles p ON p.account_id = $1 AND p.id = l.id`,
  profileCardsByIdentity: `SELECT l.n::int AS n, p.state, ${ACTIVITY}, ${CARD_COLUMNS}
    FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS l(key, value, n)
    JOIN identities i ON i.account_id = $1 AND i.key = l.key AND i.value = l.value
    JOIN profiles p ON p.account_id = i.account_id AND p.id = i.profile_id`,
  listOrphans: "SELECT id FROM profiles WHERE account_id = $1 AND orphan_of = $2 ORDER BY id",
  listTombstones: "SELECT id FROM profiles WHERE account_id = $1 AND merged_into = $2 ORDER BY id",
  // Tombstones are left out: they act as their target (SEMANTICS §7). The primary key gives the id order.
  listProfileIds: `SELECT id FROM profiles WHERE account_id = $1 AND id > $2 AND merged_into IS NULL
    ORDER BY id LIMIT $3`,
  countControlGroupExcluded: `SELECT count(*) AS n FROM profiles
    WHERE account_id = $1 AND control_group_excluded AND merged_into IS NULL AND orphan_of IS NULL`,

  // Handles. Inside a transaction, a look-up that finds nothing holds the handle (an advisory lock on its name, until
  // COMMIT), and every insert of a handle takes that lock first, in the same statement. Each takes the account's
  // handles lock shared before it (the subquery `account` runs first), and a transaction that holds that lock
  // exclusively instead takes no handle lock at all: see HandleLocks below.
  holdHandle: `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))
    FROM (SELECT pg_advisory_xact_lock_shared(hashtextextended($2, 0))) account`,
  // Many at once (prefetch), in the order of their hashes, so that two transactions never wait on each other in a circle.
  holdHandles: `SELECT pg_advisory_xact_lock(h)
    FROM (SELECT DISTINCT hashtextextended(n, 0) AS h FROM unnest($1::text[]) AS n) held,
      (SELECT pg_advisory_xact_lock_shared(hashtextextended($2, 0))) account
    ORDER BY h`,
  // An account-wide lock, exclusively, by name: the account's handles lock in place of handle locks, for a transaction
  // that would hold too many; the account's settings lock for a settings change (lockAccount); its control-group
  // exclusions lock (lockControlGroupExclusions).
  holdAccountLock: "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
  // The account's settings lock shared, then its revisions (PostgresTx.revisions): every write transaction that checks
  // its records against the settings.
  holdRevisions: "SELECT types, settings FROM portrait_hold_account_revisions($1, $2)",

  // Prefetch (PostgresTx.prefetch): a batch's devices and identity values as one list of rows, then its profiles locked in
  // id order. Each look-up is its own index probe (LATERAL … LIMIT 1): with `= ANY(array)` the planner may scan the whole
  // account instead, as it does when a fresh table has no statistics yet.
  prefetchHandles: prefetchHandles(null),
  // The same, with each owner's status (StoreTx.peekProfile) read in the same probe: prefetch's first read, which
  // count-only events need nothing more from; with the context too when some of them carry context (peekContext).
  prefetchHandlesWithStatus: prefetchHandles(PROFILE_STATUS),
  prefetchHandlesWithContext: prefetchHandles(STATUS_COLUMNS),
  // With each row's address as locked (its newest version's): where a count-only event's activity update goes.
  prefetchProfiles: `SELECT id, ctid::text AS row, state, ${ACTIVITY} FROM profiles
    WHERE account_id = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE`,
  // StoreTx.peekProfile: no lock, only what decides where an event may be added (prefetch reads it with the handles).
  peekProfile: `SELECT ${STATUS_COLUMNS} FROM profiles WHERE account_id = $1 AND id = $2`,
  peekProfiles: `SELECT id, ${STATUS_COLUMNS} FROM profiles WHERE account_id = $1 AND id = ANY($2::text[])`,
  // StoreTx.addActivity. The fold goes first straight to the row addresses that the status read gave, through
  // portrait_add_activity (schema version 8: engine/activity.ts applyActivityDelta in SQL, on live profiles with no
  // merge journal only; a nested loop of TID look-ups whatever the statistics say). Rows that moved since are then
  // locked by id, in id order, each found by its own index probe (LIMIT 1: without it the planner probed each id with
  // a bitmap scan, which costs more per row and leaves the index entries of dead row versions unmarked); the lock
  // answers each row's address, that of its newest version when it waited for another writer, and the fold goes there.
  lockActivityRows: `SELECT d.id, locked.ctid::text AS row FROM jsonb_to_recordset($2::jsonb) AS d(id text)
    CROSS JOIN LATERAL (SELECT ctid FROM profiles WHERE account_id = $1 AND id = d.id LIMIT 1 FOR UPDATE) locked`,
  addActivityRows: "SELECT id FROM portrait_add_activity($1, $2::jsonb) AS id",

  // Identities.
  findIdentity: "SELECT profile_id FROM identities WHERE account_id = $1 AND key = $2 AND value = $3",
  insertIdentity: `${HOLD_HANDLE(5, 6)}
    INSERT INTO identities (account_id, key, value, profile_id) SELECT $1, $2, $3, $4 FROM held
    ON CONFLICT (account_id, key, value) DO NOTHING RETURNING profile_id`,
  // Claims this transaction is certain to win (the value was found free under its advisory lock), written behind.
  // No ON CONFLICT: a conflict would mean the lock did not hold, and failing says so.
  insertIdentityRows: `INSERT INTO identities (account_id, key, value, profile_id)
    SELECT $1, h.key, h.value, h.profile_id FROM unnest($2::text[], $3::text[], $4::text[]) AS h(key, value, profile_id)`,
  releaseIdentity: "DELETE FROM identities WHERE account_id = $1 AND key = $2 AND value = $3 AND profile_id = $4",
  releaseIdentityKey: "DELETE FROM identities WHERE account_id = $1 AND key = $2",
  // StoreTx.listIdentityHolders: the account's identity rows in profile order (identities_by_profile, the key read
  // from the row), grouped as they come, up to the page's last holder: across pages each row is read once.
  listIdentityHolders: `SELECT profile_id FROM identities
    WHERE account_id = $1 AND profile_id > $2 AND key = $3
    GROUP BY profile_id HAVING count(*) > $4 ORDER BY profile_id LIMIT $5`,
  // StoreTx.listStringPropertyHolders: the account's live profiles in id order, matched in the property index
  // (postgres-segments.ts) by its primary key (profile, path, ord 0) for one string ('s', not an element of a list).
  // `v.profile_id > $2` again: the planner does not carry it over the join, and without it the index scan of every
  // page (a merge join) started at the account's first profile.
  listStringPropertyHolders: `SELECT p.id FROM profiles p
    WHERE p.account_id = $1 AND p.id > $2 AND p.merged_into IS NULL AND p.orphan_of IS NULL
      AND EXISTS (SELECT 1 FROM segment_values v
        WHERE v.account_id = $1 AND v.profile_id = p.id AND v.profile_id > $2 AND v.path = $3 AND v.ord = 0
          AND v.kind = 's' AND NOT v.many)
    ORDER BY p.id LIMIT $4`,

  // Devices.
  findDevice: `SELECT device_id AS "deviceId", profile_id AS "profileId", push_token AS "pushToken", platform
    FROM devices WHERE account_id = $1 AND device_id = $2`,
  listDevices: `SELECT device_id AS "deviceId", profile_id AS "profileId", push_token AS "pushToken", platform
    FROM devices WHERE account_id = $1 AND profile_id = $2 ORDER BY device_id`,
  insertDevice: `${HOLD_HANDLE(6, 7)}
    INSERT INTO devices (account_id, device_id, profile_id, push_token, platform) SELECT $1, $2, $3, $4, $5 FROM held
    ON CONFLICT (account_id, device_id) DO NOTHING RETURNING profile_id`,
  upsertDevice: `${HOLD_HANDLE(6, 7)}
    INSERT INTO devices (account_id, device_id, profile_id, push_token, platform) SELECT $1, $2, $3, $4, $5 FROM held
    ON CONFLICT (account_id, device_id) DO UPDATE
    SET profile_id = excluded.profile_id, push_token = excluded.push_token, platform = excluded.platform`,
  deleteDevice: "DELETE FROM devices WHERE account_id = $1 AND device_id = $2",
  // As insertIdentityRows, for devices found free under their advisory lock.
  insertDeviceRows: `INSERT INTO devices (account_id, device_id, profile_id, push_token, platform)
    SELECT $1, d.device_id, d.profile_id, d.push_token, d.platform
    FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS d(device_id, profile_id, push_token, platform)`,

  // User accounts and their documents.
  findUserAccount: `SELECT profile_id FROM user_accounts
    WHERE account_id = $1 AND compartment_id = $2 AND user_account_id = $3`,
  listUserAccounts: `SELECT compartment_id AS "compartmentId", user_account_id AS "userAccountId" FROM user_accounts
    WHERE account_id = $1 AND profile_id = $2 ORDER BY compartment_id, user_account_id`,
  insertUserAccount: `${HOLD_HANDLE(5, 6)}
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
  // Prefetch: which of a batch's record ids are stored already (committed before this statement).
  prefetchRecordIds: "SELECT record_id FROM record_ids WHERE account_id = $1 AND record_id = ANY($2::text[])",
  // Claims answered from the prefetch, written behind. A row missing from RETURNING was committed by another transaction
  // after the prefetch: the claim answered "first" wrongly, and the whole transaction runs again (PostgresTx.writeInserts).
  insertRecordIdRows: `INSERT INTO record_ids (account_id, record_id, created_at)
    SELECT $1, r.id, r.at FROM unnest($2::text[], $3::bigint[]) AS r(id, at)
    ON CONFLICT (account_id, record_id) DO NOTHING RETURNING record_id`,
  claimChargedId: `INSERT INTO charged_ids (account_id, profile_id, charged_id) VALUES ($1, $2, $3)
    ON CONFLICT (account_id, profile_id, charged_id) DO NOTHING`,
  listChargedIds: "SELECT charged_id FROM charged_ids WHERE account_id = $1 AND profile_id = $2 ORDER BY charged_id",
  releaseChargedIds: "DELETE FROM charged_ids WHERE account_id = $1 AND profile_id = $2",

  // Events. Rows are written behind (PostgresTx): their seqs are drawn ahead from the sequence, then the rows go in
  // one statement as one JSON document (as updateProfiles, for the same reason). Restored events (demerge) take it too.
  drawSeqs: "SELECT nextval('events_seq_seq') AS seq FROM generate_series(1, $1::int)",
  insertEventRows: `INSERT INTO events (seq, account_id, profile_id, id, name, ts, properties, device_id, platform)
    SELECT e.seq, $1, e.profile_id, e.id, e.name, e.ts, e.properties, e.device_id, e.platform
    FROM jsonb_to_recordset($2::jsonb) AS e(seq bigint, profile_id text, id text, name text, ts bigint, properties jsonb,
      device_id text, platform text)`,
  // A backward probe of events_by_seq. Seqs are never reused, so this never goes back below a seq still in use.
  maxEventSeq: "SELECT max(seq) AS seq FROM events WHERE account_id = $1",
  // Newest first; the cursor is the last (ts, seq) of the previous page. A backward scan of the primary key.
  eventsPageOfProfile: `SELECT ${EVENT_COLUMNS} FROM events
    WHERE account_id = $1 AND profile_id = $2 AND (ts, seq) < ($3::bigint, $4::bigint)
    ORDER BY ts DESC, seq DESC LIMIT $5`,
  // Several timelines: the newest `limit` of each profile (one short index scan each), then the newest of those.
  eventsPageOfProfiles: pageOfEach("unnest($2::text[]) AS p(id)"),
  // A live profile's timeline page (StoreReader.timelinePage): as eventsPageOfProfiles over the profile and its orphans,
  // found in the same statement. No row at all leaves open whether the profile is live (PostgresReader.timelinePage).
  timelinePage: TIMELINE_PAGE,
  // The same for the pages of one turn (PooledReader), each by its own parameters from the arrays; `n` is its place.
  timelinePages: `SELECT asked.n::int AS n, t.*
    FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::int[]) WITH ORDINALITY AS asked(id, ts, seq, read, n)
    CROSS JOIN LATERAL (${TIMELINE_PAGE.replace(/\$([2-5])\b/g, (_, i: string) => `asked.${["id", "ts", "seq", "read"][Number(i) - 2]}`)}) t
    ORDER BY asked.n, t.ts DESC, t.seq DESC`,
  eventsBySeq: `SELECT ${EVENT_COLUMNS} FROM events WHERE account_id = $1 AND seq = ANY($2::bigint[]) ORDER BY seq`,
  eventSeqsOfProfile: "SELECT seq FROM events WHERE account_id = $1 AND profile_id = $2 ORDER BY seq",
  moveEvents: "UPDATE events SET profile_id = $1 WHERE account_id = $2 AND seq = ANY($3::bigint[])",
  deleteEvents: "DELETE FROM events WHERE account_id = $1 AND seq = ANY($2::bigint[])",

  // Type registry.
  insertType: `INSERT INTO type_registry (account_id, scope, path, type) VALUES ($1, $2, $3, $4)
    ON CONFLICT (account_id, scope, path) DO NOTHING RETURNING type`,
  getType: "SELECT type FROM type_registry WHERE account_id = $1 AND scope = $2 AND path = $3",
  // The account's types_revision moves with the change, in the same statement (StoreReader.revisions).
  changeType: `WITH changed AS (
      UPDATE type_registry SET type = $1 WHERE account_id = $2 AND scope = $3 AND path = $4 RETURNING 1
    )
    UPDATE accounts SET types_revision = types_revision + 1 WHERE id = $2 AND EXISTS (SELECT 1 FROM changed)`,
  revisions: "SELECT types_revision AS types, settings_revision AS settings FROM accounts WHERE id = $1",
  listTypes: "SELECT scope, path, type FROM type_registry WHERE account_id = $1 ORDER BY scope, path",

  // Merges and their journals.
  insertMerge: `INSERT INTO merges (account_id, id, target_id, source_id, created_at, undone_at, data)
    VALUES ($1, $2, $3, $4, $5, $6, $7)`,
  getMerge: `SELECT ${MERGE_COLUMNS} FROM merges WHERE account_id = $1 AND id = $2`,
  // Each side uses its own index (a BitmapOr). The last written first: seq is drawn from the merges' identity sequence
  // (CACHE 1, its default: a value drawn later is higher, whatever the session) when the row is inserted, after the
  // merge has locked both profiles, so between merges touching one profile it is the order they committed in
  // (MergeRow.seq). created_at is the time each request began on its own node's clock: a
  // merge that waited for a connection or a lock, or ran on a node whose clock is behind, would sort wrongly by it.
  listMergesTouching: `SELECT ${MERGE_COLUMNS} FROM merges
    WHERE account_id = $1 AND (target_id = $2 OR source_id = $2)
    ORDER BY seq DESC`,
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

/**
 * What statements run on: the pool (one read on any connection), or a transaction, which prepares its connection
 * before each statement (PostgresTx).
 */
interface Queryable {
  query<R extends pg.QueryResultRow>(config: pg.QueryConfig): Promise<pg.QueryResult<R>>;
}

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
  return jsonbSafe(JSON.stringify(value));
}

/** JSON text as written by JSON.stringify, refused if jsonb would refuse it. */
function jsonbSafe(text: string): string {
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

/**
 * Handle locks past which a prefetch holds the account's handles instead (see HandleLocks): max_locks_per_transaction's
 * default, a transaction's share of the server's lock table (max_locks_per_transaction × max_connections).
 */
export const HANDLE_LOCKS = 64;
/**
 * Handle locks past which a look-up or an insert one at a time holds the account's handles instead. Higher than
 * HANDLE_LOCKS because that is an upgrade (the transaction holds the account's lock shared already), which waits for
 * every other holder and can deadlock with another upgrader: only long transactions should get there.
 */
export const MAX_HANDLE_LOCKS = 256;

/**
 * The handle locks of one transaction. Every handle lock is taken behind the account's handles lock in shared mode
 * (same statement, first), so transactions claiming different handles of an account never wait on each other. A
 * transaction that would hold more than HANDLE_LOCKS of them (prefetch of a batch of new people) or MAX_HANDLE_LOCKS
 * (one at a time) takes the account's lock exclusively instead and no handle lock from then on: every other
 * transaction of the account that looks up a missing handle or inserts one waits until it commits, which is what its
 * handle locks would have made them do for its own handles, for all of them. PostgreSQL lets a session that holds a
 * lock shared take it exclusively when no other session holds it, so the upgrade waits only for the others; two
 * upgraders deadlock, and the one PostgreSQL aborts (40P01) runs again with `exclusiveFirst` (see PostgresStore.write).
 */
class HandleLocks {
  /** The name of the account's handles lock (hashed to 64 bits in SQL, as handleName). */
  readonly account: string;
  /** Handle locks taken, by name. A savepoint rollback may have released some: never fewer than it holds. */
  private readonly names = new Set<string>();
  /** Holds the account's handles lock exclusively: no other transaction can create or be waiting to create one. */
  exclusive = false;
  /** Took the account's lock shared (holding it exclusively later is an upgrade). */
  private shared = false;
  /** Took the account's lock exclusively while it held it shared. */
  upgraded = false;

  /** `exclusiveFirst`: the first hold takes the account's lock exclusively (a run after an upgrade lost a deadlock). */
  constructor(
    accountId: string,
    private readonly exclusiveFirst: boolean,
  ) {
    this.account = JSON.stringify(["handles", accountId]);
  }

  /** True when also holding `names` would pass `limit` handle locks: the account's lock is to be taken instead. */
  passes(names: readonly string[], limit: number): boolean {
    if (this.exclusive || names.length === 0) return false;
    let total = this.names.size;
    for (const name of new Set(names)) if (!this.names.has(name)) total++;
    return total > (this.exclusiveFirst ? 0 : limit);
  }

  /** `names` are being locked (behind the account's lock shared): the same names, counted. */
  take<N extends string[]>(names: N): N {
    this.shared = true;
    for (const name of names) this.names.add(name);
    return names;
  }

  /** The account's lock is now held exclusively. */
  escalated(): void {
    this.upgraded ||= this.shared;
    this.exclusive = true;
  }
}

/** The name of the account's settings lock (hashed as handleName). */
const settingsLockName = (accountId: string) => JSON.stringify(["settings", accountId]);
/** The name of the account's control-group exclusions lock (StoreTx.lockControlGroupExclusions). */
const exclusionsLockName = (accountId: string) => JSON.stringify(["control-group-exclusions", accountId]);

/** The lock names of devices and identity values. */
function handleNames(
  accountId: string,
  handles: { devices: readonly string[]; identities: readonly { key: IdentityKey; value: string }[] },
): string[] {
  return [
    ...handles.devices.map((d) => handleName.device(accountId, d)),
    ...handles.identities.map((h) => handleName.identity(accountId, h.key, h.value)),
  ];
}

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
    const row = await first<StateRow>(this.db(accountId), "getProfile", [accountId, profileId]);
    return row === undefined ? null : stateOf(row);
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

  async listEvents(accountId: string, profileIds: string[], opts: PageOptions): Promise<EventPage> {
    const db = this.db(accountId);
    const { ts, seq, read } = pageStart(opts, "listEvents");
    const ids = [...new Set(profileIds)];
    if (ids.length === 0) return { events: [], next: null };
    const found =
      ids.length === 1
        ? await rows<EventRow>(db, "eventsPageOfProfile", [accountId, ids[0], ts, seq, read])
        : await rows<EventRow>(db, "eventsPageOfProfiles", [accountId, ids, ts, seq, read]);
    return pageOf(found.map(toEvent), opts.limit);
  }

  async getProfileCard(accountId: string, lookup: ProfileLookup): Promise<ProfileCard | null> {
    const db = this.db(accountId);
    const row =
      "profileId" in lookup
        ? await first<CardRow>(db, "profileCard", [accountId, lookup.profileId])
        : await first<CardRow>(db, "profileCardByIdentity", [accountId, lookup.identity.key, lookup.identity.value]);
    return row === undefined ? null : cardOf(row);
  }

  async timelinePage(accountId: string, profileId: string, opts: PageOptions): Promise<TimelinePage | null> {
    const found = await this.timelineRows(accountId, { profileId, ...pageStart(opts, "timelinePage") });
    return this.timelineOf(accountId, profileId, found, opts.limit);
  }

  /** The events a timeline page reads (one more than its limit): its own statement. */
  protected timelineRows(accountId: string, q: TimelineQuery): Promise<TimelineEvent[]> {
    return rows<TimelineEvent>(this.db(accountId), "timelinePage", [accountId, q.profileId, q.ts, q.seq, q.read]);
  }

  /** The page of the events read for a timeline; none: an empty page of a live profile, or null. */
  protected async timelineOf(
    accountId: string,
    profileId: string,
    found: TimelineEvent[],
    limit: number,
  ): Promise<TimelinePage | null> {
    if (found.length > 0) return pageOf(found, limit);
    const state = await this.getProfile(accountId, profileId);
    return state === null || state.mergedInto !== null ? null : { events: [], next: null };
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

  async revisions(accountId: string): Promise<AccountRevisions> {
    return (await first<AccountRevisions>(this.db(accountId), "revisions", [accountId])) ?? { types: 0, settings: 0 };
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

/**
 * The reader handed to one `snapshot()` function: its reads run in one REPEATABLE READ transaction on one connection,
 * so all of them see the snapshot its first statement took. Unusable once that function has returned.
 */
class PostgresSnapshot extends PostgresReader implements SnapshotReader {
  private open = true;

  constructor(
    client: pg.PoolClient,
    private readonly accountId: string,
  ) {
    super(client);
  }

  close(): void {
    this.open = false;
  }

  protected override db(accountId: string): Queryable {
    if (!this.open) throw new Error("This snapshot has ended; use its reader inside snapshot() only.");
    if (accountId !== this.accountId) {
      throw new Error(`A snapshot of account ${this.accountId} cannot read account ${accountId}.`);
    }
    return super.db(accountId);
  }

  async listJournal(accountId: string, mergeId: string): Promise<AnyRecord[]> {
    const found = await rows<{ record: AnyRecord }>(this.db(accountId), "listJournal", [accountId, mergeId]);
    return found.map((r) => r.record);
  }
}

/** An event accepted by `insertEvents` and not yet written (see PostgresTx). */
interface PendingEvent {
  seq: number;
  /** The row's fields after its seq, as the rest of an element of the `insertEventRows` document (eventRow). */
  fields: string;
}

/** A profile update accepted by `updateProfile` and not yet written. */
interface PendingProfile {
  state: ProfileState;
  /** The state as a jsonb parameter, checked when the update was accepted. */
  json: string;
  /** The row as an element of the `updateProfiles` document. */
  row: string;
}

/**
 * A row insert accepted and not yet written: a new profile, or a handle that this transaction holds free (found
 * absent under its advisory lock, so its claim is certain to win).
 */
type PendingInsert =
  | { kind: "profile"; state: ProfileState; row: string }
  | { kind: "identity"; key: IdentityKey; value: string; profileId: string }
  | { kind: "device"; device: DeviceRow }
  | { kind: "recordId"; recordId: string; at: number };

/** An open savepoint: where the written-behind rows stood when it opened, and the look-ups its writes changed. */
interface Frame {
  eventsAt: number;
  profilesAt: number;
  insertsAt: number;
  /** SAVEPOINT is sent only before the first SQL write inside it. */
  opened: boolean;
  /** Keys of `known.devices` / `known.identities` that writes inside it set or dropped. */
  changed: string[];
  /** Record ids claimed inside it from the prefetch (`known.claimed`), unclaimed again if it rolls back. */
  claims: string[];
  /** Whether the account's handles lock was held exclusively when it began (a rollback may release it). */
  handlesExclusive: boolean;
}

/** How a statement touches the transaction: whether it writes, and whether it reads or changes stored events. */
interface Access {
  write: boolean;
  events: boolean;
}
const READ: Access = { write: false, events: false };
const WRITE: Access = { write: true, events: false };
const READ_EVENTS: Access = { write: false, events: true };
const WRITE_EVENTS: Access = { write: true, events: true };

/** Rows per statement when written-behind rows are sent (bounds one statement's parameters, not its count). */
const ROWS_PER_STATEMENT = 5000;

/** The most seqs one draw takes ahead (see PostgresTx.takeSeqs). */
const MAX_SEQ_DRAW = 4096;

const deviceKey = (deviceId: string) => `d${deviceId}`;
const identityKey = (key: IdentityKey, value: string) => `i${key}\u0000${value}`;

function cardOf(row: CardRow): ProfileCard {
  const { deviceIds, userAccounts, orphanCount } = row;
  return { state: stateOf(row), deviceIds, userAccounts, orphanCount };
}

/** Cards asked for in one turn of one account's look-ups: at most this many per statement. */
const CARDS_PER_STATEMENT = 64;

type IdentityLookup = { key: IdentityKey; value: string };

/** Timeline pages asked for in one turn of one account's look-ups: at most this many per statement. */
const PAGES_PER_STATEMENT = 16;

/** A timeline page as its statement reads it: the profile, where the page starts, and how many events to read. */
type TimelineQuery = { profileId: string; ts: number; seq: number; read: number };

/**
 * The store's reader on its pool: profile cards (Find People, the profile page) and timeline pages asked for in one
 * turn of the event loop are read by one statement per account and kind (TurnBatch).
 */
export class PooledReader extends PostgresReader {
  private readonly byId = new Map<string, TurnBatch<string, ProfileCard | null>>();
  private readonly byIdentity = new Map<string, TurnBatch<IdentityLookup, ProfileCard | null>>();
  private readonly timelines = new Map<string, TurnBatch<TimelineQuery, TimelineEvent[]>>();

  override async timelinePage(accountId: string, profileId: string, opts: PageOptions): Promise<TimelinePage | null> {
    const batch = batchOf(
      this.timelines,
      accountId,
      () =>
        new TurnBatch(
          (pages) => this.timelinePages(accountId, pages),
          (page) => this.timelineRows(accountId, page),
          PAGES_PER_STATEMENT,
        ),
    );
    const found = await batch.get({ profileId, ...pageStart(opts, "timelinePage") });
    return this.timelineOf(accountId, profileId, found, opts.limit);
  }

  /** The events of each page asked for, by one statement. */
  private async timelinePages(accountId: string, pages: readonly TimelineQuery[]): Promise<TimelineEvent[][]> {
    const found = await rows<TimelineEvent & { n: number }>(this.db(accountId), "timelinePages", [
      accountId,
      pages.map((q) => q.profileId),
      pages.map((q) => q.ts),
      pages.map((q) => q.seq),
      pages.map((q) => q.read),
    ]);
    const events: TimelineEvent[][] = pages.map(() => []);
    for (const r of found) {
      // Built field by field: the row's `n` stays behind, and every event has the one shape.
      events[r.n - 1]!.push({
        seq: r.seq,
        profileId: r.profileId,
        id: r.id,
        name: r.name,
        ts: r.ts,
        propertiesJson: r.propertiesJson,
        deviceId: r.deviceId,
        platform: r.platform,
      });
    }
    return events;
  }

  // Text with U+0000 is refused on the way in by both stores, so no stored handle holds it: a look-up by one finds
  // nobody here too, as on SQLite, rather than fail the search (PostgreSQL refuses such a parameter outright).

  override getProfileCard(accountId: string, lookup: ProfileLookup): Promise<ProfileCard | null> {
    if ("profileId" in lookup) {
      if (hasNul(lookup.profileId)) return Promise.resolve(null);
      const batch = batchOf(
        this.byId,
        accountId,
        () =>
          new TurnBatch(
            (ids) => this.cards(accountId, "profileCards", [ids], ids.length),
            (profileId) => super.getProfileCard(accountId, { profileId }),
            CARDS_PER_STATEMENT,
          ),
      );
      return batch.get(lookup.profileId);
    }
    if (hasNul(lookup.identity.value)) return Promise.resolve(null);
    const batch = batchOf(
      this.byIdentity,
      accountId,
      () =>
        new TurnBatch(
          (ids) =>
            this.cards(
              accountId,
              "profileCardsByIdentity",
              [ids.map((i) => i.key), ids.map((i) => i.value)],
              ids.length,
            ),
          (identity) => super.getProfileCard(accountId, { identity }),
          CARDS_PER_STATEMENT,
        ),
    );
    return batch.get(lookup.identity);
  }

  override async findProfileByIdentity(accountId: string, key: IdentityKey, value: string): Promise<string | null> {
    return hasNul(value) ? null : super.findProfileByIdentity(accountId, key, value);
  }

  override async findDevice(accountId: string, deviceId: string): Promise<DeviceRow | null> {
    return hasNul(deviceId) ? null : super.findDevice(accountId, deviceId);
  }

  override async findProfileByUserAccount(accountId: string, ref: UserAccountRef): Promise<string | null> {
    return hasNul(ref.compartmentId, ref.userAccountId) ? null : super.findProfileByUserAccount(accountId, ref);
  }

  /** The `count` cards a statement over the look-ups' arrays (`args`, after the account) reads, in their order. */
  private async cards(
    accountId: string,
    statement: "profileCards" | "profileCardsByIdentity",
    args: unknown[],
    count: number,
  ): Promise<Array<ProfileCard | null>> {
    const found = await rows<CardRow & { n: number }>(this.db(accountId), statement, [accountId, ...args]);
    const cards: Array<ProfileCard | null> = new Array(count).fill(null);
    for (const row of found) cards[row.n - 1] = cardOf(row);
    return cards;
  }
}

/** An account's batch of one kind, made at its first look-up; it lives as long as the reader (a few objects). */
function batchOf<Q, A>(batches: Map<string, TurnBatch<Q, A>>, accountId: string, make: () => TurnBatch<Q, A>) {
  let batch = batches.get(accountId);
  if (batch === undefined) {
    batch = make();
    batches.set(accountId, batch);
  }
  return batch;
}

/**
 * The transaction handed to one `write()` function; unusable once that write has committed or rolled back.
 *
 * Round trips are what an ingest transaction costs here (one connection does ≈ 3.5k sequential point look-ups/s,
 * PERFORMANCE.md), so, as on SQLite, most of a record's work does not reach the server one statement at a time:
 * - Events are written behind: `insertEvents` gives each event its seq at once, from a block drawn ahead from the
 *   sequence, and keeps the rows; they go in one multi-row INSERT before anything reads or changes stored events, before
 *   a SAVEPOINT that must not include them, and before COMMIT. A block is drawn after every profile lock the
 *   transaction has taken so far (a lock taken later throws the rest of the block away), so a seq is never lower than
 *   the seqs of events a previous holder of the same profile lock wrote: "events above eventSeqAtMerge came after"
 *   holds as it did with a nextval() per INSERT (schema.ts, events).
 * - Profile updates are written behind too, in one UPDATE … FROM unnest, before the transaction's next statement of any
 *   kind (so every read sees them) and before COMMIT.
 * - Savepoints are lazy: SAVEPOINT is sent only before the first SQL write inside one, so a record that only reads and
 *   adds events costs no statement for its atomicity. A record that fails before writing rolls nothing back in SQL.
 *   The rule that keeps rollbacks exact: rows accepted before a savepoint opened are written before its SAVEPOINT.
 * - `prefetch` locks a batch's profiles and reads its handles in a few statements; `findDevice`,
 *   `findProfileByIdentity` and `lockProfile` answer from that while this transaction's own writes keep it true.
 *   It also reads which of the batch's record ids are stored: `claimRecordId` answers those from memory and writes
 *   the claims behind; one that another transaction committed in between makes the whole transaction run again.
 * A statement that fails with no open SAVEPOINT of its own aborts more than its record: PostgreSQL refuses every later
 * statement until that savepoint (or the whole transaction) rolls back. The transaction then refuses to go on, and
 * `write()` rolls it back rather than send a COMMIT that PostgreSQL would turn into a ROLLBACK. Reads check their text
 * parameters for NUL first, the one refusal that depends on data, so a bad value fails only its record.
 */
class PostgresTx extends PostgresReader implements StoreTx {
  private open = true;
  /** Savepoints currently open, innermost last. */
  private readonly frames: Frame[] = [];
  private readonly pending: PendingEvent[] = [];
  /** How many of `pending` are in SQL already. */
  private eventsWritten = 0;
  private readonly profileWrites: PendingProfile[] = [];
  private profilesWritten = 0;
  /** New profiles and certain claims, written before any other statement (as profile updates are). */
  private readonly inserts: PendingInsert[] = [];
  private insertsWritten = 0;
  /** Seqs drawn ahead and not yet given, ascending; `seqAt` is the next one to give. */
  private seqs: number[] = [];
  private seqAt = 0;
  /** Seqs given in this transaction: the next draw takes as many again (up to MAX_SEQ_DRAW). */
  private seqsGiven = 0;
  /** A batch's record count (from prefetch): the first draw's size. */
  private seqHint = 0;
  /** The statement that left the transaction unusable, and the depth of the savepoint whose rollback revives it. */
  private broken: { error: unknown; depth: number } | null = null;
  /**
   * What `prefetch` found. A device or identity value found absent (null) is held by this transaction (as a look-up
   * that finds nothing holds it). A profile is locked, and stored as it is here: it is handed out once, to the first
   * `lockProfile` of it (a later one reads it again under the lock it already holds), and dropped by any write of it.
   */
  private readonly known = {
    devices: new Map<string, DeviceRow | null>(),
    identities: new Map<string, string | null>(),
    profiles: new Map<string, ProfileState>(),
    /** Status of profiles that only count-only events name (not locked; `BatchHandles.countOnly`), dropped by a write. */
    statuses: new Map<string, Peeked>(),
    /** Record ids looked up by prefetch: true if stored then, false if free (claimed behind, see `claimRecordId`). */
    recordIds: new Map<string, boolean>(),
    /** Record ids of `recordIds` this transaction has claimed (its savepoints' rollbacks unclaim them). */
    claimed: new Set<string>(),
  };

  /** The connection as reads, writes and event statements see it (see `statement`). */
  private readonly reads: Queryable = { query: (config) => this.statement(READ, config) };
  private readonly writes: Queryable = { query: (config) => this.statement(WRITE, config) };
  private readonly eventReads: Queryable = { query: (config) => this.statement(READ_EVENTS, config) };
  private readonly eventWrites: Queryable = { query: (config) => this.statement(WRITE_EVENTS, config) };
  /** The connection for the statements that preparing a statement sends (failures still recorded). */
  private readonly sender: Queryable = { query: (config) => this.send(config) };

  /** The handle locks it holds, and whether it holds the account's handles instead. */
  readonly handles: HandleLocks;
  /** How it holds the account's settings lock (revisions, lockAccount). */
  private settingsHold: "shared" | "exclusive" | null = null;

  /** Devices read with their owner's revision, learnt by `owners` once this transaction commits (DeviceOwners). */
  private readonly learnt: RememberedDevice[] = [];
  /** Devices this transaction wrote: never learnt from it, whatever it read of them. */
  private readonly wroteDevices = new Set<string>();

  /**
   * `owners`: the devices this process remembers (DeviceOwners). `handlesExclusive`: hold the account's handles
   * exclusively from the first hold (HandleLocks).
   */
  constructor(
    private readonly client: pg.PoolClient,
    private readonly accountId: string,
    private readonly owners: DeviceOwners,
    handlesExclusive = false,
  ) {
    super(client);
    this.handles = new HandleLocks(accountId, handlesExclusive);
  }

  close(): void {
    this.open = false;
  }

  /** SEMANTICS §1: no write ever crosses accounts, so a transaction serves only the account it was opened for. */
  private check(accountId: string): void {
    if (!this.open) throw new Error("This transaction has already finished; use the store inside write() only.");
    if (accountId !== this.accountId) {
      throw new Error(`A transaction of account ${this.accountId} cannot touch account ${accountId}.`);
    }
  }

  protected override db(accountId: string): Queryable {
    this.check(accountId);
    return this.reads;
  }

  private forWrite(accountId: string): Queryable {
    this.check(accountId);
    return this.writes;
  }

  private forEvents(accountId: string, access: Access): Queryable {
    this.check(accountId);
    return access.write ? this.eventWrites : this.eventReads;
  }

  /**
   * Every statement of the transaction goes through here: written-behind profile updates go first (every statement
   * sees them), a write opens the savepoints it runs in, and a statement on events writes the pending ones first.
   */
  private async statement<R extends pg.QueryResultRow>(
    access: Access,
    config: pg.QueryConfig,
  ): Promise<pg.QueryResult<R>> {
    await this.prepare(access);
    return this.send<R>(config);
  }

  private async prepare(access: Access): Promise<void> {
    this.refuseIfBroken();
    // A read opens the savepoints only when rows it must see were accepted inside one not opened yet.
    const unopened = this.frames.find((f) => !f.opened);
    const open =
      access.write ||
      (unopened !== undefined &&
        (this.profileWrites.length > unopened.profilesAt ||
          this.inserts.length > unopened.insertsAt ||
          (access.events && this.pending.length > unopened.eventsAt)));
    if (open) await this.openSavepoints();
    await this.writeRows(this.inserts.length, this.profileWrites.length);
    if (access.events) await this.writeEvents(this.pending.length);
  }

  /** Runs `fn` on the connection itself (code outside this file that takes a client), as a write. */
  private async onClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    await this.prepare(WRITE);
    try {
      return await fn(this.client);
    } catch (error) {
      this.failed(error);
      throw error;
    }
  }

  private async send<R extends pg.QueryResultRow>(config: pg.QueryConfig): Promise<pg.QueryResult<R>> {
    this.refuseIfBroken();
    if (!this.protectedNow()) refuseNul(config.values);
    try {
      return await this.client.query<R>(config);
    } catch (error) {
      this.failed(error);
      throw error;
    }
  }

  /** True when a failing statement would be undone by the innermost savepoint's rollback alone. */
  private protectedNow(): boolean {
    const innermost = this.frames[this.frames.length - 1];
    return innermost?.opened === true;
  }

  private failed(error: unknown): void {
    if (this.broken) return;
    let depth = this.frames.length - 1;
    while (depth >= 0 && !this.frames[depth]!.opened) depth--;
    this.broken = { error, depth };
  }

  private refuseIfBroken(): void {
    if (this.broken) {
      throw new Error("An earlier statement of this transaction failed; it must roll back first.", {
        cause: this.broken.error,
      });
    }
  }

  /** Opens in SQL every savepoint not opened yet, writing first the rows accepted before each. */
  private async openSavepoints(): Promise<void> {
    for (let depth = 0; depth < this.frames.length; depth++) {
      const frame = this.frames[depth]!;
      if (frame.opened) continue;
      await this.writeEvents(frame.eventsAt);
      await this.writeRows(frame.insertsAt, frame.profilesAt);
      await this.send({ text: `SAVEPOINT record_${depth}` });
      frame.opened = true;
    }
  }

  /** Writes the pending events up to (not including) index `end`. */
  private async writeEvents(end: number): Promise<void> {
    while (this.eventsWritten < end) {
      const from = this.eventsWritten;
      const batch = this.pending.slice(from, Math.min(end, from + ROWS_PER_STATEMENT));
      await run(this.sender, "insertEventRows", [this.accountId, `[${batch.map(eventRow).join(",")}]`]);
      this.eventsWritten = from + batch.length;
    }
  }

  /**
   * Writes the pending inserts up to (not including) index `insertsEnd` and the pending profile updates up to
   * `profilesEnd`: both ends mark one moment (a savepoint's opening, or now). A profile inserted and then updated
   * before that moment is inserted as it stands after its last update.
   */
  private async writeRows(insertsEnd: number, profilesEnd: number): Promise<void> {
    if (this.profilesWritten >= profilesEnd && this.insertsWritten >= insertsEnd) return;
    const latest = new Map<string, PendingProfile>();
    for (let i = this.profilesWritten; i < profilesEnd; i++) {
      const write = this.profileWrites[i]!;
      latest.set(write.state.id, write);
    }
    this.profilesWritten = Math.max(this.profilesWritten, profilesEnd);
    if (this.insertsWritten < insertsEnd) {
      const from = this.insertsWritten;
      this.insertsWritten = insertsEnd;
      await this.writeInserts(this.inserts.slice(from, insertsEnd), latest);
    }
    await this.writeProfiles([...latest.values()]);
  }

  /** Writes pending inserts; a new profile's update in `updates` is folded into its insert (and taken out there). */
  private async writeInserts(inserts: readonly PendingInsert[], updates: Map<string, PendingProfile>): Promise<void> {
    const profiles: ProfileState[] = [];
    const rows: string[] = [];
    const identities: { keys: string[]; values: string[]; owners: string[] } = { keys: [], values: [], owners: [] };
    const devices: { ids: string[]; owners: string[]; tokens: (string | null)[]; platforms: (string | null)[] } = {
      ids: [],
      owners: [],
      tokens: [],
      platforms: [],
    };
    const recordIds: { ids: string[]; ats: number[] } = { ids: [], ats: [] };
    for (const insert of inserts) {
      if (insert.kind === "recordId") {
        recordIds.ids.push(insert.recordId);
        recordIds.ats.push(insert.at);
      } else if (insert.kind === "profile") {
        const update = updates.get(insert.state.id);
        updates.delete(insert.state.id);
        profiles.push(update?.state ?? insert.state);
        rows.push(update?.row ?? insert.row);
      } else if (insert.kind === "identity") {
        identities.keys.push(insert.key);
        identities.values.push(insert.value);
        identities.owners.push(insert.profileId);
      } else {
        devices.ids.push(insert.device.deviceId);
        devices.owners.push(insert.device.profileId);
        devices.tokens.push(insert.device.pushToken ?? null);
        devices.platforms.push(insert.device.platform ?? null);
      }
    }
    if (recordIds.ids.length > 0) await this.writeRecordIds(recordIds.ids, recordIds.ats);
    for (let from = 0; from < rows.length; from += ROWS_PER_STATEMENT) {
      const document = `[${rows.slice(from, from + ROWS_PER_STATEMENT).join(",")}]`;
      await run(this.sender, "insertProfileRows", [this.accountId, document]);
    }
    if (identities.keys.length > 0) {
      await run(this.sender, "insertIdentityRows", [
        this.accountId,
        identities.keys,
        identities.values,
        identities.owners,
      ]);
    }
    if (devices.ids.length > 0) {
      await run(this.sender, "insertDeviceRows", [
        this.accountId,
        devices.ids,
        devices.owners,
        devices.tokens,
        devices.platforms,
      ]);
    }
    if (profiles.length > 0) await this.indexNewProfiles(profiles);
  }

  /**
   * Record id claims answered from the prefetch. One that another transaction committed after the prefetch was
   * answered "first" wrongly: the transaction is refused for good (no savepoint rollback revives it) with a
   * serialization failure, so that `write()` runs it again, and the new prefetch answers "duplicate".
   */
  private async writeRecordIds(ids: string[], ats: number[]): Promise<void> {
    for (let from = 0; from < ids.length; from += ROWS_PER_STATEMENT) {
      const batch = ids.slice(from, from + ROWS_PER_STATEMENT);
      const args = [this.accountId, batch, ats.slice(from, from + ROWS_PER_STATEMENT)];
      const inserted = await rows<{ record_id: string }>(this.sender, "insertRecordIdRows", args);
      if (inserted.length === batch.length) continue;
      this.refuseForRerun("A record id was claimed by another transaction after this one looked it up; run it again.");
    }
  }

  /**
   * Refuses the transaction for good (no savepoint rollback revives it) with a serialization failure, so that `write()`
   * runs it again and the new run sees what another transaction changed.
   */
  private refuseForRerun(message: string): never {
    const error = Object.assign(new Error(message), { code: "40001" });
    this.broken = { error, depth: -1 };
    throw error;
  }

  /**
   * The property index rows of new profiles in one statement: what `segmentIndex.written(…, inserted)` writes for each
   * (indexValues, ords counted per path in order), then `segmentIndex.loaded` tells it what is stored now.
   */
  private async indexNewProfiles(profiles: readonly ProfileState[]): Promise<void> {
    const columns = new IndexRowColumns();
    for (const state of profiles) columns.add(state.id, indexValues(state.props));
    if (columns.size > 0) await run(this.sender, "insertSegmentRows", [this.accountId, ...columns.arrays()]);
    for (const state of profiles) segmentIndex.loaded(this, state);
  }

  /** Writes profile updates (the last of each profile) in one statement, then their segment index rows in one more. */
  private async writeProfiles(writes: readonly PendingProfile[]): Promise<void> {
    if (writes.length === 0) return;
    for (let from = 0; from < writes.length; from += ROWS_PER_STATEMENT) {
      const batch = writes.slice(from, from + ROWS_PER_STATEMENT);
      const document = `[${batch.map((w) => w.row).join(",")}]`;
      const updated = await rows<{ id: string }>(this.sender, "updateProfiles", [this.accountId, document]);
      if (updated.length === batch.length) continue;
      const found = new Set(updated.map((r) => r.id));
      for (const write of batch) {
        if (found.has(write.state.id)) continue;
        const { state } = write;
        const result = await run(this.sender, "updateProfile", [
          write.json,
          state.mergedInto,
          state.orphanOf,
          state.flags.controlGroupExcluded,
          state.createdAt,
          state.updatedAt,
          this.accountId,
          state.id,
        ]);
        if (result.rowCount === 0) {
          // Updating a profile that does not exist is a bug upstream; saying so beats losing the write silently.
          const error = new Error(`updateProfile: account ${this.accountId} has no profile ${state.id}.`);
          this.failed(error);
          throw error;
        }
      }
    }
    try {
      const states = writes.map((w) => w.state);
      await segmentIndex.writtenMany(this, this.client, this.accountId, states);
    } catch (error) {
      this.failed(error);
      throw error;
    }
  }

  /** Before COMMIT: whatever is still written behind. Throws if the transaction cannot commit. */
  async finish(): Promise<void> {
    if (this.broken) throw this.broken.error;
    await this.writeRows(this.inserts.length, this.profileWrites.length);
    await this.writeEvents(this.pending.length);
  }

  /** After COMMIT: what it read of devices and their owners' revisions is remembered for later transactions. */
  committed(): void {
    for (const entry of this.learnt) {
      if (!this.wroteDevices.has(entry.device.deviceId)) this.owners.set(this.accountId, entry);
    }
  }

  /** The statement that broke the transaction, if one did (write() rolls back with it instead of committing). */
  get failure(): unknown {
    return this.broken?.error;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Prefetch (StoreTx.prefetch)

  async prefetch(accountId: string, handles: BatchHandles): Promise<void> {
    const db = this.db(accountId);
    const deviceIds = [...new Set(handles.deviceIds)];
    const identities = new Map(handles.identities.map((h) => [identityKey(h.key, h.value), h]));
    const keys = [...identities.values()].map((h) => h.key);
    const values = [...identities.values()].map((h) => h.value);
    this.seqHint = Math.max(
      this.seqHint,
      handles.deviceIds.length + handles.identities.length + handles.profileIds.length,
    );
    await this.prefetchRecordIds(accountId, handles.recordIds ?? []);

    // The handles, then their owners and the named profiles locked in id order (so two prefetching transactions never
    // wait on each other in a circle), then the handles again: a statement sees what committed before it started, and
    // an owner could have changed hands just before its lock was taken. Once it is locked it cannot: moving a device
    // or an identity value off a profile takes that profile's lock first.
    // With the owners' statuses when count-only events will ask for them.
    const countOnly = (handles.countOnly?.deviceIds.length ?? 0) + (handles.countOnly?.identities.length ?? 0) > 0;
    const statement = !countOnly
      ? "prefetchHandles"
      : handles.countOnly?.context === false
        ? "prefetchHandlesWithStatus"
        : "prefetchHandlesWithContext";
    const countOnlyDevices = new Set(handles.countOnly?.deviceIds);
    const before = await this.readDevicesRemembered(accountId, deviceIds, countOnlyDevices, keys, values, statement);
    // Too many free handles to hold one by one (a batch of new people): the account's handles are held instead, now,
    // before any profile is locked, so that while it waits for the account's other holders it holds nothing they
    // could be waiting for. As this is usually the transaction's first hold, it is no upgrade either.
    const absent = (found: FoundHandles) => ({
      devices: deviceIds.filter((d) => !found.devices.has(d)),
      identities: [...identities.values()].filter((h) => !found.identities.has(identityKey(h.key, h.value))),
    });
    if (this.handles.passes(handleNames(accountId, absent(before)), HANDLE_LOCKS)) await this.holdAccountHandles();
    // Owners that only count-only events reach are not locked, only peeked: such an event is added to its profile
    // without reading it (addActivity checks again that it may be). Its device or identity value is then answered as
    // read, unlocked: the event changes nothing but that profile, so when the handle moves to another profile
    // meanwhile, the event simply comes first.
    const countOnlyIdentities = new Set(handles.countOnly?.identities.map((h) => identityKey(h.key, h.value)));
    const countOnlyProfiles = new Set(handles.countOnly?.profileIds);
    const profileIds = new Set(handles.profileIds.filter((id) => !countOnlyProfiles.has(id)));
    const unlocked = new Set(countOnlyProfiles);
    for (const [deviceId, device] of before.devices) {
      (countOnlyDevices.has(deviceId) ? unlocked : profileIds).add(device.profileId);
    }
    for (const [key, owner] of before.identities) (countOnlyIdentities.has(key) ? unlocked : profileIds).add(owner);
    for (const id of profileIds) unlocked.delete(id);
    // A group that locks profiles here locks the count-only events' owners with them, in the same statement: every
    // profile lock it knows it will take, in one pass in id order. Left to the activity update at its end, they were
    // a second ordered pass, and two ordered passes are not one order: two groups sharing people deadlocked, each
    // holding one person from here and waiting for the other at its activity update (an event on B's device with
    // an $incr on A, against the reverse: the concurrency audit, F2). A group of count-only events alone locks
    // nothing here and keeps its one ordered lock, at its end, in the activity update (B1).
    const countOnlyLocked = new Set<string>();
    if (profileIds.size > 0) {
      for (const id of unlocked) {
        profileIds.add(id);
        countOnlyLocked.add(id);
      }
      unlocked.clear();
    }
    const locked = new Set<string>();
    if (profileIds.size > 0) {
      const ids = [...profileIds];
      const states = await rows<StateRow & { id: string; row: string }>(db, "prefetchProfiles", [accountId, ids]);
      this.dropSeqs();
      for (const row of states) {
        locked.add(row.id);
        const state = stateOf(row);
        this.known.profiles.set(row.id, state);
        // Its count-only events are added at the address it was locked at (addActivity), with no statement of their own.
        if (countOnlyLocked.has(row.id)) {
          const status = { mergedInto: state.mergedInto, journalMergeId: state.journalMergeId };
          this.known.statuses.set(row.id, { row: row.row, status, context: contextStatusOf(state) });
        }
      }
    }
    const unread: string[] = [];
    for (const id of unlocked) {
      const status = before.statuses.get(id);
      if (status) this.known.statuses.set(id, status);
      else if (countOnlyProfiles.has(id)) unread.push(id);
    }
    if (unread.length > 0) {
      // Named by id rather than through a handle: their status is read on its own.
      for (const row of await rows<StatusRow & { id: string }>(db, "peekProfiles", [accountId, unread])) {
        this.known.statuses.set(row.id, peeked(row));
      }
    }
    const found =
      locked.size > 0 && before.devices.size + before.identities.size > 0
        ? await this.readHandles(accountId, deviceIds, keys, values)
        : before;
    // Only a handle whose owner is locked here (or a count-only one whose owner was peeked) keeps its answer until
    // COMMIT; any other is looked up when asked.
    const held = (owner: string, countOnly: boolean) =>
      locked.has(owner) || (countOnly && this.known.statuses.has(owner));
    for (const [deviceId, device] of found.devices) {
      if (held(device.profileId, countOnlyDevices.has(deviceId))) this.known.devices.set(deviceId, device);
    }
    for (const [key, owner] of found.identities) {
      if (held(owner, countOnlyIdentities.has(key))) this.known.identities.set(key, owner);
    }
    const free = absent(found);
    const names = handleNames(accountId, free);
    if (names.length === 0) return;

    // Handles found free are held until COMMIT, as `holdIfAbsent` holds them one by one (or all the account's handles
    // are, see above), then read again: one that a transaction holding it meanwhile gave an owner is looked up when
    // asked; the others are free for this one alone.
    if (this.handles.passes(names, HANDLE_LOCKS)) await this.holdAccountHandles();
    if (!this.handles.exclusive) await run(db, "holdHandles", [this.handles.take(names), this.handles.account]);
    const again = await this.readHandles(
      accountId,
      free.devices,
      free.identities.map((h) => h.key),
      free.identities.map((h) => h.value),
    );
    for (const deviceId of free.devices) if (!again.devices.has(deviceId)) this.known.devices.set(deviceId, null);
    for (const h of free.identities) {
      const key = identityKey(h.key, h.value);
      if (!again.identities.has(key)) this.known.identities.set(key, null);
    }
  }

  /**
   * The account's handles lock, exclusively, in place of handle locks (HandleLocks). Taken as a read (it opens no
   * savepoint of its own); if it runs inside a savepoint that rolls back, PostgreSQL releases it, and `savepoint`
   * forgets it was held.
   */
  private async holdAccountHandles(): Promise<void> {
    await run(this.reads, "holdAccountLock", [this.handles.account]);
    this.handles.escalated();
  }

  /**
   * The lock parameters of a statement that inserts handle `name` (HOLD_HANDLE): its own lock's name, or null once
   * the account's handles are held exclusively (taken here first if this lock would be one too many), then the
   * account's.
   */
  private async handleLock(name: string): Promise<[string | null, string]> {
    if (this.handles.passes([name], MAX_HANDLE_LOCKS)) await this.holdAccountHandles();
    return [this.handles.exclusive ? null : this.handles.take([name])[0]!, this.handles.account];
  }

  /**
   * Which record ids are stored already, so that `claimRecordId` answers without a statement. An id with NUL is left
   * out (its claim is refused in SQL inside its own record), as is one this transaction has answered for already.
   */
  private async prefetchRecordIds(accountId: string, recordIds: readonly string[]): Promise<void> {
    const ids = [...new Set(recordIds)].filter((id) => !id.includes("\u0000") && !this.known.recordIds.has(id));
    if (ids.length === 0) return;
    const stored = await rows<{ record_id: string }>(this.db(accountId), "prefetchRecordIds", [accountId, ids]);
    for (const id of ids) this.known.recordIds.set(id, false);
    for (const row of stored) this.known.recordIds.set(row.record_id, true);
  }

  /**
   * readHandles for prefetch's first read. Count-only devices that this process remembers (DeviceOwners) are not
   * probed: their owners' statuses are read by id in the same statement, and a device whose owner's handles revision
   * is still the remembered one is answered as remembered (no change of any of that profile's device rows has
   * committed since it was read). The others are probed, in a second statement. What the devices read with their
   * owners' revisions say is learnt once this transaction commits.
   */
  private async readDevicesRemembered(
    accountId: string,
    deviceIds: string[],
    countOnlyDevices: ReadonlySet<string>,
    keys: IdentityKey[],
    values: string[],
    statement: HandlesStatement,
  ): Promise<FoundHandles> {
    const remembered = new Map<string, RememberedDevice>();
    if (statement !== "prefetchHandles") {
      for (const deviceId of deviceIds) {
        const entry = countOnlyDevices.has(deviceId) ? this.owners.get(accountId, deviceId) : undefined;
        if (entry !== undefined) remembered.set(deviceId, entry);
      }
    }
    const probed = remembered.size === 0 ? deviceIds : deviceIds.filter((d) => !remembered.has(d));
    const owners = [...new Set([...remembered.values()].map((e) => e.device.profileId))];
    const found = await this.readHandles(accountId, probed, keys, values, statement, owners);
    const stale: string[] = [];
    for (const [deviceId, entry] of remembered) {
      if (found.revs.get(entry.device.profileId) === entry.rev) {
        found.devices.set(deviceId, { ...entry.device });
        this.owners.hits++;
      } else {
        this.owners.delete(accountId, deviceId);
        stale.push(deviceId);
      }
    }
    if (stale.length > 0) {
      const again = await this.readHandles(accountId, stale, [], [], statement);
      for (const [deviceId, device] of again.devices) found.devices.set(deviceId, device);
      for (const [profileId, status] of again.statuses) found.statuses.set(profileId, status);
      found.withRevs.push(...again.withRevs);
    }
    // Each device with the revision read in its own row: a revision from another statement may be newer than it.
    for (const entry of found.withRevs) if (countOnlyDevices.has(entry.device.deviceId)) this.learnt.push(entry);
    return found;
  }

  private async readHandles(
    accountId: string,
    deviceIds: string[],
    keys: IdentityKey[],
    values: string[],
    statement: HandlesStatement = "prefetchHandles",
    owners: string[] = [],
  ): Promise<FoundHandles> {
    const devices = new Map<string, DeviceRow>();
    const identities = new Map<string, string>();
    const statuses = new Map<string, Peeked>();
    const withRevs: RememberedDevice[] = [];
    const revs = new Map<string, number>();
    if (deviceIds.length + keys.length + owners.length === 0) return { devices, identities, statuses, withRevs, revs };
    const params: unknown[] = [accountId, deviceIds, keys, values];
    if (statement !== "prefetchHandles") params.push(owners);
    const found = await rows<HandleRow & Partial<StatusRow>>(this.db(accountId), statement, params);
    for (const row of found) {
      if (row.kind === "device") {
        const device = {
          deviceId: row.name,
          profileId: row.profile_id,
          pushToken: row.push_token,
          platform: row.platform,
        };
        devices.set(row.name, device);
        if (row.present) withRevs.push({ device: { ...device }, rev: row.rev! });
      } else if (row.kind === "identity") {
        identities.set(identityKey(row.name as IdentityKey, row.value!), row.profile_id);
      } else {
        revs.set(row.profile_id, row.rev!);
      }
      if (row.present) statuses.set(row.profile_id, peeked(row as StatusRow));
    }
    return { devices, identities, statuses, withRevs, revs };
  }

  /** Sets or drops a prefetched handle; the innermost savepoint remembers it, to drop it again if it rolls back. */
  private learn<V>(map: Map<string, V>, key: string, mapKey: string, value: V | undefined): void {
    if (value === undefined) map.delete(mapKey);
    else map.set(mapKey, value);
    this.frames[this.frames.length - 1]?.changed.push(key);
  }

  private learnDevice(deviceId: string, device: DeviceRow | undefined): void {
    this.wroteDevices.add(deviceId);
    if (device === undefined && !this.known.devices.has(deviceId)) return;
    this.learn(this.known.devices, deviceKey(deviceId), deviceId, device);
  }

  private learnIdentity(key: IdentityKey, value: string, owner: string | undefined): void {
    const k = identityKey(key, value);
    if (owner === undefined && !this.known.identities.has(k)) return;
    this.learn(this.known.identities, k, k, owner);
  }

  private forget(keys: readonly string[]): void {
    for (const key of keys) {
      if (key.startsWith("d")) this.known.devices.delete(key.slice(1));
      else this.known.identities.delete(key);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Profiles

  async lockProfile(accountId: string, profileId: string): Promise<ProfileState | null> {
    this.check(accountId);
    const prefetched = this.known.profiles.get(profileId);
    if (prefetched !== undefined) {
      this.known.profiles.delete(profileId);
      segmentIndex.loaded(this, prefetched);
      return prefetched;
    }
    // The row lock lasts until COMMIT: a second writer of this profile, in any process, waits here.
    const row = await first<StateRow>(this.db(accountId), "lockProfile", [accountId, profileId]);
    this.dropSeqs();
    if (row === undefined) {
      this.forgetHandlesOf(profileId);
      return null;
    }
    segmentIndex.loaded(this, row.state);
    return stateOf(row);
  }

  /**
   * Written behind, with the transaction's other new profiles (a profile id is new by construction: a duplicate,
   * which only a bug could make, fails the whole transaction when the rows are written instead of one record).
   */
  async insertProfile(accountId: string, state: ProfileState): Promise<void> {
    this.check(accountId);
    this.refuseIfBroken();
    // Refused here, inside the caller's savepoint, rather than when the row is written.
    const text = json(state);
    refuseNul([state.id, state.mergedInto, state.orphanOf]);
    this.known.profiles.delete(state.id);
    this.inserts.push({ kind: "profile", state, row: profileRow(state, text) });
  }

  async updateProfile(accountId: string, state: ProfileState): Promise<void> {
    this.check(accountId);
    this.refuseIfBroken();
    // Refused here, inside the caller's savepoint, rather than when the update is written.
    const text = json(state);
    refuseNul([state.id, state.mergedInto, state.orphanOf]);
    this.known.profiles.delete(state.id);
    this.known.statuses.delete(state.id);
    this.profileWrites.push({ state, json: text, row: profileRow(state, text) });
  }

  /**
   * A profile found gone (deleted by another transaction after prefetch peeked it, unlocked, for a count-only event):
   * the handles remembered for it are stale, and are looked up again when asked (its devices are then free).
   */
  private forgetHandlesOf(profileId: string): void {
    this.known.statuses.delete(profileId);
    for (const [deviceId, device] of this.known.devices) {
      if (device?.profileId === profileId) this.known.devices.delete(deviceId);
    }
    for (const [key, owner] of this.known.identities) if (owner === profileId) this.known.identities.delete(key);
  }

  async peekProfile(accountId: string, profileId: string): Promise<ProfileStatus | null> {
    this.check(accountId);
    const prefetched = this.known.profiles.get(profileId);
    if (prefetched !== undefined) {
      return { mergedInto: prefetched.mergedInto, journalMergeId: prefetched.journalMergeId };
    }
    const known = this.known.statuses.get(profileId);
    if (known !== undefined) return { ...known.status };
    return (await this.peeked(accountId, profileId))?.status ?? null;
  }

  async peekContext(accountId: string, profileId: string): Promise<ContextStatus | null> {
    this.check(accountId);
    const prefetched = this.known.profiles.get(profileId);
    if (prefetched !== undefined) return contextStatusOf(prefetched);
    const known = this.known.statuses.get(profileId);
    if (known?.context) return { ...known.context };
    return (await this.peeked(accountId, profileId))?.context ?? null;
  }

  private async peeked(accountId: string, profileId: string): Promise<Peeked | null> {
    const row = await first<StatusRow>(this.db(accountId), "peekProfile", [accountId, profileId]);
    return row === undefined ? null : peeked(row);
  }

  /**
   * The profiles were not locked when their status was read (peekProfile, prefetch), so another transaction may have
   * merged, journalled, deleted or rezoned one since: the update's guard skips such a row, and then this transaction is
   * refused for a re-run (refuseForRerun). Rows it updates stay locked until COMMIT, as any update's.
   */
  async addActivity(accountId: string, deltas: readonly ProfileActivity[]): Promise<void> {
    // The rows stay locked from here to COMMIT, and concurrent groups share profiles: events go first, so that
    // (at the end of a transaction, outside savepoints) the lock is held for this statement and COMMIT only.
    const db = this.frames.length === 0 ? this.forEvents(accountId, WRITE_EVENTS) : this.forWrite(accountId);
    const sorted = [...deltas].sort((a, b) => (a.profileId < b.profileId ? -1 : a.profileId > b.profileId ? 1 : 0));
    const read = new Map<string, string>();
    for (const d of sorted) {
      const row = this.known.statuses.get(d.profileId)?.row;
      if (row) read.set(d.profileId, row);
      // What prefetch loaded of these profiles no longer holds once this adds to them.
      this.known.profiles.delete(d.profileId);
      this.known.statuses.delete(d.profileId);
    }
    for (let from = 0; from < sorted.length; from += ROWS_PER_STATEMENT) {
      const batch = sorted.slice(from, from + ROWS_PER_STATEMENT);
      // First straight at the addresses the status read gave, with no lock statement: the update locks each row as
      // it writes it, in the fold's order (by id), so two groups sharing profiles wait for each other in one order. A
      // row that another transaction updated since is no longer at its address and is left out, as is one that fails
      // the guard.
      let rest = batch;
      const addressed = batch.filter((d) => read.has(d.profileId));
      if (addressed.length > 0) {
        const updated = await this.addActivityAt(db, accountId, addressed, read);
        rest = batch.filter((d) => !updated.has(d.profileId));
      }
      if (rest.length === 0) continue;
      // The rest locked first, in id order, each found by its id; a row that another transaction updates while this
      // one waits is answered at its new address.
      const ids = JSON.stringify(rest.map((d) => ({ id: d.profileId })));
      const locked = await rows<{ id: string; row: string }>(db, "lockActivityRows", [accountId, ids]);
      const updated = await this.addActivityAt(db, accountId, rest, new Map(locked.map((r) => [r.id, r.row])));
      if (updated.size === rest.length) continue;
      // Locked, a row cannot have moved: one left out is gone or fails the guard (merged, deleted or given another
      // zone by another transaction after this one read it).
      const gone = rest.find((d) => !updated.has(d.profileId))!;
      this.refuseForRerun(`Profile ${gone.profileId} changed after this transaction read its status; run it again.`);
    }
  }

  /** addActivityRows for `deltas` at their row `addresses`: the ids of the rows it updated. */
  private async addActivityAt(
    db: Queryable,
    accountId: string,
    deltas: readonly ProfileActivity[],
    addresses: ReadonlyMap<string, string>,
  ): Promise<Set<string>> {
    const document = JSON.stringify(
      deltas.map((d) => ({
        id: d.profileId,
        row: addresses.get(d.profileId) ?? null,
        first: d.firstTs,
        last: d.lastTs,
        events: d.events,
        tz: d.timezone?.value ?? null,
        tz_ts: d.timezone?.ts ?? null,
      })),
    );
    const updated = await rows<{ id: string }>(db, "addActivityRows", [accountId, document]);
    return new Set(updated.map((r) => r.id));
  }

  // -------------------------------------------------------------------------------------------------------------
  // Handles

  override async findProfileByIdentity(accountId: string, key: IdentityKey, value: string): Promise<string | null> {
    this.check(accountId);
    const known = this.known.identities.get(identityKey(key, value));
    if (known !== undefined) return known;
    return this.holdIfAbsent(handleName.identity(accountId, key, value), () =>
      super.findProfileByIdentity(accountId, key, value),
    );
  }

  override async findDevice(accountId: string, deviceId: string): Promise<DeviceRow | null> {
    this.check(accountId);
    const known = this.known.devices.get(deviceId);
    if (known !== undefined) return known === null ? null : { ...known };
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
   * A transaction that holds the account's handles exclusively needs no hold: every other creator of a handle waits
   * for its COMMIT already, so a handle that its read did not find stays free for it.
   */
  private async holdIfAbsent<V>(name: string, read: () => Promise<V | null>): Promise<V | null> {
    const found = await read();
    if (found !== null || this.handles.exclusive) return found;
    if (this.handles.passes([name], MAX_HANDLE_LOCKS)) await this.holdAccountHandles();
    else await run(this.reads, "holdHandle", [...this.handles.take([name]), this.handles.account]);
    return read();
  }

  async claimIdentity(accountId: string, key: IdentityKey, value: string, profileId: string): Promise<string> {
    this.check(accountId);
    if (this.known.identities.get(identityKey(key, value)) === null) {
      // Found free under its advisory lock (prefetch): no one else can claim it before COMMIT, so this claim wins.
      this.refuseIfBroken();
      refuseNul([key, value, profileId]);
      this.inserts.push({ kind: "identity", key, value, profileId });
      this.learnIdentity(key, value, profileId);
      return profileId;
    }
    const db = this.forWrite(accountId);
    const held = await this.handleLock(handleName.identity(accountId, key, value));
    const owner = await claim(
      async () =>
        (await first<OwnerRow>(db, "insertIdentity", [accountId, key, value, profileId, ...held]))?.profile_id,
      async () => (await first<OwnerRow>(db, "findIdentity", [accountId, key, value]))?.profile_id,
    );
    this.learnIdentity(key, value, owner);
    return owner;
  }

  async releaseIdentity(accountId: string, key: IdentityKey, value: string, profileId: string): Promise<void> {
    await run(this.forWrite(accountId), "releaseIdentity", [accountId, key, value, profileId]);
    this.learnIdentity(key, value, undefined);
  }

  async releaseIdentityKey(accountId: string, key: IdentityKey): Promise<void> {
    await run(this.forWrite(accountId), "releaseIdentityKey", [accountId, key]);
    for (const k of [...this.known.identities.keys()]) {
      if (k.startsWith(identityKey(key, ""))) this.learn(this.known.identities, k, k, undefined);
    }
  }

  async listIdentityHolders(
    accountId: string,
    key: IdentityKey,
    moreThan: number,
    afterId: string | null,
    limit: number,
  ): Promise<string[]> {
    // Every id sorts after "" (byte order, COLLATE "C"), so a null cursor starts at the first profile.
    const found = await rows<{ profile_id: string }>(this.db(accountId), "listIdentityHolders", [
      accountId,
      afterId ?? "",
      key,
      moreThan,
      limit,
    ]);
    return found.map((r) => r.profile_id);
  }

  async listStringPropertyHolders(
    accountId: string,
    key: string,
    afterId: string | null,
    limit: number,
  ): Promise<string[]> {
    const found = await rows<{ id: string }>(this.db(accountId), "listStringPropertyHolders", [
      accountId,
      afterId ?? "",
      key,
      limit,
    ]);
    return found.map((r) => r.id);
  }

  async claimDevice(accountId: string, device: DeviceRow): Promise<string> {
    this.check(accountId);
    const { deviceId, profileId } = device;
    const pushToken = device.pushToken ?? null;
    const platform = device.platform ?? null;
    if (this.writeBehindDevice(deviceId, { deviceId, profileId, pushToken, platform })) return profileId;
    const db = this.forWrite(accountId);
    const held = await this.handleLock(handleName.device(accountId, deviceId));
    const row = [accountId, deviceId, profileId, pushToken, platform, ...held];
    const inserted = { row: false };
    const owner = await claim(
      async () => {
        const mine = (await first<OwnerRow>(db, "insertDevice", row))?.profile_id;
        inserted.row = mine !== undefined;
        return mine;
      },
      async () => (await first<DeviceRow>(db, "findDevice", [accountId, deviceId]))?.profileId,
    );
    this.learnDevice(deviceId, inserted.row ? { deviceId, profileId, pushToken, platform } : undefined);
    return owner;
  }

  async upsertDevice(accountId: string, device: DeviceRow): Promise<void> {
    this.check(accountId);
    const row: DeviceRow = {
      deviceId: device.deviceId,
      profileId: device.profileId,
      pushToken: device.pushToken ?? null,
      platform: device.platform ?? null,
    };
    if (this.writeBehindDevice(row.deviceId, row)) return;
    const db = this.forWrite(accountId);
    const held = await this.handleLock(handleName.device(accountId, row.deviceId));
    await run(db, "upsertDevice", [accountId, row.deviceId, row.profileId, row.pushToken, row.platform, ...held]);
    this.learnDevice(row.deviceId, row);
  }

  /**
   * A device found free under its advisory lock (prefetch) is this transaction's to create: no one else can before
   * COMMIT, so its insert is written behind and certain to succeed. False for any other device (written now).
   */
  private writeBehindDevice(deviceId: string, row: DeviceRow): boolean {
    if (this.known.devices.get(deviceId) !== null) return false;
    this.refuseIfBroken();
    refuseNul([row.deviceId, row.profileId, row.pushToken, row.platform]);
    this.inserts.push({ kind: "device", device: row });
    this.learnDevice(deviceId, { ...row });
    return true;
  }

  async deleteDevice(accountId: string, deviceId: string): Promise<void> {
    await run(this.forWrite(accountId), "deleteDevice", [accountId, deviceId]);
    this.learnDevice(deviceId, undefined);
  }

  async claimUserAccount(accountId: string, ref: UserAccountRef, profileId: string): Promise<string> {
    const db = this.forWrite(accountId);
    const key = [accountId, ref.compartmentId, ref.userAccountId];
    const held = await this.handleLock(handleName.userAccount(accountId, ref));
    return claim(
      async () => (await first<OwnerRow>(db, "insertUserAccount", [...key, profileId, ...held]))?.profile_id,
      async () => (await first<OwnerRow>(db, "findUserAccount", key))?.profile_id,
    );
  }

  async releaseUserAccount(accountId: string, ref: UserAccountRef): Promise<void> {
    await run(this.forWrite(accountId), "releaseUserAccount", [accountId, ref.compartmentId, ref.userAccountId]);
  }

  async putDocument(accountId: string, doc: ProfileDocument): Promise<void> {
    await run(this.forWrite(accountId), "putDocument", [
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
    const result = await run(this.forWrite(accountId), "deleteDocument", [
      accountId,
      ref.compartmentId,
      ref.userAccountId,
    ]);
    return (result.rowCount ?? 0) > 0;
  }

  /**
   * An id the prefetch looked up is answered from it and claimed behind (see `writeRecordIds` for a claim that another
   * transaction committed meanwhile); any other id is claimed now, and a racing claim of the same id waits for this
   * transaction: false if it commits, true if it rolls back.
   */
  async claimRecordId(accountId: string, recordId: string, at: number): Promise<boolean> {
    this.check(accountId);
    const stored = this.known.recordIds.get(recordId);
    if (stored === undefined) {
      return (await run(this.forWrite(accountId), "claimRecordId", [accountId, recordId, at])).rowCount === 1;
    }
    this.refuseIfBroken();
    if (stored || this.known.claimed.has(recordId)) return false;
    this.inserts.push({ kind: "recordId", recordId, at });
    this.known.claimed.add(recordId);
    this.frames[this.frames.length - 1]?.claims.push(recordId);
    return true;
  }

  async claimChargedId(accountId: string, profileId: string, chargedId: string): Promise<boolean> {
    return (await run(this.forWrite(accountId), "claimChargedId", [accountId, profileId, chargedId])).rowCount === 1;
  }

  async releaseChargedIds(accountId: string, profileId: string): Promise<void> {
    await run(this.forWrite(accountId), "releaseChargedIds", [accountId, profileId]);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Events

  async insertEvents(accountId: string, events: NewEvent[]): Promise<number[]> {
    this.check(accountId);
    this.refuseIfBroken();
    if (events.length === 0) return [];
    // Everything SQL would refuse is refused here, inside the caller's savepoint, not later when the rows are written.
    const accepted = events.map(toPendingEvent);
    const seqs = await this.takeSeqs(accepted.length);
    for (let i = 0; i < accepted.length; i++) {
      const row = accepted[i]!;
      row.seq = seqs[i]!;
      this.pending.push(row);
    }
    return seqs;
  }

  /**
   * `n` seqs, ascending, from the block drawn ahead; a new block when it runs short. A block is as large as the batch
   * announced by `prefetch`, or as many seqs as this transaction has given so far (so a long transaction draws a few
   * times, and a one-record one draws only what it uses).
   */
  private async takeSeqs(n: number): Promise<number[]> {
    if (this.seqs.length - this.seqAt < n) {
      const size = Math.max(n, Math.min(MAX_SEQ_DRAW, Math.max(this.seqHint, this.seqsGiven)));
      // Straight to the connection: a sequence draw reads nothing written behind, and a rollback never undoes it.
      const drawn = await rows<{ seq: number }>(this.sender, "drawSeqs", [size]);
      this.seqs = drawn.map((r) => r.seq).sort((a, b) => a - b);
      this.seqAt = 0;
    }
    const given = this.seqs.slice(this.seqAt, this.seqAt + n);
    this.seqAt += n;
    this.seqsGiven += n;
    return given;
  }

  /** A profile lock was taken: seqs drawn before it could be lower than those its previous holder wrote. */
  private dropSeqs(): void {
    this.seqs = [];
    this.seqAt = 0;
  }

  override async listEvents(accountId: string, profileIds: string[], opts: PageOptions): Promise<EventPage> {
    this.check(accountId);
    await this.prepare(READ_EVENTS);
    return super.listEvents(accountId, profileIds, opts);
  }

  // Composed from this transaction's own reads, which see what it writes behind and what prefetch holds.
  override getProfileCard(accountId: string, lookup: ProfileLookup): Promise<ProfileCard | null> {
    return composeProfileCard(this, accountId, lookup);
  }

  override timelinePage(accountId: string, profileId: string, opts: PageOptions): Promise<TimelinePage | null> {
    return composeTimelinePage(this, accountId, profileId, opts);
  }

  override async maxEventSeq(accountId: string): Promise<number> {
    this.check(accountId);
    await this.prepare(READ_EVENTS);
    return super.maxEventSeq(accountId);
  }

  async listEventsBySeq(accountId: string, seqs: number[]): Promise<StoredEvent[]> {
    return (await rows<EventRow>(this.forEvents(accountId, READ_EVENTS), "eventsBySeq", [accountId, seqs])).map(
      toEvent,
    );
  }

  async listEventSeqs(accountId: string, profileId: string): Promise<number[]> {
    const db = this.forEvents(accountId, READ_EVENTS);
    const found = await rows<{ seq: number }>(db, "eventSeqsOfProfile", [accountId, profileId]);
    return found.map((r) => r.seq);
  }

  async moveEvents(accountId: string, seqs: number[], toProfileId: string): Promise<void> {
    await run(this.forEvents(accountId, WRITE_EVENTS), "moveEvents", [toProfileId, accountId, seqs]);
  }

  async deleteEvents(accountId: string, seqs: number[]): Promise<void> {
    await run(this.forEvents(accountId, WRITE_EVENTS), "deleteEvents", [accountId, seqs]);
  }

  async restoreEvents(accountId: string, events: StoredEvent[]): Promise<void> {
    const db = this.forEvents(accountId, WRITE_EVENTS);
    if (events.length === 0) return;
    const restored = events.map((e) => ({ seq: e.seq, fields: toPendingEvent(e).fields }));
    await run(db, "insertEventRows", [accountId, `[${restored.map(eventRow).join(",")}]`]);
  }

  // -------------------------------------------------------------------------------------------------------------
  // Types, merges, deletes

  async registerType(accountId: string, scope: TypeScope, path: string, type: ValueType): Promise<ValueType> {
    const db = this.forWrite(accountId);
    return claim(
      async () => (await first<{ type: ValueType }>(db, "insertType", [accountId, scope, path, type]))?.type,
      async () => (await first<{ type: ValueType }>(db, "getType", [accountId, scope, path]))?.type,
    );
  }

  async changeType(accountId: string, scope: TypeScope, path: string, type: ValueType): Promise<void> {
    await run(this.forWrite(accountId), "changeType", [type, accountId, scope, path]);
  }

  /**
   * The account's settings lock, shared, then the revisions, read after the lock (schema version 7,
   * portrait_hold_account_revisions): a read in the locking statement itself would see the database as of before a
   * settings change that the lock waited for.
   */
  override async revisions(accountId: string): Promise<AccountRevisions> {
    this.check(accountId);
    if (this.settingsHold !== null) return super.revisions(accountId);
    const held = await first<AccountRevisions>(this.reads, "holdRevisions", [accountId, settingsLockName(accountId)]);
    this.settingsHold = "shared";
    return held ?? { types: 0, settings: 0 };
  }

  async getAccount(accountId: string): Promise<Account | null> {
    const row = await first<AccountRow>(this.db(accountId), "getAccount", [accountId]);
    return row === undefined ? null : toAccount(row);
  }

  async lockAccount(accountId: string): Promise<void> {
    this.check(accountId);
    if (this.settingsHold === "exclusive") return;
    // Shared first and exclusive later would be an upgrade, which two settings changes could deadlock on.
    if (this.settingsHold === "shared") throw new Error("lockAccount must come first in its transaction.");
    await run(this.reads, "holdAccountLock", [settingsLockName(accountId)]);
    this.settingsHold = "exclusive";
  }

  /**
   * SEMANTICS §9's limit is a count, then a write: at READ COMMITTED two transactions each counted 19 and both excluded
   * (25 of 26 at once, in the audit). An advisory lock of the account's, exclusive until COMMIT: the second waits,
   * and its count, a new statement, sees what the first committed. Sent as a read (it opens no savepoint): taken
   * again inside a savepoint that rolls back, only that taking goes with it.
   */
  async lockControlGroupExclusions(accountId: string): Promise<void> {
    this.check(accountId);
    await run(this.reads, "holdAccountLock", [exclusionsLockName(accountId)]);
  }

  async updateSettings(accountId: string, settings: AccountSettings): Promise<void> {
    const result = await run(this.forWrite(accountId), "updateAccountSettings", [json(settings), accountId]);
    if (result.rowCount === 0) throw new Error(`updateSettings: no account ${accountId}.`);
  }

  async insertMerge(accountId: string, merge: NewMerge): Promise<void> {
    const data: MergeData = {
      eventSeqAtMerge: merge.eventSeqAtMerge,
      target: merge.target,
      source: merge.source,
      movedEventSeqs: merge.movedEventSeqs,
      droppedEvents: merge.droppedEvents,
    };
    await run(this.forWrite(accountId), "insertMerge", [
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
    await run(this.forWrite(accountId), "markMergeUndone", [at, accountId, mergeId]);
  }

  async appendJournal(accountId: string, mergeId: string, record: AnyRecord): Promise<void> {
    await run(this.forWrite(accountId), "appendJournal", [accountId, mergeId, json(record)]);
  }

  async listJournal(accountId: string, mergeId: string): Promise<AnyRecord[]> {
    const found = await rows<{ record: AnyRecord }>(this.db(accountId), "listJournal", [accountId, mergeId]);
    return found.map((r) => r.record);
  }

  async deleteMergesTouching(accountId: string, profileId: string): Promise<void> {
    const db = this.forWrite(accountId);
    await run(db, "deleteJournalsTouching", [accountId, profileId]);
    await run(db, "deleteMergesTouching", [accountId, profileId]);
  }

  async deleteProfileData(accountId: string, profileId: string): Promise<DeletedCounts> {
    const db = this.forEvents(accountId, WRITE_EVENTS);
    // The profile's handles go with it: what prefetch knew of them is read again if asked.
    this.known.devices.clear();
    this.known.identities.clear();
    this.known.profiles.delete(profileId);
    this.known.statuses.delete(profileId);
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
    await this.onClient((client) => segmentIndex.deleted(this, client, accountId, profileId));
    return counts;
  }

  async redactImportData(accountId: string, profileId: string, handles: readonly ImportHandle[]): Promise<void> {
    this.check(accountId);
    await this.onClient((client) => redactImportData(client, accountId, profileId, handles));
  }

  // -------------------------------------------------------------------------------------------------------------
  // Savepoints

  async savepoint<T>(fn: () => Promise<T>): Promise<T> {
    this.check(this.accountId);
    this.refuseIfBroken();
    // Open savepoints form a stack, so naming each by its depth keeps names unique.
    const depth = this.frames.length;
    const frame: Frame = {
      eventsAt: this.pending.length,
      profilesAt: this.profileWrites.length,
      insertsAt: this.inserts.length,
      opened: false,
      changed: [],
      claims: [],
      handlesExclusive: this.handles.exclusive,
    };
    this.frames.push(frame);
    try {
      const result = await fn();
      this.leave(depth);
      if (frame.opened) await this.send({ text: `RELEASE SAVEPOINT record_${depth}` });
      // What it changed now belongs to the enclosing savepoint, whose rollback must drop it too.
      this.frames[depth - 1]?.changed.push(...frame.changed);
      this.frames[depth - 1]?.claims.push(...frame.claims);
      return result;
    } catch (error) {
      this.frames.length = depth;
      // What the savepoint added is taken back: its rows written behind, and what its writes taught the look-ups.
      this.pending.length = Math.min(this.pending.length, frame.eventsAt);
      this.eventsWritten = Math.min(this.eventsWritten, frame.eventsAt);
      this.profileWrites.length = Math.min(this.profileWrites.length, frame.profilesAt);
      this.profilesWritten = Math.min(this.profilesWritten, frame.profilesAt);
      this.inserts.length = Math.min(this.inserts.length, frame.insertsAt);
      this.insertsWritten = Math.min(this.insertsWritten, frame.insertsAt);
      this.forget(frame.changed);
      for (const id of frame.claims) this.known.claimed.delete(id);
      segmentIndex.rolledBack(this);
      // The account's handles, if taken inside it, go with it: held again when next needed (no harm if still held).
      if (frame.opened && !frame.handlesExclusive) this.handles.exclusive = false;
      if (frame.opened) {
        // Also what brings the transaction back from PostgreSQL's "aborted" state after a failed statement. If the
        // connection itself is gone there is nothing to undo here: the caller's rollback (or the server) ends it.
        try {
          await this.client.query(`ROLLBACK TO SAVEPOINT record_${depth}`);
          await this.client.query(`RELEASE SAVEPOINT record_${depth}`);
          if (this.broken && this.broken.depth >= depth) this.broken = null;
        } catch {
          // The original error says more than this one.
        }
      }
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

/** An event as the events table takes it; `seq` is filled in by the caller. Checks what PostgreSQL would refuse. */
function toPendingEvent(e: NewEvent): PendingEvent {
  if (!Number.isSafeInteger(e.ts)) throw new TypeError(`insertEvents: ts must be an integer, got ${e.ts}`);
  if (typeof e.name !== "string" || typeof e.id !== "string" || typeof e.profileId !== "string") {
    throw new TypeError("insertEvents: an event needs a string profileId, name and id");
  }
  const deviceId = e.deviceId ?? null;
  const platform = e.platform ?? null;
  if ((deviceId !== null && typeof deviceId !== "string") || (platform !== null && typeof platform !== "string")) {
    throw new TypeError("insertEvents: deviceId and platform must be strings or null");
  }
  const properties = JSON.stringify(e.properties);
  if (typeof properties !== "string") throw new TypeError("insertEvents: properties must be a JSON object");
  // The row travels inside a JSON document: text that jsonb refuses (NUL, unpaired surrogates) is refused here, once
  // for the whole row.
  const fields = jsonbSafe(
    `,"profile_id":${JSON.stringify(e.profileId)},"id":${JSON.stringify(e.id)},"name":${JSON.stringify(e.name)}` +
      `,"ts":${e.ts},"properties":${properties},"device_id":${JSON.stringify(deviceId)}` +
      `,"platform":${JSON.stringify(platform)}}`,
  );
  return { seq: 0, fields };
}

/** An event's row as an element of the `insertEventRows` document. */
function eventRow(e: PendingEvent): string {
  return `{"seq":${e.seq}${e.fields}`;
}

/** A profile's row as an element of the `updateProfiles` document; `state` is its JSON, already checked by json(). */
function profileRow(state: ProfileState, stateJson: string): string {
  const columns = [
    `"id":${JSON.stringify(state.id)}`,
    `"state":${stateJson}`,
    `"merged_into":${JSON.stringify(state.mergedInto)}`,
    `"orphan_of":${JSON.stringify(state.orphanOf)}`,
    `"control_group_excluded":${state.flags.controlGroupExcluded}`,
    `"created_at":${state.createdAt}`,
    `"updated_at":${state.updatedAt}`,
  ];
  return `{${columns.join(",")}}`;
}

function hasNul(...texts: string[]): boolean {
  return texts.some((t) => t.includes("\u0000"));
}

/** Refuses, as PostgreSQL would (22021), text parameters holding U+0000, before they reach it. */
function refuseNul(values: readonly unknown[] | undefined): void {
  if (values === undefined) return;
  for (const value of values) {
    if (typeof value === "string") {
      if (value.includes("\u0000")) {
        throw new PortraitError("INVALID_VALUE", "text must not contain the character U+0000 (NUL)");
      }
    } else if (Array.isArray(value)) {
      refuseNul(value);
    }
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
  /** Store.concurrentWriters: ingest groups of one account that run side by side (each holds one connection). */
  readonly concurrentWriters: number;
  /** The devices this process remembers with their owners' revisions (DeviceOwners). */
  readonly deviceOwners = new DeviceOwners();
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly pool: pg.Pool,
    concurrentWriters: number,
  ) {
    this.reader = new PooledReader(pool);
    this.imports = new PostgresImports(pool);
    this.segments = new PostgresSegments(pool);
    this.concurrentWriters = concurrentWriters;
  }

  /**
   * A pool of `max` connections (default 10) to the database at `url`; fails now, not at the first request, when the
   * database cannot be reached. Run `migrate()` before use. `concurrentWriters` (default CONCURRENT_WRITERS, at most
   * half the pool so that reads always find a connection) is Store.concurrentWriters.
   */
  static async connect(url: string, opts: { max?: number; concurrentWriters?: number } = {}): Promise<PostgresStore> {
    const max = opts.max ?? 10;
    const writers = opts.concurrentWriters ?? CONCURRENT_WRITERS;
    if (!Number.isInteger(writers) || writers < 1) {
      throw new RangeError(`concurrentWriters must be an integer ≥ 1, got ${writers}`);
    }
    const pool = new pg.Pool({
      connectionString: url,
      max,
      types: TYPES,
      connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    });
    // An idle connection that the server closes emits an error; the pool drops it and opens a new one when needed.
    pool.on("error", () => undefined);
    // So does one in use (the server restarted, an administrator ended it): the pool listens only while a connection
    // is idle, and an error event nobody listens to would end the process. The statement in flight fails with the
    // same error, and the pool drops the connection when it is given back.
    pool.on("connect", (client) => client.on("error", () => undefined));
    try {
      await pool.query("SELECT 1");
    } catch (error) {
      await pool.end();
      throw error;
    }
    return new PostgresStore(pool, Math.max(1, Math.min(writers, Math.floor(max / 2))));
  }

  connections(): { open: number; idle: number; waiting: number; max: number } {
    const p = this.pool;
    return { open: p.totalCount, idle: p.idleCount, waiting: p.waitingCount, max: p.options.max ?? 10 };
  }

  settingsWarnings(): Promise<string[]> {
    return serverSettingsWarnings(this.pool);
  }

  async migrate(): Promise<void> {
    await migrate(this.pool);
    await this.segments.backfill();
  }

  /**
   * A connection of its own that LISTENs for key revocations and settings changes (announced by revokeApiKey and
   * updateSettings when they commit). A lost connection is opened again, every second until it is back; what was
   * announced meanwhile was missed, so the listener then hears `{kind: "all"}` and forgets everything it cached.
   */
  async watchAccounts(listener: (change: AccountChange) => void): Promise<() => Promise<void>> {
    let listening: pg.Client | null = null;
    let stopped = false;
    let retry: NodeJS.Timeout | undefined;
    const open = async (): Promise<void> => {
      const client = new pg.Client({
        connectionString: this.pool.options.connectionString,
        application_name: "portrait-listen",
        connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
      });
      client.on("error", () => undefined);
      client.on("notification", (message) => {
        if (message.channel !== ACCOUNT_CHANNEL || message.payload === undefined) return;
        listener(JSON.parse(message.payload) as AccountChange);
      });
      client.on("end", () => {
        if (listening !== client || stopped) return;
        listening = null;
        reopen();
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${ACCOUNT_CHANNEL}`);
      } catch (error) {
        await client.end().catch(() => undefined);
        throw error;
      }
      listening = client;
    };
    const reopen = (): void => {
      retry = setTimeout(() => {
        open().then(
          () => (stopped ? listening?.end() : listener({ kind: "all" })),
          () => stopped || reopen(),
        );
      }, 1000);
      retry.unref();
    };
    await open();
    return async () => {
      stopped = true;
      clearTimeout(retry);
      await listening?.end();
    };
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
    let handlesExclusive = false;
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.attempt(accountId, fn, handlesExclusive);
      if ("value" in outcome) return outcome.value;
      if (attempt >= MAX_ATTEMPTS || !isRetryable(outcome.error)) throw outcome.error;
      // A run that upgraded to the account's handles lock may have lost to another upgrader: the next run takes it
      // exclusively at its first hold, holding nothing shared that the winner could be waiting for (HandleLocks).
      if (outcome.upgraded) handlesExclusive = true;
      await backOff(attempt);
    }
  }

  async snapshot<T>(accountId: string, fn: (reader: SnapshotReader) => Promise<T>): Promise<T> {
    // The snapshot is taken by the first statement after BEGIN and kept by every later one. Nothing is locked.
    return inTransaction(this.pool, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", async (client) => {
      const reader = new PostgresSnapshot(client, accountId);
      try {
        return await fn(reader);
      } finally {
        reader.close();
      }
    });
  }

  /** One run of a write function in its own transaction: committed with its value, or rolled back with its error. */
  private async attempt<T>(
    accountId: string,
    fn: (tx: StoreTx) => Promise<T>,
    handlesExclusive: boolean,
  ): Promise<{ value: T } | { error: unknown; upgraded: boolean }> {
    const client = await this.pool.connect();
    const tx = new PostgresTx(client, accountId, this.deviceOwners, handlesExclusive);
    // A connection whose ROLLBACK failed is in an unknown state: it is closed rather than given back to the pool.
    let broken: Error | undefined;
    try {
      // Explicit, whatever default_transaction_isolation says: the locking above is designed for READ COMMITTED.
      await client.query("BEGIN ISOLATION LEVEL READ COMMITTED");
      const value = await fn(tx);
      await tx.finish();
      await client.query("COMMIT");
      tx.committed();
      return { value };
    } catch (error) {
      await client.query("ROLLBACK").catch((e: Error) => {
        broken = e;
      });
      // A statement that broke the transaction is the cause, whatever the function made of it (a deadlock stays one).
      return { error: tx.failure ?? error, upgraded: tx.handles.upgraded };
    } finally {
      tx.close();
      client.release(broken);
    }
  }
}
