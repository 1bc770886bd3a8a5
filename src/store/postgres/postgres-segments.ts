/**
 * Segments on PostgreSQL: the SegmentStore (segment-store.ts) and the property index it reads; the same design as
 * ../sqlite/sqlite-segments.ts (read its header), keyed (account_id, profile_id) like every profile-owned table here.
 *
 * Differences that come from PostgreSQL:
 * - a B-tree entry must stay under ~2.7 KB, and a path (up to 362 characters) plus a text value (up to 512) could
 *   exceed it, so the property index holds `path_key` = `left(path, 120)` and `str_key` = `left(str, 256)` (stored
 *   generated columns, migration 5); the compiler tests those (to use the index) and, only for a value at least that
 *   long, the full values (to be exact);
 * - queries run in a read-only transaction with `work_mem` raised and JIT off: sets inside `not`/`any` become hashed
 *   subplans, which need the memory, and a compile step of ~100 ms would dominate a segment count;
 * - the property index of a profile is rewritten in one statement (DELETE of the rows that went + INSERT … ON CONFLICT
 *   of the rows that are), under the row lock the profile's writer already holds.
 */
import type pg from "pg";
import type { Condition, Json } from "../../engine/segment/condition.js";
import type { EvaluateContext } from "../../engine/segment/evaluate.js";
import { byPath, type IndexValue, indexValues, ordsOf } from "../../engine/segment/index-values.js";
import type { ProfileState, PropertyEntry } from "../../engine/types.js";
import type {
  DeleteSegmentResult,
  InsertSegmentResult,
  SavedSegment,
  SegmentPage,
  SegmentStore,
} from "../segment-store.js";
import { ACTIVITY, type StateRow, stateOf } from "./activity-columns.js";
import { inTransaction } from "./in-transaction.js";
import { PostgresSegmentCompiler } from "./postgres-segment-compiler.js";

/**
 * Migration 4 (postgres/schema.ts): `events_by_name` ordered by week of ts, then seq, so that inserts land at the
 * ends of a few ranges (see ../sqlite/sqlite-segments.ts); profile_id and ts make it covering.
 */
export const EVENTS_BY_WEEK_SCHEMA = `
  DROP INDEX events_by_name;
  CREATE INDEX events_by_name ON events (account_id, name, (ts / 604800000), seq) INCLUDE (profile_id, ts);
`;

/**
 * Migration 5 (postgres/schema.ts): the indexed prefixes of a path and a text as stored columns, and the property
 * indexes rebuilt on them. PostgreSQL answers a query from an index alone only when every column it reads is in the
 * index as a column, never through an expression, so the indexes on `left(path, 120)` and `left(str, 256)` fetched
 * every matching row from the table (13,000 rows of one City: 13,000 heap reads); on `path_key` and `str_key` the
 * sets of a condition come from the index alone. Plain columns also carry statistics, and the extended statistics
 * tell PostgreSQL that a path decides its kind and a value its path, so it does not multiply their selectivities.
 * The ALTER rewrites the table once.
 */
export const SEGMENT_KEYS_SCHEMA = `
  ALTER TABLE segment_values
    ADD COLUMN path_key text COLLATE "C" GENERATED ALWAYS AS (left(path, 120)) STORED,
    ADD COLUMN str_key text COLLATE "C" GENERATED ALWAYS AS (left(str, 256)) STORED;
  DROP INDEX segment_values_by_str;
  DROP INDEX segment_values_by_num;
  CREATE INDEX segment_values_by_str ON segment_values (account_id, path_key, kind, str_key) INCLUDE (many, profile_id);
  CREATE INDEX segment_values_by_num ON segment_values (account_id, path_key, kind, num) INCLUDE (many, profile_id);
  CREATE STATISTICS segment_values_keys (dependencies, ndistinct) ON path_key, kind, str_key FROM segment_values;
  ANALYZE segment_values;
`;

