/**
 * The Store port: everything Portrait keeps, behind one interface with a SQLite and a PostgreSQL adapter.
 * The adapters hold all SQL; callers (pipeline, api, cli) never build queries.
 *
 * Concurrency contract (both adapters):
 * - `write()` runs its function in one transaction. Everything it reads through `lockProfile` stays locked until
 *   commit, so concurrent increments never lose an update (SQLite: one writer at a time; PostgreSQL: row locks).
 * - Account-wide unique handles (identity values, device ids, user accounts, record ids, Charged IDs) are claimed
 *   with insert-if-absent: the returned owner is the single winner however many writers race.
 * - `savepoint()` makes one record atomic inside a batch: a failed record leaves nothing behind.
 */
import type { ActivityDelta, ContextStatus } from "../engine/activity.js";
import type { AnyRecord } from "../engine/records.js";
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
} from "../engine/types.js";
import type { ImportHandle, ImportStore } from "./import-store.js";
import type { SegmentStore } from "./segment-store.js";

export type KeyKind = "secret" | "public";

export interface ApiKeyRow {
  id: string;
  accountId: string;
  kind: KeyKind;
  name: string;
  /** SHA-256 hex of the secret; the secret itself is never stored. */
  hash: string;
  /** First characters of the key, to recognise it in lists. */
  prefix: string;
  createdAt: number;
  revokedAt: number | null;
}

export interface DashboardUserRow {
  accountId: string;
  username: string;
  /** scrypt hash `salt:hash`, hex. */
  passwordHash: string;
}

/** `profile` for profile properties, `event:<name>` for an event's properties. */
export type TypeScope = "profile" | `event:${string}`;

export interface TypeRegistration {
  scope: TypeScope;
  path: string;
  type: ValueType;
}

/** What a merge must be able to put back (SEMANTICS §7 demerge). */
export interface ProfileSnapshot {
  state: ProfileState;
  devices: DeviceRow[];
  userAccounts: UserAccountRef[];
  documents: ProfileDocument[];
  chargedIds: string[];
  orphans: string[];
}

export interface MergeRow {
  id: string;
  targetId: string;
  sourceId: string;
  /** When the merge was asked for, by the clock of the process that ran it: shown, never used to order merges. */
  createdAt: number;
  /**
   * The order merges were written in, given by the store when the merge row is inserted (PostgreSQL: a sequence;
   * SQLite: the rowid). A merge inserts its row while it holds both profiles' locks, so of two merges touching one
   * profile the one that committed later has the higher seq, whatever the clocks of the processes that ran them say
   * and however long either waited before it began (SEMANTICS §7 "the latest merge").
   */
  seq: number;
  undoneAt: number | null;
  /** Highest event seq of the account when the merge happened: events above it were written after. */
  eventSeqAtMerge: number;
  target: ProfileSnapshot;
  source: ProfileSnapshot;
  /** Seqs of the source's events that moved to the target. */
  movedEventSeqs: number[];
  /** Seqs of the source's events dropped as repeated Charged IDs (kept aside so undo can restore them). */
  droppedEvents: StoredEvent[];
}

/** A merge as the pipeline writes it: the store gives it its seq. */
export type NewMerge = Omit<MergeRow, "seq">;

export interface EventPage {
  events: StoredEvent[];
  /** Opaque continuation, null at the end. */
  next: { ts: number; seq: number } | null;
}

/**
 * An event as a timeline page sends it: its properties stay the JSON text the store keeps. A page is read to be sent,
 * and parsing 100 property objects only to serialise them again was a fifth of a page's CPU.
 */
export interface TimelineEvent extends Omit<StoredEvent, "properties"> {
  /** A JSON object (its keys in the order the store keeps them; PostgreSQL's jsonb has its own order). */
  propertiesJson: string;
}

export interface TimelinePage {
  events: TimelineEvent[];
  next: { ts: number; seq: number } | null;
}

/** A profile as its page shows it: the stored state and the rows beside it that the page counts or lists. */
export interface ProfileCard {
  state: ProfileState;
  deviceIds: string[];
  userAccounts: UserAccountRef[];
  orphanCount: number;
}

/** How a profile card is looked up: by profile id, or by an identity value (Find People). */
export type ProfileLookup = { profileId: string } | { identity: { key: IdentityKey; value: string } };

