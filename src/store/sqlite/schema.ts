/**
 * The SQLite schema as an ordered list of migrations. A migration is never edited once released: a change is a new
 * entry at the end. `migrate` applies the pending ones at start, all in one transaction, and records each in
 * `schema_migrations`, so a crash half-way leaves the database at the previous version.
 *
 * Secondary indexes end with the columns their list queries sort by, so that SQLite (which has no statistics on a
 * fresh database) picks them over the primary key for `WHERE account_id = ? AND profile_id = ? ORDER BY …`.
 *
 * Conventions: every profile-owned table is keyed by (account_id, profile_id, …) or by an account-wide unique handle
 * (account_id, kind, value) → profile_id, except events, which hang off the profile's integer key (see `events`);
 * time columns are epoch milliseconds (INTEGER); JSON is stored as text; tables are STRICT so a wrong type fails
 * loudly instead of being stored as something else. Tables looked up only by their key are WITHOUT ROWID (one
 * B-tree search instead of index + table).
 */
import type Database from "better-sqlite3";
import { EVENTS_BY_WEEK_SCHEMA, SEGMENT_PATH_IDS_SCHEMA, SEGMENTS_SCHEMA } from "./sqlite-segments.js";

export interface Migration {
  version: number;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      -- Operator data: accounts, their keys, dashboard logins, and process-wide settings (e.g. the SFTP host key).
      CREATE TABLE accounts (
        id         TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        settings   TEXT NOT NULL,
        created_at INTEGER NOT NULL
      ) STRICT;

      CREATE TABLE api_keys (
        id         TEXT PRIMARY KEY,
        account_id TEXT NOT NULL,
        kind       TEXT NOT NULL,
        name       TEXT NOT NULL,
        hash       TEXT NOT NULL UNIQUE,
        prefix     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
      ) STRICT;
      CREATE INDEX api_keys_by_account ON api_keys (account_id);

      CREATE TABLE dashboard_users (
        username      TEXT PRIMARY KEY,
        account_id    TEXT NOT NULL,
        password_hash TEXT NOT NULL
      ) STRICT;

      CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;