/** Migration (postgres/schema.ts): the property index, the events-by-name index, saved segments, portrait_iso_ms. */
export const SEGMENTS_SCHEMA = `
  -- Behaviour conditions: a name's events in a time window, as profile ids (replaced in version 4, below).
  CREATE INDEX events_by_name ON events (account_id, name, ts) INCLUDE (profile_id);

  -- Profile properties as segment conditions read them (engine/segment/index-values.ts), one row per atom.
  CREATE TABLE segment_values (
    account_id text COLLATE "C" NOT NULL,
    profile_id text COLLATE "C" NOT NULL,
    path       text COLLATE "C" NOT NULL,
    ord        integer NOT NULL,
    kind       text COLLATE "C" NOT NULL,
    many       boolean NOT NULL,
    str        text COLLATE "C",
    num        double precision,
    PRIMARY KEY (account_id, profile_id, path, ord)
  );
  CREATE INDEX segment_values_by_str ON segment_values (account_id, left(path, 120), kind, left(str, 256))
    INCLUDE (many, profile_id);
  CREATE INDEX segment_values_by_num ON segment_values (account_id, left(path, 120), kind, num)
    INCLUDE (many, profile_id);

  -- Saved segments: the definition as sent (text, so it reads back exactly) and the segments each one names.
  CREATE TABLE segments (
    account_id text COLLATE "C" NOT NULL,
    id         text COLLATE "C" NOT NULL,
    name       text NOT NULL,
    where_json text NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (account_id, id)
  );
  CREATE INDEX segments_by_created ON segments (account_id, created_at, id);
  CREATE TABLE segment_refs (
    account_id text COLLATE "C" NOT NULL,
    ref_id     text COLLATE "C" NOT NULL,
    segment_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (account_id, ref_id, segment_id)
  );

  -- evaluate.ts storedIsoMs: the epoch ms of a text in Portrait's stored ISO form (YYYY-MM-DDTHH:MM:SS.sssZ), read the
  -- way JavaScript's Date.parse reads it (days 1-31 in any month and 24:00:00.000 roll over), else NULL.
  CREATE FUNCTION portrait_iso_ms(s text) RETURNS double precision
  LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN s ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z$' THEN (
      SELECT CASE
        WHEN mo BETWEEN 1 AND 12 AND d BETWEEN 1 AND 31 AND mi <= 59 AND se <= 59
          AND (h <= 23 OR (h = 24 AND mi = 0 AND se = 0 AND ms = 0))
        THEN (
          -- Days from 1970-01-01 to the first of the month (civil-from-days inverse, shifted 400 years to stay
          -- positive), then the day, hour, minute, second and millisecond.
          (((y2 / 400) * 146097 + (y2 % 400) * 365 + (y2 % 400) / 4 - (y2 % 400) / 100
            + (153 * ((mo + 9) % 12) + 2) / 5 - 719468 - 146097 + d - 1)::double precision) * 86400000
          + h * 3600000 + mi * 60000 + se * 1000 + ms
        )
      END
      FROM (SELECT substr(s, 1, 4)::int AS y, substr(s, 6, 2)::int AS mo, substr(s, 9, 2)::int AS d,
                   substr(s, 12, 2)::int AS h, substr(s, 15, 2)::int AS mi, substr(s, 18, 2)::int AS se,
                   substr(s, 21, 3)::int AS ms,
                   substr(s, 1, 4)::int - (CASE WHEN substr(s, 6, 2)::int <= 2 THEN 1 ELSE 0 END) + 400 AS y2) parts
    ) END
  $fn$;

  -- Profiles written before this migration get their rows when the store next migrates (PostgresSegments.backfill).
  INSERT INTO meta (key, value) SELECT 'segment_values.backfill', '0' WHERE EXISTS (SELECT 1 FROM profiles);
`;

const BACKFILL_KEY = "segment_values.backfill";
const STREAM_BATCH = 500;

/** Settings of a segment query's transaction (see the header). */
const QUERY_SETTINGS = "SELECT set_config('work_mem', '256MB', true), set_config('jit', 'off', true)";

type Queryable = pg.Pool | pg.PoolClient;

interface SegmentRow {
  id: string;
  name: string;
  where_json: string;
  created_at: number;
}

function toSegment(row: SegmentRow): SavedSegment {
  return { id: row.id, name: row.name, where: JSON.parse(row.where_json) as Json, createdAt: row.created_at };
}

// ---------------------------------------------------------------------------------------------------------------
// The property index, kept by the adapter's transactions

