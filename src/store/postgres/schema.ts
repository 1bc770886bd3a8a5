/**
 * The PostgreSQL schema as an ordered list of migrations. A migration is never edited once released: a change is a new
 * entry at the end. `migrate` applies the pending ones in one transaction (PostgreSQL DDL is transactional) under an
 * advisory lock, and records each in `schema_migrations`: several processes starting at once apply them once, one
 * after the other, and a crash half-way leaves the database at the previous version.
 *
 * The tables are SQLite's (see ../sqlite/schema.ts), typed for PostgreSQL and keyed for distribution (PRODUCT.md
 * Scaling out, docs/scaling.md):
 * - profile-owned tables (profiles, documents, charged_ids, events) are keyed (account_id, profile_id, …), so with
 *   Citus they can be distributed and co-located by profile id;
 * - account-wide unique handles (identities, devices, user_accounts, record_ids) are look-up tables keyed
 *   (account_id, kind/key, value) → profile_id, the only way a query gets from one profile to another.
 *
 * Conventions: times are epoch milliseconds (bigint); JSON is jsonb; every text column that is compared or sorted is
 * `COLLATE "C"`, so that orderings (ids, device ids, type paths) are byte order exactly as in SQLite, whatever locale
 * the database was created with, and its indexes serve `ORDER BY` and range conditions.
 */
