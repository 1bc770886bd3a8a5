/**
 * The SQLite schema as an ordered list of migrations. A migration is never edited once released: a change is a new
 * entry at the end. `migrate` applies the pending ones at start, all in one transaction, and records each in
 * `schema_migrations`, so a crash half-way leaves the database at the previous version.
 *
 * Secondary indexes end with the columns their list queries sort by, so that SQLite (which has no statistics on a
 * fresh database) picks them over the primary key for `WHERE account_id = ? AND profile_id = ? ORDER BY …`.
 *
 * Conventions: every profile-owned table is keyed by (account_id, profile_id, …) or by an account-wide unique handle
 * (account_id, kind, value) → profile_id; time columns are epoch milliseconds (INTEGER); JSON is stored as text;
 * tables are STRICT so a wrong type fails loudly instead of being stored as something else.
 */
import type Database from "better-sqlite3";

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
      CREATE TABLE profiles (
        account_id             TEXT NOT NULL,
        id                     TEXT NOT NULL,
        state                  TEXT NOT NULL,
        merged_into            TEXT,
        orphan_of              TEXT,
        control_group_excluded INTEGER NOT NULL DEFAULT 0,
        created_at             INTEGER NOT NULL,
        updated_at             INTEGER NOT NULL,
        PRIMARY KEY (account_id, id)
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
      ) STRICT;
      CREATE INDEX identities_by_profile ON identities (account_id, profile_id);

      CREATE TABLE devices (
        account_id TEXT NOT NULL,
        device_id  TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        push_token TEXT,
        platform   TEXT,
        PRIMARY KEY (account_id, device_id)
      ) STRICT;
      CREATE INDEX devices_by_profile ON devices (account_id, profile_id, device_id);

      CREATE TABLE user_accounts (
        account_id      TEXT NOT NULL,
        compartment_id  TEXT NOT NULL,
        user_account_id TEXT NOT NULL,
        profile_id      TEXT NOT NULL,
        PRIMARY KEY (account_id, compartment_id, user_account_id)
      ) STRICT;
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
      CREATE TABLE events (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        account_id TEXT NOT NULL,
        profile_id TEXT NOT NULL,
        id         TEXT NOT NULL,
        name       TEXT NOT NULL,
        ts         INTEGER NOT NULL,
        properties TEXT NOT NULL,
        device_id  TEXT,
        platform   TEXT
      ) STRICT;
      CREATE INDEX events_timeline ON events (account_id, profile_id, ts DESC, seq DESC);
      CREATE INDEX events_by_name ON events (account_id, name, ts);

      -- The highest seq ever given to an account's events: maxEventSeq without an extra index on the hot events table.
      CREATE TABLE event_seq_high_water (
        account_id TEXT PRIMARY KEY,
        seq        INTEGER NOT NULL
      ) STRICT;

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