/** A new profile's rows. */
const INSERT_ROWS = `INSERT INTO segment_values (account_id, profile_id, path, ord, kind, many, str, num)
  SELECT $1, $2, path, ord, kind, many, str, num
  FROM unnest($3::text[], $4::int[], $5::text[], $6::bool[], $7::text[], $8::float8[]) AS r(path, ord, kind, many, str, num)`;

/** A profile's rows of some paths (all when $9 is NULL) replaced by these: the others deleted, these upserted. */
const WRITE_ROWS = `WITH incoming AS (
    SELECT * FROM unnest($3::text[], $4::int[], $5::text[], $6::bool[], $7::text[], $8::float8[])
      AS r(path, ord, kind, many, str, num)
  ), gone AS (
    DELETE FROM segment_values v
    WHERE v.account_id = $1 AND v.profile_id = $2 AND ($9::text[] IS NULL OR v.path = ANY($9::text[]))
      AND NOT EXISTS (SELECT 1 FROM incoming i WHERE i.path = v.path AND i.ord = v.ord)
  )
  INSERT INTO segment_values (account_id, profile_id, path, ord, kind, many, str, num)
  SELECT $1, $2, path, ord, kind, many, str, num FROM incoming
  ON CONFLICT (account_id, profile_id, path, ord) DO UPDATE
  SET kind = excluded.kind, many = excluded.many, str = excluded.str, num = excluded.num`;

/**
 * As WRITE_ROWS for several profiles at once: $2-$8 are the rows (with their profile), $9/$10 the (profile, path) pairs
 * they replace, a NULL path standing for all of that profile's paths.
 */
const WRITE_MANY_ROWS = `WITH incoming AS (
    SELECT * FROM unnest($2::text[], $3::text[], $4::int[], $5::text[], $6::bool[], $7::text[], $8::float8[])
      AS r(profile_id, path, ord, kind, many, str, num)
  ), replaced AS (
    SELECT * FROM unnest($9::text[], $10::text[]) AS s(profile_id, path)
  ), gone AS (
    DELETE FROM segment_values v USING replaced s
    WHERE v.account_id = $1 AND v.profile_id = s.profile_id AND (s.path IS NULL OR v.path = s.path)
      -- NOT IN (no column is NULL) rather than NOT EXISTS: a hashed subplan, not a scan of incoming per row.
      AND (v.profile_id, v.path, v.ord) NOT IN (SELECT profile_id, path, ord FROM incoming)
  )
  INSERT INTO segment_values (account_id, profile_id, path, ord, kind, many, str, num)
  SELECT $1, profile_id, path, ord, kind, many, str, num FROM incoming
  ON CONFLICT (account_id, profile_id, path, ord) DO UPDATE
  SET kind = excluded.kind, many = excluded.many, str = excluded.str, num = excluded.num`;

class PostgresSegmentIndex {
  /** Per transaction: profile id → the JSON of its properties as stored now (locked and read, or written, by it). */
  private readonly stored = new WeakMap<object, Map<string, string>>();

  private of(tx: object): Map<string, string> {
    let map = this.stored.get(tx);
    if (map === undefined) {
      map = new Map();
      this.stored.set(tx, map);
    }
    return map;
  }

  /** A profile row was read under its row lock in `tx`. */
  loaded(tx: object, state: ProfileState): void {
    this.of(tx).set(state.id, JSON.stringify(state.props));
  }

  /** A profile row was inserted or updated in `tx`: rewrites the rows of the paths whose values changed. */
  async written(tx: object, db: Queryable, accountId: string, state: ProfileState, inserted: boolean): Promise<void> {
    const json = JSON.stringify(state.props);
    const known = this.of(tx);
    const before = inserted ? undefined : known.get(state.id);
    if (before === json) return;
    let rows = indexValues(state.props);
    let paths: string[] | null = null;
    if (before !== undefined) {
      const old = byPath(indexValues(JSON.parse(before) as Record<string, PropertyEntry>));
      const now = byPath(rows);
      paths = [...new Set([...old.keys(), ...now.keys()])].filter(
        (p) => JSON.stringify(old.get(p) ?? null) !== JSON.stringify(now.get(p) ?? null),
      );
      rows = paths.flatMap((p) => now.get(p) ?? []);
    }
    if (inserted && rows.length === 0) {
      known.set(state.id, json);
      return;
    }
    if (paths === null || paths.length > 0) {
      const ord = ordsOf(rows);
      // Named statements: each connection plans them once.
      const values = [
        accountId,
        state.id,
        rows.map((r) => r.path),
        ord,
        rows.map((r) => r.kind),
        rows.map((r) => r.many),
        rows.map((r) => r.str),
        rows.map((r) => r.num),
      ];
      if (inserted) await db.query({ name: "segment_values_insert", text: INSERT_ROWS, values });
      else await db.query({ name: "segment_values_write", text: WRITE_ROWS, values: [...values, paths] });
    }
    known.set(state.id, json);
  }