      -- A profile is one JSON document; the columns beside it mirror the fields that queries select on.
      -- \`pk\` (the rowid) is the adapter's own integer key: events refer to it, so their timeline index holds integers
      -- only. Ids stay the public key: (account_id, id) is unique and every id → pk look-up is made within the account,
      -- so a pk never leads into another account's rows.
      CREATE TABLE profiles (
        pk                     INTEGER PRIMARY KEY,
        account_id             TEXT NOT NULL,
        id                     TEXT NOT NULL,
        merged_into            TEXT,
        orphan_of              TEXT,
        control_group_excluded INTEGER NOT NULL DEFAULT 0,
        created_at             INTEGER NOT NULL,
        updated_at             INTEGER NOT NULL,
        state                  TEXT NOT NULL,
        UNIQUE (account_id, id)
      ) STRICT;
      CREATE INDEX profiles_by_orphan_of ON profiles (account_id, orphan_of, id) WHERE orphan_of IS NOT NULL;
      CREATE INDEX profiles_by_merged_into ON profiles (account_id, merged_into, id) WHERE merged_into IS NOT NULL;
      -- SEMANTICS §9: at most 20 excluded profiles per account, counted on every change of the flag.
      CREATE INDEX profiles_control_group_excluded ON profiles (account_id)
        WHERE control_group_excluded = 1 AND merged_into IS NULL;

      -- Account-wide unique handles → their profile (SEMANTICS §2: each value belongs to at most one profile).
      CREATE TABLE identities (
        account_id TEXT NOT NULL,
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        PRIMARY KEY (account_id, key, value)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX identities_by_profile ON identities (account_id, profile_id);

      CREATE TABLE devices (
        account_id TEXT NOT NULL,
        device_id  TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        push_token TEXT,
        platform   TEXT,
        PRIMARY KEY (account_id, device_id)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX devices_by_profile ON devices (account_id, profile_id, device_id);

      CREATE TABLE user_accounts (
        account_id      TEXT NOT NULL,
        compartment_id  TEXT NOT NULL,
        user_account_id TEXT NOT NULL,
        profile_id      TEXT NOT NULL,
        PRIMARY KEY (account_id, compartment_id, user_account_id)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX user_accounts_by_profile ON user_accounts (account_id, profile_id, compartment_id, user_account_id);

      CREATE TABLE documents (
        account_id      TEXT NOT NULL,
        compartment_id  TEXT NOT NULL,
        user_account_id TEXT NOT NULL,
        profile_id      TEXT NOT NULL,
        body            TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL,
        PRIMARY KEY (account_id, compartment_id, user_account_id)
      ) STRICT;
      CREATE INDEX documents_by_profile ON documents (account_id, profile_id, compartment_id, user_account_id);

      -- SEMANTICS §11 idempotency: (account, record id) seen once.
      CREATE TABLE record_ids (
        account_id TEXT NOT NULL,
        record_id  TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (account_id, record_id)
      ) STRICT, WITHOUT ROWID;

      -- SEMANTICS §3: a repeated Charged ID on the same profile is stored once.
      CREATE TABLE charged_ids (
        account_id TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        charged_id TEXT NOT NULL,
        PRIMARY KEY (account_id, profile_id, charged_id)
      ) STRICT, WITHOUT ROWID;

      -- AUTOINCREMENT: a seq is never reused, even after the newest events are deleted (merge bookkeeping relies on it).
      -- An event belongs to its account through its profile (profile_pk → profiles.pk); every query by seq joins the
      -- profile to check the account. The timeline index is all integers: events arrive in random profile order, and
      -- small fixed-size keys keep those inserts cheap (fewer pages, fewer splits, fewer dirty pages per commit).
      CREATE TABLE events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        profile_pk INTEGER NOT NULL,
        ts         INTEGER NOT NULL,
        name       TEXT NOT NULL,
        id         TEXT NOT NULL,
        properties TEXT NOT NULL,
        device_id  TEXT,
        platform   TEXT
      ) STRICT;
      CREATE INDEX events_timeline ON events (profile_pk, ts, seq);

      -- The highest seq ever given to an account's events: maxEventSeq without an extra index on the hot events table.
      CREATE TABLE event_seq_high_water (
        account_id TEXT PRIMARY KEY,
        seq        INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;

      -- SEMANTICS §4: the first write of a path fixes its type.
      CREATE TABLE type_registry (
        account_id TEXT NOT NULL,
        scope      TEXT NOT NULL,
        path       TEXT NOT NULL,
        type       TEXT NOT NULL,
        PRIMARY KEY (account_id, scope, path)
      ) STRICT, WITHOUT ROWID;

      -- SEMANTICS §7: what a merge needs to be undone (snapshots, moved and dropped events) and the records since.
      CREATE TABLE merges (
        account_id TEXT NOT NULL,
        id         TEXT NOT NULL,
        target_id  TEXT NOT NULL,
        source_id  TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        undone_at  INTEGER,
        data       TEXT NOT NULL,
        PRIMARY KEY (account_id, id)
      ) STRICT;
      CREATE INDEX merges_by_target ON merges (account_id, target_id);
      CREATE INDEX merges_by_source ON merges (account_id, source_id);

      CREATE TABLE merge_journal (
        account_id TEXT NOT NULL,
        merge_id   TEXT NOT NULL,
        seq        INTEGER NOT NULL,
        record     TEXT NOT NULL,
        PRIMARY KEY (account_id, merge_id, seq)
      ) STRICT;
    `,
  },
  {
    // Bulk imports and the SFTP drop point (API.md Imports; SEMANTICS §11 Imports, SFTP).
    version: 2,
    sql: `
      -- One row per import: its file (stored under the data directory), its checkpoint and counts, and the worker
      -- that runs it (a claim older than the heartbeat timeout is free again, so a killed process's import resumes).
      CREATE TABLE imports (
        account_id   TEXT NOT NULL,
        id           TEXT NOT NULL,
        kind         TEXT NOT NULL,
        format       TEXT NOT NULL,
        status       TEXT NOT NULL,
        source       TEXT NOT NULL,
        file_name    TEXT,
        file_path    TEXT NOT NULL,
        sha256       TEXT NOT NULL,
        bytes        INTEGER NOT NULL,
        options      TEXT NOT NULL,
        header       TEXT,
        rows         INTEGER NOT NULL,
        processed    INTEGER NOT NULL,
        failed       INTEGER NOT NULL,
        bytes_read   INTEGER NOT NULL,
        last_row     INTEGER NOT NULL,
        error        TEXT,
        created_at   INTEGER NOT NULL,
        started_at   INTEGER,
        finished_at  INTEGER,
        claimed_by   TEXT,
        heartbeat_at INTEGER,
        PRIMARY KEY (account_id, id)
      ) STRICT;
      CREATE INDEX imports_unfinished ON imports (created_at) WHERE status IN ('queued', 'running');

      -- The failure report: a refused row's original content (NULL once redacted) and why.
      CREATE TABLE import_failures (
        account_id  TEXT NOT NULL,
        import_id   TEXT NOT NULL,
        row_number  INTEGER NOT NULL,
        data        TEXT,
        description TEXT NOT NULL,
        PRIMARY KEY (account_id, import_id, row_number)
      ) STRICT, WITHOUT ROWID;
      -- SEMANTICS §10: the handles a refused row named, so that deleting that person redacts the row.
      CREATE TABLE import_failure_handles (
        account_id TEXT NOT NULL,
        kind       TEXT NOT NULL,
        value      TEXT NOT NULL,
        import_id  TEXT NOT NULL,
        row_number INTEGER NOT NULL,
        PRIMARY KEY (account_id, kind, value, import_id, row_number)
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE sftp_keys (
        account_id  TEXT NOT NULL,
        id          TEXT NOT NULL,
        name        TEXT NOT NULL,
        algorithm   TEXT NOT NULL,
        public_key  TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (account_id, id)
      ) STRICT;

      -- Document imports by email_hash (API.md Compartment documents): SHA-256 of each Email identity → its profile,
      -- rebuilt from the identities when an import first needs it.
      CREATE TABLE email_hashes (
        account_id TEXT NOT NULL,
        hash       TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        PRIMARY KEY (account_id, hash)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX email_hashes_by_profile ON email_hashes (account_id, profile_id);
    `,
  },
  // Segments (SEMANTICS §6): the property index, the events-by-name index, saved segments (sqlite-segments.ts).
  { version: 3, sql: SEGMENTS_SCHEMA },
  // Behaviour conditions: the events-by-name index ordered by week, so that ingestion stays cheap.
  { version: 4, sql: EVENTS_BY_WEEK_SCHEMA },
  // Segments: property index rows keyed by a path id, not the account and path as text (smaller, cheaper to write).
  { version: 5, sql: SEGMENT_PATH_IDS_SCHEMA },
  {
    version: 6,
    sql: `
      -- The merge journal a profile records into, beside merged_into: what decides whether a count-only event may be
      -- added to the profile without reading it (StoreTx.peekProfile, addActivity) is then read without its JSON.
      ALTER TABLE profiles ADD COLUMN journal_merge_id TEXT;
      UPDATE profiles SET journal_merge_id = json_extract(state, '$.journalMergeId')
        WHERE json_extract(state, '$.journalMergeId') IS NOT NULL;
    `,
  },
  {
    version: 7,
    sql: `
      -- A profile's activity (firstSeen, lastSeen, its event count) in columns of its own, which count-only events
      -- update without rewriting the JSON (json_set parses and prints the whole document). The columns hold the truth:
      -- every read puts them into the state, every write sets them from it (store/activity-columns.ts).
      ALTER TABLE profiles ADD COLUMN first_seen REAL;
      ALTER TABLE profiles ADD COLUMN last_seen REAL;
      ALTER TABLE profiles ADD COLUMN event_count INTEGER NOT NULL DEFAULT 0;
      UPDATE profiles SET
        first_seen = json_extract(state, '$.firstSeen'),
        last_seen = json_extract(state, '$.lastSeen'),
        event_count = coalesce(json_extract(state, '$.stats.events'), 0);
    `,
  },
  {
    version: 8,
    sql: `
      -- The activity columns move to a narrow table of their own, one row per profile by pk. A count-only event then
      -- rewrites a row of ≈ 30 bytes instead of the profile's whole row with its state document: at 100k profiles,
      -- whose rows outgrow the page cache, ≈ 3 against 21 µs of CPU per update, and far fewer dirty pages per commit.
      CREATE TABLE profile_activity (
        pk          INTEGER PRIMARY KEY,
        first_seen  REAL,
        last_seen   REAL,
        event_count INTEGER NOT NULL DEFAULT 0
      ) STRICT;
      INSERT INTO profile_activity (pk, first_seen, last_seen, event_count)
        SELECT pk, first_seen, last_seen, event_count FROM profiles;
      ALTER TABLE profiles DROP COLUMN first_seen;
      ALTER TABLE profiles DROP COLUMN last_seen;
      ALTER TABLE profiles DROP COLUMN event_count;
    `,
  },
  {
    version: 9,
    sql: `
      -- Each moves whenever a registered type changes (string → multi) or the settings change: a process sharing this
      -- file reloads what it cached of the account when one moved (StoreReader.revisions).
      ALTER TABLE accounts ADD COLUMN types_revision INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE accounts ADD COLUMN settings_revision INTEGER NOT NULL DEFAULT 0;
    `,
  },
];