import type pg from "pg";
import { EVENTS_BY_WEEK_SCHEMA, SEGMENT_KEYS_SCHEMA, SEGMENTS_SCHEMA } from "./postgres-segments.js";

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
        id         text COLLATE "C" PRIMARY KEY,
        name       text NOT NULL,
        settings   jsonb NOT NULL,
        created_at bigint NOT NULL
      );

      CREATE TABLE api_keys (
        id         text COLLATE "C" PRIMARY KEY,
        account_id text COLLATE "C" NOT NULL,
        kind       text NOT NULL,
        name       text NOT NULL,
        hash       text COLLATE "C" NOT NULL UNIQUE,
        prefix     text NOT NULL,
        created_at bigint NOT NULL,
        revoked_at bigint
      );
      CREATE INDEX api_keys_by_account ON api_keys (account_id);

      CREATE TABLE dashboard_users (
        username      text COLLATE "C" PRIMARY KEY,
        account_id    text COLLATE "C" NOT NULL,
        password_hash text NOT NULL
      );

      CREATE TABLE meta (
        key   text COLLATE "C" PRIMARY KEY,
        value text NOT NULL
      );

      -- A profile is one JSON document; the columns beside it mirror the fields that queries select on.
      CREATE TABLE profiles (
        account_id             text COLLATE "C" NOT NULL,
        id                     text COLLATE "C" NOT NULL,
        state                  jsonb NOT NULL,
        merged_into            text COLLATE "C",
        orphan_of              text COLLATE "C",
        control_group_excluded boolean NOT NULL DEFAULT false,
        created_at             bigint NOT NULL,
        updated_at             bigint NOT NULL,
        PRIMARY KEY (account_id, id)
      );
      CREATE INDEX profiles_by_orphan_of ON profiles (account_id, orphan_of, id) WHERE orphan_of IS NOT NULL;
      CREATE INDEX profiles_by_merged_into ON profiles (account_id, merged_into, id) WHERE merged_into IS NOT NULL;
      -- SEMANTICS §9: at most 20 excluded profiles per account, counted on every change of the flag.
      CREATE INDEX profiles_control_group_excluded ON profiles (account_id)
        WHERE control_group_excluded AND merged_into IS NULL;

      -- Account-wide unique handles → their profile (SEMANTICS §2: each value belongs to at most one profile).
      -- The primary key is what makes a claim race-free across processes: INSERT … ON CONFLICT DO NOTHING.
      CREATE TABLE identities (
        account_id text COLLATE "C" NOT NULL,
        key        text COLLATE "C" NOT NULL,
        value      text COLLATE "C" NOT NULL,
        profile_id text COLLATE "C" NOT NULL,
        PRIMARY KEY (account_id, key, value)
      );
      CREATE INDEX identities_by_profile ON identities (account_id, profile_id);

      CREATE TABLE devices (
        account_id text COLLATE "C" NOT NULL,
        device_id  text COLLATE "C" NOT NULL,
        profile_id text COLLATE "C" NOT NULL,
        push_token text,
        platform   text,
        PRIMARY KEY (account_id, device_id)
      );
      CREATE INDEX devices_by_profile ON devices (account_id, profile_id, device_id);

      CREATE TABLE user_accounts (
        account_id      text COLLATE "C" NOT NULL,
        compartment_id  text COLLATE "C" NOT NULL,
        user_account_id text COLLATE "C" NOT NULL,
        profile_id      text COLLATE "C" NOT NULL,
        PRIMARY KEY (account_id, compartment_id, user_account_id)
      );
      CREATE INDEX user_accounts_by_profile ON user_accounts (account_id, profile_id, compartment_id, user_account_id);

      -- Profile-owned, so keyed by profile. A user account has one document account-wide (the Store contract, as on
      -- SQLite): the unique index keeps that on one server; distributed, user_accounts is the look-up for it instead.
      CREATE TABLE documents (
        account_id      text COLLATE "C" NOT NULL,
        profile_id      text COLLATE "C" NOT NULL,
        compartment_id  text COLLATE "C" NOT NULL,
        user_account_id text COLLATE "C" NOT NULL,
        body            jsonb NOT NULL,
        created_at      bigint NOT NULL,
        updated_at      bigint NOT NULL,
        PRIMARY KEY (account_id, profile_id, compartment_id, user_account_id)
      );
      CREATE UNIQUE INDEX documents_by_user_account ON documents (account_id, compartment_id, user_account_id);

      -- SEMANTICS §11 idempotency: (account, record id) seen once.
      CREATE TABLE record_ids (
        account_id text COLLATE "C" NOT NULL,
        record_id  text COLLATE "C" NOT NULL,
        created_at bigint NOT NULL,
        PRIMARY KEY (account_id, record_id)
      );

      -- SEMANTICS §3: a repeated Charged ID on the same profile is stored once.
      CREATE TABLE charged_ids (
        account_id text COLLATE "C" NOT NULL,
        profile_id text COLLATE "C" NOT NULL,
        charged_id text COLLATE "C" NOT NULL,
        PRIMARY KEY (account_id, profile_id, charged_id)
      );

      -- seq comes from one sequence, so it is never reused, even after the newest events are deleted (merge
      -- bookkeeping relies on it). CACHE 1 (the default, kept on purpose): with a per-connection cache a seq handed
      -- out later could be lower than one handed out earlier, and "events above eventSeqAtMerge came after" would break.
      -- The primary key is the timeline order (a backward scan reads newest first), so the hottest table carries one
      -- index fewer; seq alone is unique all the same.
      CREATE TABLE events (
        seq        bigserial NOT NULL,
        account_id text COLLATE "C" NOT NULL,
        profile_id text COLLATE "C" NOT NULL,
        id         text COLLATE "C" NOT NULL,
        name       text COLLATE "C" NOT NULL,
        ts         bigint NOT NULL,
        properties jsonb NOT NULL,
        device_id  text COLLATE "C",
        platform   text,
        PRIMARY KEY (account_id, profile_id, ts, seq)
      );
      -- Look-ups by seq (merge bookkeeping) and maxEventSeq (a backward index-only probe): no high-water row, which
      -- on PostgreSQL would be one hot row that every event-writing transaction of an account queues on.
      CREATE INDEX events_by_seq ON events (account_id, seq);

      -- SEMANTICS §4: the first write of a path fixes its type.
      CREATE TABLE type_registry (
        account_id text COLLATE "C" NOT NULL,
        scope      text COLLATE "C" NOT NULL,
        path       text COLLATE "C" NOT NULL,
        type       text NOT NULL,
        PRIMARY KEY (account_id, scope, path)
      );

      -- SEMANTICS §7: what a merge needs to be undone (snapshots, moved and dropped events) and the records since.
      -- seq is the insertion order (SQLite's rowid): it breaks ties of created_at.
      CREATE TABLE merges (
        account_id text COLLATE "C" NOT NULL,
        id         text COLLATE "C" NOT NULL,
        seq        bigint GENERATED ALWAYS AS IDENTITY,
        target_id  text COLLATE "C" NOT NULL,
        source_id  text COLLATE "C" NOT NULL,
        created_at bigint NOT NULL,
        undone_at  bigint,
        data       jsonb NOT NULL,
        PRIMARY KEY (account_id, id)
      );
      CREATE INDEX merges_by_target ON merges (account_id, target_id);
      CREATE INDEX merges_by_source ON merges (account_id, source_id);

      -- seq from a sequence rather than max(seq) + 1: two appends can never compute the same next number.
      CREATE TABLE merge_journal (
        account_id text COLLATE "C" NOT NULL,
        merge_id   text COLLATE "C" NOT NULL,
        seq        bigint GENERATED ALWAYS AS IDENTITY,
        record     jsonb NOT NULL,
        PRIMARY KEY (account_id, merge_id, seq)
      );
    `,
  },
  {
    // Bulk imports and the SFTP drop point (API.md Imports; SEMANTICS §11 Imports, SFTP); see ../sqlite/schema.ts.
    version: 2,
    sql: `
      CREATE TABLE imports (
        account_id   text COLLATE "C" NOT NULL,
        id           text COLLATE "C" NOT NULL,
        seq          bigint GENERATED ALWAYS AS IDENTITY,
        kind         text NOT NULL,
        format       text NOT NULL,
        status       text NOT NULL,
        source       text NOT NULL,
        file_name    text,
        file_path    text NOT NULL,
        sha256       text NOT NULL,
        bytes        bigint NOT NULL,
        options      jsonb NOT NULL,
        header       jsonb,
        rows         bigint NOT NULL,
        processed    bigint NOT NULL,
        failed       bigint NOT NULL,
        bytes_read   bigint NOT NULL,
        last_row     bigint NOT NULL,
        error        text,
        created_at   bigint NOT NULL,
        started_at   bigint,
        finished_at  bigint,
        claimed_by   text,
        heartbeat_at bigint,
        PRIMARY KEY (account_id, id)
      );
      CREATE INDEX imports_unfinished ON imports (created_at, seq) WHERE status IN ('queued', 'running');

      CREATE TABLE import_failures (
        account_id  text COLLATE "C" NOT NULL,
        import_id   text COLLATE "C" NOT NULL,
        row_number  bigint NOT NULL,
        data        jsonb,
        description text NOT NULL,
        PRIMARY KEY (account_id, import_id, row_number)
      );
      CREATE TABLE import_failure_handles (
        account_id text COLLATE "C" NOT NULL,
        kind       text COLLATE "C" NOT NULL,
        value      text COLLATE "C" NOT NULL,
        import_id  text COLLATE "C" NOT NULL,
        row_number bigint NOT NULL,
        PRIMARY KEY (account_id, kind, value, import_id, row_number)
      );

      CREATE TABLE sftp_keys (
        account_id  text COLLATE "C" NOT NULL,
        id          text COLLATE "C" NOT NULL,
        name        text NOT NULL,
        algorithm   text NOT NULL,
        public_key  text NOT NULL,
        fingerprint text NOT NULL,
        created_at  bigint NOT NULL,
        PRIMARY KEY (account_id, id)
      );

      CREATE TABLE email_hashes (
        account_id text COLLATE "C" NOT NULL,
        hash       text COLLATE "C" NOT NULL,
        profile_id text COLLATE "C" NOT NULL,
        PRIMARY KEY (account_id, hash)
      );
      CREATE INDEX email_hashes_by_profile ON email_hashes (account_id, profile_id);
    `,
  },
  // Segments (SEMANTICS §6): the property index, the events-by-name index, saved segments (postgres-segments.ts).
  { version: 3, sql: SEGMENTS_SCHEMA },
  // Behaviour conditions: the events-by-name index ordered by week, so that ingestion stays cheap.
  { version: 4, sql: EVENTS_BY_WEEK_SCHEMA },
  // Segments: the property index on stored prefix columns, so that condition sets come from the index alone.
  { version: 5, sql: SEGMENT_KEYS_SCHEMA },
  // A profile's activity (firstSeen, lastSeen, its event count) in columns of its own, which count-only events update
  // without rewriting the state document (jsonb_set rebuilds the whole document: ≈ 10 µs a row). The columns hold the
  // truth; every read puts them into the state, every write sets them from it (store/activity-columns.ts).
  {
    version: 6,
    sql: `
      ALTER TABLE profiles
        ADD COLUMN first_seen float8,
        ADD COLUMN last_seen float8,
        ADD COLUMN event_count float8 NOT NULL DEFAULT 0;
      UPDATE profiles SET
        first_seen = (state->>'firstSeen')::float8,
        last_seen = (state->>'lastSeen')::float8,
        event_count = coalesce((state#>>'{stats,events}')::float8, 0);
    `,
  },
  // Each moves whenever a registered type changes (string → multi) or the settings change: every API node reloads what
  // it cached of the account when one moved (StoreReader.revisions), instead of using it until it restarts.
  {
    version: 7,
    sql: `
      ALTER TABLE accounts
        ADD COLUMN types_revision bigint NOT NULL DEFAULT 0,
        ADD COLUMN settings_revision bigint NOT NULL DEFAULT 0;
      -- The account's settings lock, shared, then its revisions, in one round trip (PostgresTx.revisions). A function
      -- because the read must come after the lock: each statement of a VOLATILE function takes its own snapshot, so
      -- the read sees a settings change that the lock waited for, which a read in the locking statement would not.
      CREATE FUNCTION portrait_hold_account_revisions(account text, lock_name text)
        RETURNS TABLE (types bigint, settings bigint) LANGUAGE plpgsql VOLATILE AS $$
      BEGIN
        PERFORM pg_advisory_xact_lock_shared(hashtextextended(lock_name, 0));
        RETURN QUERY SELECT a.types_revision, a.settings_revision FROM accounts a WHERE a.id = account;
      END $$;
    `,
  },
  // Count-only events' activity (PostgresTx.addActivity), added at the rows' addresses: engine/activity.ts
  // applyActivityDelta in SQL for each fold of $2, on live profiles with no merge journal, and for a fold that
  // restamps a zone (tz not null), only while that zone is still props.Timezone from context. Returns the ids it
  // updated: a row that is no longer at its address, or fails the guard, is left out. A function for its planner
  // settings: each row must be reached by its address alone, a nested loop of TID look-ups, even where statistics say
  // profiles is tiny. The planner would otherwise take a hash join over a scan of the account, or a probe of the
  // primary key, and a list of addresses (ctid = ANY) is evaluated and sorted again for every row that another
  // writer updated meanwhile (EvalPlanQual): ≈ 0.3 ms each, half a second for a group on B1.
  {
    version: 8,
    sql: `
      CREATE FUNCTION portrait_add_activity(account text, deltas jsonb) RETURNS SETOF text
        LANGUAGE sql VOLATILE
        SET enable_seqscan = off SET enable_indexscan = off SET enable_bitmapscan = off
        SET enable_hashjoin = off SET enable_mergejoin = off
      AS $$
        WITH d AS MATERIALIZED (
          SELECT * FROM jsonb_to_recordset($2)
            AS d(id text, row tid, first float8, last float8, events float8, tz text, tz_ts numeric)
        )
        UPDATE profiles AS p
        SET first_seen = LEAST(COALESCE(p.first_seen, d.first), d.first),
          last_seen = GREATEST(COALESCE(p.last_seen, d.last), d.last),
          event_count = p.event_count + d.events,
          state = CASE WHEN d.tz IS NULL THEN p.state ELSE jsonb_set(p.state, '{props,Timezone,ts}',
            to_jsonb(GREATEST((p.state#>>'{props,Timezone,ts}')::numeric, d.tz_ts))) END
        FROM d
        WHERE p.ctid = d.row AND p.account_id = $1 AND p.id = d.id
          AND p.merged_into IS NULL AND p.state->>'journalMergeId' IS NULL AND (d.tz IS NULL OR
          (p.state#>>'{props,Timezone,v}' = d.tz AND coalesce((p.state->>'timezoneFromContext')::boolean, false)))
        RETURNING p.id
      $$;
    `,
  },
  // A profile's handles revision moves whenever one of its device rows changes or goes, in the same transaction, so
  // that a node may remember which profile a device belonged to and check only the owner's row (which count-only
  // events read anyway) instead of probing devices again (DeviceOwners). A trigger, so that no statement that changes
  // a device, now or later, can forget it; device changes are rare next to the events that read them.
  {
    version: 9,
    sql: `
      ALTER TABLE profiles ADD COLUMN handles_rev bigint NOT NULL DEFAULT 0;
      -- A device changed in place: one row per upsert, and only when something in it changed.
      CREATE FUNCTION portrait_device_changed() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE profiles SET handles_rev = handles_rev + 1 WHERE account_id = OLD.account_id AND id = OLD.profile_id;
        RETURN NULL;
      END $$;
      CREATE TRIGGER devices_changed AFTER UPDATE ON devices
        FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW) EXECUTE FUNCTION portrait_device_changed();
      -- Devices deleted, all of a profile's at once when it is deleted: each owner's revision moves once per statement.
      CREATE FUNCTION portrait_devices_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE profiles p SET handles_rev = p.handles_rev + 1
        FROM (SELECT DISTINCT account_id, profile_id FROM gone) o
        WHERE p.account_id = o.account_id AND p.id = o.profile_id;
        RETURN NULL;
      END $$;
      CREATE TRIGGER devices_deleted AFTER DELETE ON devices REFERENCING OLD TABLE AS gone
        FOR EACH STATEMENT EXECUTE FUNCTION portrait_devices_deleted();
    `,
  },
  // Segment sums and averages of event values add doubles as SQLite and the evaluator do, one after another, but a
  // total beyond the largest double is Infinity, as there, where PostgreSQL's own sum(float8) raises "value out of
  // range" and failed every such segment of the account. Two halves of a sum that could overflow cannot; doubling
  // their sum back is exact when the total fits.
  {
    version: 10,
    sql: `
      CREATE FUNCTION portrait_fadd(a float8, b float8) RETURNS float8
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT CASE
          WHEN abs(a) < 8.98846567431158e307 AND abs(b) < 8.98846567431158e307 THEN a + b
          WHEN abs(a / 2 + b / 2) >= 8.98846567431158e307 THEN sign(a / 2 + b / 2) * 'Infinity'::float8
          ELSE (a / 2 + b / 2) * 2
        END
      $$;
      CREATE AGGREGATE portrait_fsum(float8) (SFUNC = portrait_fadd, STYPE = float8, PARALLEL = SAFE);
    `,
  },
];

export const LATEST_VERSION = MIGRATIONS.reduce((latest, m) => Math.max(latest, m.version), 0);

/** The advisory lock that serialises migrations across processes: "portrait" in ASCII, as a bigint. */
export const MIGRATION_LOCK = "8101528128837405044";

/** Applies the pending migrations in one transaction; returns the versions applied (none when up to date). */
export async function migrate(pool: pg.Pool, now: () => number = Date.now): Promise<number[]> {
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    try {
      const done = await migrateInTransaction(client, now);
      await client.query("COMMIT");
      return done;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    }
  } finally {
    client.release();
  }
}

/**
 * `migrate` inside a transaction the caller opened and ends: the copy from SQLite (store/copy/) creates the schema in
 * the transaction that fills it, so that a copy that fails leaves the database as it found it, without even the tables.
 */
export async function migrateInTransaction(client: pg.ClientBase, now: () => number = Date.now): Promise<number[]> {
  // Held until the caller's COMMIT: a second process waits here, then finds the migrations applied.
  await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
  await client.query(`
    CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer PRIMARY KEY,
      applied_at bigint NOT NULL
    )
  `);
  const rows = await client.query<{ version: number }>("SELECT version FROM schema_migrations");
  const applied = new Set(rows.rows.map((r) => r.version));
  const newest = Math.max(0, ...applied);
  if (newest > LATEST_VERSION) {
    throw new Error(
      `The database is at schema version ${newest}, newer than this Portrait knows (${LATEST_VERSION}); upgrade Portrait.`,
    );
  }
  const done: number[] = [];
  for (const migration of MIGRATIONS) {
    if (applied.has(migration.version)) continue;
    await client.query(migration.sql);
    await client.query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", [
      migration.version,
      now(),
    ]);
    done.push(migration.version);
  }
  return done;
}