  /**
   * Profile rows (each profile once) were updated in `tx`: as `written(…, false)` for each, in one statement for all
   * the profiles whose indexed values changed.
   */
  async writtenMany(tx: object, db: Queryable, accountId: string, states: readonly ProfileState[]): Promise<void> {
    const known = this.of(tx);
    const columns = new IndexRowColumns();
    const replaced = { profileIds: [] as string[], paths: [] as (string | null)[] };
    const settled: Array<[string, string]> = [];
    for (const state of states) {
      const json = JSON.stringify(state.props);
      const before = known.get(state.id);
      if (before === json) continue;
      settled.push([state.id, json]);
      let rows = indexValues(state.props);
      if (before === undefined) {
        replaced.profileIds.push(state.id);
        replaced.paths.push(null);
      } else {
        const old = byPath(indexValues(JSON.parse(before) as Record<string, PropertyEntry>));
        const now = byPath(rows);
        const paths = [...new Set([...old.keys(), ...now.keys()])].filter(
          (p) => JSON.stringify(old.get(p) ?? null) !== JSON.stringify(now.get(p) ?? null),
        );
        for (const path of paths) {
          replaced.profileIds.push(state.id);
          replaced.paths.push(path);
        }
        rows = paths.flatMap((p) => now.get(p) ?? []);
      }
      columns.add(state.id, rows);
    }
    if (replaced.profileIds.length > 0) {
      await db.query({
        name: "segment_values_write_many",
        text: WRITE_MANY_ROWS,
        values: [accountId, ...columns.arrays(), replaced.profileIds, replaced.paths],
      });
    }
    for (const [id, json] of settled) known.set(id, json);
  }

  async deleted(tx: object, db: Queryable, accountId: string, profileId: string): Promise<void> {
    await db.query({
      name: "segment_values_delete",
      text: "DELETE FROM segment_values WHERE account_id = $1 AND profile_id = $2",
      values: [accountId, profileId],
    });
    this.of(tx).delete(profileId);
  }

  rolledBack(tx: object): void {
    this.stored.delete(tx);
  }
}

/**
 * Index rows of many profiles as the column arrays the multi-row statements unnest
 * (profile id, path, ord, kind, many, str, num).
 */
export class IndexRowColumns {
  private readonly profileIds: string[] = [];
  private readonly paths: string[] = [];
  private readonly ords: number[] = [];
  private readonly kinds: string[] = [];
  private readonly many: boolean[] = [];
  private readonly strs: (string | null)[] = [];
  private readonly nums: (number | null)[] = [];

  get size(): number {
    return this.profileIds.length;
  }

  /** A profile's rows, as indexValues gives them (ords counted per path in order). */
  add(profileId: string, rows: readonly IndexValue[]): void {
    const ords = ordsOf(rows);
    rows.forEach((r, i) => {
      this.profileIds.push(profileId);
      this.paths.push(r.path);
      this.ords.push(ords[i] as number);
      this.kinds.push(r.kind);
      this.many.push(r.many);
      this.strs.push(r.str);
      this.nums.push(r.num);
    });
  }

  arrays(): unknown[] {
    return [this.profileIds, this.paths, this.ords, this.kinds, this.many, this.strs, this.nums];
  }
}

/** The property index maintenance (postgres-store.ts calls it from its profile writes). */
export const segmentIndex = new PostgresSegmentIndex();

// ---------------------------------------------------------------------------------------------------------------
// The SegmentStore