export const LATEST_VERSION = MIGRATIONS.reduce((latest, m) => Math.max(latest, m.version), 0);

/** Applies the pending migrations in one transaction; returns the versions applied (none when up to date). */
export function migrate(db: Database.Database, now: () => number = Date.now): number[] {
  // IMMEDIATE: two processes opening the same file at once apply the migrations once, one after the other.
  db.exec("BEGIN IMMEDIATE");
  try {
    db.exec(`
      CREATE TABLE IF NOT EXISTS schema_migrations (
        version    INTEGER PRIMARY KEY,
        applied_at INTEGER NOT NULL
      ) STRICT
    `);
    const applied = new Set(db.prepare<[], number>("SELECT version FROM schema_migrations").pluck().all());
    const newest = Math.max(0, ...applied);
    if (newest > LATEST_VERSION) {
      throw new Error(
        `The database is at schema version ${newest}, newer than this Portrait knows (${LATEST_VERSION}); upgrade Portrait.`,
      );
    }
    const record = db.prepare<[number, number]>("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)");
    const done: number[] = [];
    for (const migration of MIGRATIONS) {
      if (applied.has(migration.version)) continue;
      db.exec(migration.sql);
      record.run(migration.version, now());
      done.push(migration.version);
    }
    db.exec("COMMIT");
    return done;
  } catch (error) {
    if (db.inTransaction) db.exec("ROLLBACK");
    throw error;
  }
}