/** Where a timeline page starts and how long it is. */
export interface PageOptions {
  before?: { ts: number; seq: number } | null;
  limit: number;
}

export interface DeletedCounts {
  profiles: number;
  events: number;
  identities: number;
  devices: number;
}

/** Reads available both inside and outside a transaction. */
export interface StoreReader {
  getProfile(accountId: string, profileId: string): Promise<ProfileState | null>;
  findProfileByIdentity(accountId: string, key: IdentityKey, value: string): Promise<string | null>;
  findDevice(accountId: string, deviceId: string): Promise<DeviceRow | null>;
  findProfileByUserAccount(accountId: string, ref: UserAccountRef): Promise<string | null>;
  listDevices(accountId: string, profileId: string): Promise<DeviceRow[]>;
  listUserAccounts(accountId: string, profileId: string): Promise<UserAccountRef[]>;
  /** Anonymous profiles left behind by login switches onto this profile. */
  listOrphans(accountId: string, profileId: string): Promise<string[]>;
  /** Merge tombstones pointing at this profile. */
  listTombstones(accountId: string, profileId: string): Promise<string[]>;
  /** Events of the given profiles, newest first by (ts, seq); `before` continues a previous page. */
  listEvents(accountId: string, profileIds: string[], opts: PageOptions): Promise<EventPage>;
  /**
   * The profile a look-up names, as stored (a merge tombstone comes back as it is: callers follow `mergedInto`), with
   * its device ids, user accounts and number of orphans; null when there is none. What a profile page reads, in one
   * round trip where the adapter can (store/profile-card.ts composes it from the reads above).
   */
  getProfileCard(accountId: string, lookup: ProfileLookup): Promise<ProfileCard | null>;
  /**
   * A page of a live profile's timeline: its own events and its orphans' (SEMANTICS §5), newest first, as
   * `listEvents` over the profile and its orphans. Null when `profileId` is no profile or a merge tombstone.
   */
  timelinePage(accountId: string, profileId: string, opts: PageOptions): Promise<TimelinePage | null>;
  getDocument(accountId: string, ref: UserAccountRef): Promise<ProfileDocument | null>;
  listDocuments(accountId: string, profileId: string): Promise<ProfileDocument[]>;
  listChargedIds(accountId: string, profileId: string): Promise<string[]>;
  listTypes(accountId: string): Promise<TypeRegistration[]>;
  /**
   * How many times the account's registry changed a registered type (string → multi) and its settings changed: a
   * process that cached either reloads it when its revision moved, so it never keeps checking records against what
   * another process changed. Inside a write transaction on PostgreSQL this also holds the account shared until
   * COMMIT, so that a settings change (`lockAccount`) waits for the transactions that read the old settings.
   */
  revisions(accountId: string): Promise<AccountRevisions>;
  getMerge(accountId: string, mergeId: string): Promise<MergeRow | null>;
  /** Merges whose source or target is this profile, the last written first (by seq, not by createdAt). */
  listMergesTouching(accountId: string, profileId: string): Promise<MergeRow[]>;
  /** Excluded profiles that use one of the account's slots (SEMANTICS §9): live ones that are no orphan. */
  countControlGroupExcluded(accountId: string): Promise<number>;
  /**
   * Live and orphan profile ids in id order after `afterId`: a whole-account scan. Settings changes no longer walk
   * every profile (StoreTx.listIdentityHolders, listStringPropertyHolders); nothing in the service calls it now.
   */
  listProfileIds(accountId: string, afterId: string | null, limit: number): Promise<string[]>;
  /** Highest event seq in the account (0 when none). */
  maxEventSeq(accountId: string): Promise<number>;
}

/** Reads that all see the store as it was at one moment (Store.snapshot). */
export interface SnapshotReader extends StoreReader {
  /** The records journalled into a merge since it happened, oldest first (as StoreTx.listJournal). */
  listJournal(accountId: string, mergeId: string): Promise<AnyRecord[]>;
}

/** A change to what processes cache of an account (Store.watchAccounts). */
/** What another process changed; `all`: changes may have been missed (a lost connection), forget every cached one. */
export type AccountChange =
  | { kind: "key"; accountId: string; keyId: string }
  | { kind: "settings"; accountId: string }
  | { kind: "all" };

/** See StoreReader.revisions. */
export interface AccountRevisions {
  types: number;
  settings: number;
}