export class PostgresSegments implements SegmentStore {
  constructor(private readonly pool: pg.Pool) {}

  /** Runs `fn` on one connection in a read-only transaction set up for segment queries. */
  private reading<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", async (client) => {
      await client.query(QUERY_SETTINGS);
      return fn(client);
    });
  }

  private compile(accountId: string, condition: Condition, ctx: EvaluateContext) {
    return new PostgresSegmentCompiler(accountId, ctx).compile(condition);
  }

  async countSegment(accountId: string, condition: Condition, ctx: EvaluateContext): Promise<number> {
    const q = this.compile(accountId, condition, ctx);
    if (q.empty) return 0;
    return this.reading(async (client) => {
      const r = await client.query<{ n: number }>(`SELECT count(*) AS n FROM profiles p WHERE ${q.where}`, q.params);
      return Number(r.rows[0]?.n ?? 0);
    });
  }

  async querySegment(
    accountId: string,
    condition: Condition,
    ctx: EvaluateContext,
    page: { after: string | null; limit: number },
  ): Promise<SegmentPage> {
    const limit = checkLimit(page.limit);
    const q = this.compile(accountId, condition, ctx);
    if (q.empty) return { ids: [], next: null };
    const after = q.params.length + 1;
    const ids = await this.reading(async (client) => {
      const r = await client.query<{ id: string }>(
        `SELECT p.id FROM profiles p WHERE ${q.where} AND p.id > $${after}::text ORDER BY p.id LIMIT ${limit + 1}`,
        [...q.params, page.after ?? ""],
      );
      return r.rows.map((row) => row.id);
    });
    const more = ids.length > limit;
    if (more) ids.length = limit;
    return { ids, next: more ? (ids[ids.length - 1] ?? null) : null };
  }

  async *streamSegment(
    accountId: string,
    condition: Condition,
    ctx: EvaluateContext,
    opts: { batchSize?: number } = {},
  ): AsyncIterable<ProfileState[]> {
    const size = checkLimit(opts.batchSize ?? STREAM_BATCH);
    const q = this.compile(accountId, condition, ctx);
    if (q.empty) return;
    const client = await this.pool.connect();
    let broken: Error | undefined;
    let open = false;
    try {
      await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      open = true;
      await client.query(QUERY_SETTINGS);
      await client.query(
        `DECLARE segment_export NO SCROLL CURSOR FOR SELECT p.state, ${ACTIVITY} FROM profiles p WHERE ${q.where}
          ORDER BY p.id`,
        q.params,
      );
      for (;;) {
        const r = await client.query<StateRow>(`FETCH ${size} FROM segment_export`);
        if (r.rows.length === 0) break;
        yield r.rows.map((row) => stateOf(row));
      }
    } finally {
      // Also when the caller stops early: the cursor and its snapshot go with the transaction.
      if (open) {
        await client.query("ROLLBACK").catch((e: Error) => {
          broken = e;
        });
      }
      client.release(broken);
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Saved segments

  /** Runs `fn` in a read-write transaction of its own. */
  private writing<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, "BEGIN ISOLATION LEVEL READ COMMITTED", fn);
  }

  async insertSegment(accountId: string, segment: SavedSegment, refs: readonly string[]): Promise<InsertSegmentResult> {
    return this.writing(async (client) => {
      // FOR SHARE: a concurrent delete of a referenced segment waits for this transaction, then sees the reference.
      const found = await client.query<{ id: string }>(
        "SELECT id FROM segments WHERE account_id = $1 AND id = ANY($2::text[]) FOR SHARE",
        [accountId, [...refs]],
      );
      const present = new Set(found.rows.map((r) => r.id));
      const missing = refs.find((r) => !present.has(r));
      if (missing !== undefined) return { inserted: false, missing };
      await client.query(
        "INSERT INTO segments (account_id, id, name, where_json, created_at) VALUES ($1, $2, $3, $4, $5)",
        [accountId, segment.id, segment.name, JSON.stringify(segment.where), segment.createdAt],
      );
      if (refs.length > 0) {
        await client.query(
          `INSERT INTO segment_refs (account_id, ref_id, segment_id) SELECT $1, r, $3 FROM unnest($2::text[]) r
           ON CONFLICT DO NOTHING`,
          [accountId, [...refs], segment.id],
        );
      }
      return { inserted: true };
    });
  }

  async getSegment(accountId: string, id: string): Promise<SavedSegment | null> {
    const r = await this.pool.query<SegmentRow>(
      "SELECT id, name, where_json, created_at FROM segments WHERE account_id = $1 AND id = $2",
      [accountId, id],
    );
    const row = r.rows[0];
    return row === undefined ? null : toSegment(row);
  }

  async listSegments(
    accountId: string,
    page: { after: { createdAt: number; id: string } | null; limit: number },
  ): Promise<SavedSegment[]> {
    const after = page.after ?? { createdAt: Number.MIN_SAFE_INTEGER, id: "" };
    const r = await this.pool.query<SegmentRow>(
      `SELECT id, name, where_json, created_at FROM segments
       WHERE account_id = $1 AND (created_at, id) > ($2::bigint, $3::text)
       ORDER BY created_at, id LIMIT $4`,
      [accountId, after.createdAt, after.id, checkLimit(page.limit)],
    );
    return r.rows.map(toSegment);
  }

  async listSegmentsUsing(accountId: string, id: string): Promise<string[]> {
    const r = await this.pool.query<{ segment_id: string }>(
      "SELECT segment_id FROM segment_refs WHERE account_id = $1 AND ref_id = $2 ORDER BY segment_id",
      [accountId, id],
    );
    return r.rows.map((row) => row.segment_id);
  }

  async deleteSegment(accountId: string, id: string): Promise<DeleteSegmentResult> {
    return this.writing(async (client): Promise<DeleteSegmentResult> => {
      // The row lock first: an insert that names this segment (FOR SHARE) either committed before, and its reference
      // is seen by the next statement, or waits and then finds the segment gone.
      const locked = await client.query("SELECT 1 FROM segments WHERE account_id = $1 AND id = $2 FOR UPDATE", [
        accountId,
        id,
      ]);
      if (locked.rowCount === 0) return { deleted: false };
      const users = await client.query<{ segment_id: string }>(
        `SELECT segment_id FROM segment_refs WHERE account_id = $1 AND ref_id = $2 AND segment_id <> $2
         ORDER BY segment_id`,
        [accountId, id],
      );
      if (users.rows.length > 0) return { deleted: false, usedBy: users.rows.map((r) => r.segment_id) };
      await client.query("DELETE FROM segments WHERE account_id = $1 AND id = $2", [accountId, id]);
      await client.query("DELETE FROM segment_refs WHERE account_id = $1 AND segment_id = $2", [accountId, id]);
      return { deleted: true };
    });
  }

  // ---------------------------------------------------------------------------------------------------------------

  /**
   * Rows for profiles written before the property index existed (the migration leaves a marker when there were any):
   * rebuilt from their stored state, 1,000 profiles per transaction, each locked while its rows are written. A writer
   * in another process meanwhile keeps the rows of what it writes; a profile this reaches later is rebuilt anyway.
   */
  async backfill(): Promise<void> {
    const marker = await this.pool.query("SELECT 1 FROM meta WHERE key = $1", [BACKFILL_KEY]);
    if (marker.rowCount === 0) return;
    let after: { accountId: string; id: string } = { accountId: "", id: "" };
    for (;;) {
      const done = await this.writing(async (client) => {
        const r = await client.query<{ account_id: string; id: string; state: ProfileState }>(
          `SELECT account_id, id, state FROM profiles WHERE (account_id, id) > ($1, $2)
           ORDER BY account_id, id LIMIT 1000 FOR UPDATE`,
          [after.accountId, after.id],
        );
        const tx = {};
        for (const row of r.rows) await segmentIndex.written(tx, client, row.account_id, row.state, false);
        const last = r.rows[r.rows.length - 1];
        if (last) after = { accountId: last.account_id, id: last.id };
        return r.rows.length === 0;
      });
      if (done) break;
    }
    await this.pool.query("DELETE FROM meta WHERE key = $1", [BACKFILL_KEY]);
  }
}

function checkLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be a whole number ≥ 1, got ${limit}`);
  return limit;
}