/** The handles a batch of records names, for `StoreTx.prefetch`. */
export interface BatchHandles {
  deviceIds: string[];
  identities: Array<{ key: IdentityKey; value: string }>;
  profileIds: string[];
  /** Client record ids (SEMANTICS §11): an adapter may look up which are stored already. */
  recordIds?: string[];
  /**
   * The devices, identity values and profile ids among the above that only count-only events name
   * (engine/activity.ts). Such an event is added to its profile without reading it (`addActivity`), so an adapter need
   * not load or lock these profiles or the owners of these handles, only read their status (`peekProfile`).
   */
  countOnly?: {
    deviceIds: string[];
    identities: Array<{ key: IdentityKey; value: string }>;
    profileIds: string[];
    /**
     * False when none of those events carries context that the context rules read (`needsContextStatus`): their
     * profiles' context will not be asked for (`peekContext`), so an adapter may read their status alone.
     */
    context?: boolean;
  };
}

/** Where a profile stands in the merge bookkeeping, read without its state. */
export interface ProfileStatus {
  mergedInto: string | null;
  /** The undoable merge the profile is the target of: records applied to it are journalled there. */
  journalMergeId: string | null;
}

/** Folded count-only events for one profile (StoreTx.addActivity). */
export interface ProfileActivity extends ActivityDelta {
  profileId: string;
}

/** Writes, available only inside `Store.write`. */
export interface StoreTx extends StoreReader {
  /**
   * A hint, optional to implement and to call: the devices, identity values and profiles the records about to run in
   * this transaction name. An adapter may load them, and lock the profiles (the named ones and the owners of the named
   * handles, in id order), in a few round trips instead of one per record, and then answer this transaction's
   * `findDevice`, `findProfileByIdentity` and `lockProfile` from what it loaded. The answers must stay exactly what
   * the plain calls would return: the transaction's own writes (claims, device and identity changes, profile writes,
   * deletes, merges) and savepoint rollbacks keep that cache truthful or drop from it.
   */
  prefetch?(accountId: string, handles: BatchHandles): Promise<void>;

  /** Reads a profile and locks it until commit. */
  lockProfile(accountId: string, profileId: string): Promise<ProfileState | null>;
  insertProfile(accountId: string, state: ProfileState): Promise<void>;
  updateProfile(accountId: string, state: ProfileState): Promise<void>;
  /** A profile's status without reading its state or locking it; null when the account has no such profile. */
  peekProfile(accountId: string, profileId: string): Promise<ProfileStatus | null>;
  /** What the context rules read of a profile (engine/activity.ts), without a lock; null when there is no such profile. */
  peekContext(accountId: string, profileId: string): Promise<ContextStatus | null>;
  /**
   * Adds folded count-only events to profiles this transaction did not load (engine/activity.ts, applyActivityDelta),
   * in the store, without reading them into the caller. Each must still be a live profile with no open merge journal,
   * as `peekProfile` said, and one whose fold restamps a zone must still have that zone from context: SQLite has one writer, so that holds; on PostgreSQL another transaction may have merged or
   * deleted one since, and then this throws a serialization failure, which `write()` answers by running the
   * transaction again. The pipeline calls it when it flushes its working set: before COMMIT, and inside a record
   * before a step that reads profile rows (a merge), where the record's savepoint undoes it with the rest.
   */
  addActivity(accountId: string, deltas: readonly ProfileActivity[]): Promise<void>;

  /** Inserts the identity row if the value is free; returns the owner afterwards (this profile or the earlier one). */
  claimIdentity(accountId: string, key: IdentityKey, value: string, profileId: string): Promise<string>;
  /** Removes the identity row if this profile owns it. */
  releaseIdentity(accountId: string, key: IdentityKey, value: string, profileId: string): Promise<void>;
  /** Removes every identity row of one key (an identity key dropped from the settings). */
  releaseIdentityKey(accountId: string, key: IdentityKey): Promise<void>;

  // The profiles an identity settings change may change (pipeline/settings.ts), found through indexes instead of a
  // walk over every profile: up to `limit` profile ids after `afterId` (null: from the start), in id order, so that a
  // caller pages with the last id it got.
  /**
   * Profiles named by more than `moreThan` identity rows of `key` (a lowered limit: more than the new limit; a
   * removed key: 0, any row), from the identity index, whatever the profile is (orphan, tombstone).
   */
  listIdentityHolders(
    accountId: string,
    key: IdentityKey,
    moreThan: number,
    afterId: string | null,
    limit: number,
  ): Promise<string[]>;
  /**
   * Live profiles (neither orphans nor merge tombstones) whose top-level property `key` holds one string (an added
   * identity key's back-fill), from the segment property index, which every profile write keeps exact.
   */
  listStringPropertyHolders(accountId: string, key: string, afterId: string | null, limit: number): Promise<string[]>;

  /** Inserts the device if it is unknown; returns its current profile (this one or the earlier claimant's). */
  claimDevice(accountId: string, device: DeviceRow): Promise<string>;
  /** Creates or repoints a device (a device has exactly one current profile). */
  upsertDevice(accountId: string, device: DeviceRow): Promise<void>;
  deleteDevice(accountId: string, deviceId: string): Promise<void>;

  claimUserAccount(accountId: string, ref: UserAccountRef, profileId: string): Promise<string>;
  releaseUserAccount(accountId: string, ref: UserAccountRef): Promise<void>;
  putDocument(accountId: string, doc: ProfileDocument): Promise<void>;
  deleteDocument(accountId: string, ref: UserAccountRef): Promise<boolean>;

  /** True the first time an account sees this record id (idempotency); false for a repeat. */
  claimRecordId(accountId: string, recordId: string, at: number): Promise<boolean>;
  /** True the first time this profile sees this Charged ID. */
  claimChargedId(accountId: string, profileId: string, chargedId: string): Promise<boolean>;
  releaseChargedIds(accountId: string, profileId: string): Promise<void>;

  /** Assigns each event its seq, in order. */
  insertEvents(accountId: string, events: NewEvent[]): Promise<number[]>;
  listEventsBySeq(accountId: string, seqs: number[]): Promise<StoredEvent[]>;
  /** Seqs of every event of a profile, ascending. */
  listEventSeqs(accountId: string, profileId: string): Promise<number[]>;
  moveEvents(accountId: string, seqs: number[], toProfileId: string): Promise<void>;
  deleteEvents(accountId: string, seqs: number[]): Promise<void>;
  /** Restores events with their original seqs (demerge). */
  restoreEvents(accountId: string, events: StoredEvent[]): Promise<void>;

  /** Registers a path's type unless one is registered; returns the registered type. */
  registerType(accountId: string, scope: TypeScope, path: string, type: ValueType): Promise<ValueType>;
  /** The one allowed change (string → multi by `$add`); it moves the account's types revision. */
  changeType(accountId: string, scope: TypeScope, path: string, type: ValueType): Promise<void>;
  /**
   * Holds the account until COMMIT, before anything else of the transaction: every other write transaction of the
   * account waits for it, and it waits for those under way (PostgreSQL: the account's advisory lock, exclusive;
   * SQLite: writers run one at a time already). For settings changes, which must not race records checked against
   * the old settings.
   */
  lockAccount(accountId: string): Promise<void>;
  /**
   * Holds the account's control-group exclusions until COMMIT (SEMANTICS §9: the limit is counted, then written): a
   * transaction that may exclude a profile, or bring an excluded one back, takes this first, and one that comes
   * second waits for the first to commit, then counts what it wrote. Taken before any profile lock, so that nobody
   * waits for it while holding a lock its holder may need (docs/scaling.md, "Lock order"). PostgreSQL: an advisory
   * lock of its own; SQLite: writers run one at a time already.
   */
  lockControlGroupExclusions(accountId: string): Promise<void>;
  /**
   * The account as this transaction reads it (Portrait.transact reads its settings when their revision moved). On the
   * transaction's own connection: a read through the store's pool from inside a transaction waits for a free
   * connection, and when every connection is held by a transaction doing the same, none comes (PostgreSQL).
   */
  getAccount(accountId: string): Promise<Account | null>;
  /** Replaces the account's settings and moves its settings revision. */
  updateSettings(accountId: string, settings: AccountSettings): Promise<void>;

  insertMerge(accountId: string, merge: NewMerge): Promise<void>;
  markMergeUndone(accountId: string, mergeId: string, at: number): Promise<void>;
  appendJournal(accountId: string, mergeId: string, record: AnyRecord): Promise<void>;
  listJournal(accountId: string, mergeId: string): Promise<AnyRecord[]>;
  /** Deletes merges (and their journals) involving this profile: they can no longer be undone. */
  deleteMergesTouching(accountId: string, profileId: string): Promise<void>;

  /** Deletes one profile and everything it owns; counts what went. */
  deleteProfileData(accountId: string, profileId: string): Promise<DeletedCounts>;

  /**
   * SEMANTICS §10: a deleted profile's rows in stored import failure reports are redacted (matched by the profile id
   * and `handles`, the identity values, devices… it had), and its import look-ups (email hashes) go.
   */
  redactImportData(accountId: string, profileId: string, handles: readonly ImportHandle[]): Promise<void>;

  /** Runs `fn` so that if it throws, none of its writes remain. */
  savepoint<T>(fn: () => Promise<T>): Promise<T>;
}

export interface Store {
  readonly dialect: "sqlite" | "postgres";
  /**
   * How many `write()` transactions of one account the pipeline may run at once (its group commit, see
   * pipeline/group-commit.ts). Absent means 1: SQLite has one writer, so a second transaction would only wait. On
   * PostgreSQL several run side by side, kept correct by row locks and unique constraints (see the concurrency
   * contract above), a lost deadlock being run again by `write()`.
   */
  readonly concurrentWriters?: number;
  /** Applies pending migrations. */
  migrate(): Promise<void>;
  close(): Promise<void>;

  // Accounts, keys and operator data: small, rarely written.
  createAccount(account: Account): Promise<void>;
  getAccount(accountId: string): Promise<Account | null>;
  listAccounts(): Promise<Account[]>;
  insertApiKey(key: ApiKeyRow): Promise<void>;
  findApiKeyByHash(hash: string): Promise<ApiKeyRow | null>;
  listApiKeys(accountId: string): Promise<ApiKeyRow[]>;
  /** Marks the key revoked; false when the account has no such key. */
  revokeApiKey(accountId: string, keyId: string, at: number): Promise<boolean>;
  /**
   * Calls `listener` for every key revoked and every settings change committed from now on, by any process, so that
   * a process can drop what it cached of them (Accounts). PostgreSQL only (LISTEN/NOTIFY): where one process owns the
   * store there is nobody else to hear from. Resolves to a function that stops listening.
   */
  watchAccounts?(listener: (change: AccountChange) => void): Promise<() => Promise<void>>;
  /** A consistent copy of the whole store in a new file (`portrait backup`): SQLite only; PostgreSQL has pg_dump. */
  backupTo?(file: string): Promise<void>;
  /** The connection pool now (GET /metrics): PostgreSQL only, SQLite has no pool. */
  connections?(): { open: number; idle: number; waiting: number; max: number };
  /** What the operator should change in the database server's own settings, said once at start (PostgreSQL). */
  settingsWarnings?(): Promise<string[]>;
  insertDashboardUser(user: DashboardUserRow): Promise<void>;
  findDashboardUser(username: string): Promise<DashboardUserRow | null>;
  getMeta(key: string): Promise<string | null>;
  setMeta(key: string, value: string): Promise<void>;

  reader: StoreReader;
  /** Bulk imports and SFTP keys (import-store.ts). */
  readonly imports: ImportStore;
  /** Segment evaluation and saved segments (segment-store.ts). */
  readonly segments: SegmentStore;
  /**
   * One transaction, scoped to one account. `fn` may be run more than once, each run in a transaction of its own that
   * is rolled back but the last: PostgreSQL runs a lost deadlock again, SQLite a transaction whose record needed a
   * savepoint it ran without (sqlite/savepoint-policy.ts). So `fn` returns what it did rather than telling anyone else.
   */
  write<T>(accountId: string, fn: (tx: StoreTx) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` with reads of one account that all see the store as it was at one moment: none of them sees a write that
   * another misses, whatever commits meanwhile (a profile export, SEMANTICS §10 "as one JSON document"). It takes no
   * lock: writers go on. PostgreSQL: one REPEATABLE READ, READ ONLY transaction; SQLite: a read transaction on a
   * connection of its own (WAL keeps its snapshot while the writer commits).
   */
  snapshot<T>(accountId: string, fn: (reader: SnapshotReader) => Promise<T>): Promise<T>;
}
