/**
 * Segments on SQLite: the SegmentStore (segment-store.ts) and the property index it reads.
 *
 * What a segment query reads, and how it stays exact (docs/semantics.md, Segments):
 * - `segment_values`: every profile's properties as the atoms a condition sees (engine/segment/index-values.ts),
 *   indexed by (path id, kind, value), where a path id stands for an (account, path) pair (`segment_paths`). It is rewritten beside the profile row, in the same transaction, by
 *   every insert and update of a profile whose properties changed, and deleted with it (`SqliteSegmentIndex`, called
 *   from sqlite-store.ts). "Changed" compares the properties' JSON with what this transaction read (or last wrote):
 *   a profile updated without being read, or after a savepoint rolled back, is always rewritten. Events, which only
 *   move activity fields, therefore cost nothing here.
 * - `events_by_name` (name, week, seq, profile_pk, ts): a name's events (in a window) as profile keys, from the index.
 *   It follows events wherever they go (merge, undo, delete) because it is an index of the events table; orphans'
 *   events stay keyed to the orphan, so they never count for the person (SEMANTICS §5).
 * - the profile row for system fields, flags and liveness.
 *
 * A query is one statement (sqlite-segment-compiler.ts), planned in the same read transaction (`plan`): it starts
 * from the profiles of the smallest set every member must be in (property values or events of the top-level `all`,
 * sized by a capped count of the index rows behind it, intersected with any other set of similar size), and tests
 * the rest of the condition on each of them, every leaf in the cheaper of its two forms; with no small enough set it
 * walks the account's profiles. Whatever the plan, the answer is the condition's: the starting keys are exactly the
 * profiles in those sets, and everything else is tested on each profile reached.
 */
import Database from "better-sqlite3";
import type { Condition, Json } from "../../engine/segment/condition.js";
import { type EvaluateContext, storedIsoMs } from "../../engine/segment/evaluate.js";
import { byPath, type IndexValue, indexValues, ordsOf } from "../../engine/segment/index-values.js";
import type { ProfileState, PropertyEntry } from "../../engine/types.js";
import { withActivity } from "../activity-columns.js";
import type {
  DeleteSegmentResult,
  InsertSegmentResult,
  SavedSegment,
  SegmentPage,
  SegmentStore,
} from "../segment-store.js";
import { ACTIVITY_OF_P, JOIN_ACTIVITY } from "./activity-join.js";
import {
  type CompileOptions,
  ISO_MS_FUNCTION,
  type LeafForm,
  SqliteSegmentCompiler,
} from "./sqlite-segment-compiler.js";

/**
 * Migration 4 (sqlite/schema.ts): `events_by_name` ordered by (name, week of ts, seq). Events arrive roughly in time
 * order, so each insert lands at the end of one of a few (name, week) ranges, not at a random place in the index
 * (≈ 45% of raw insert speed for events back-dated at random over 30 days, against ≈ 20% for (name, ts, …)).
 * profile_pk and ts make it covering.
 */
export const EVENTS_BY_WEEK_SCHEMA = `
  DROP INDEX events_by_name;
  CREATE INDEX events_by_name ON events (name, ts / 604800000, seq, profile_pk, ts);
`;

/** Migration (sqlite/schema.ts): the property index, the events-by-name index, saved segments. */
export const SEGMENTS_SCHEMA = `
  -- Behaviour conditions: a name's events in a time window, as profile keys (replaced in version 4, below).
  CREATE INDEX events_by_name ON events (name, ts, profile_pk);

  -- Profile properties as segment conditions read them (engine/segment/index-values.ts), one row per atom, kept with
  -- the profile by the adapter. The two indexes serve text and numeric tests; both lead with (account, path, kind).
  CREATE TABLE segment_values (
    profile_pk INTEGER NOT NULL,
    path       TEXT NOT NULL,
    ord        INTEGER NOT NULL,
    account_id TEXT NOT NULL,
    kind       TEXT NOT NULL,
    many       INTEGER NOT NULL,
    str        TEXT,
    num        REAL,
    PRIMARY KEY (profile_pk, path, ord)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX segment_values_by_str ON segment_values (account_id, path, kind, str, many);
  CREATE INDEX segment_values_by_num ON segment_values (account_id, path, kind, num, many);

  -- A segment that has no small set to start from walks the account's live profiles (never orphans or tombstones,
  -- SEMANTICS §5) in id order: from this covering index, without reading their JSON unless a condition needs it.
  CREATE INDEX profiles_live ON profiles (account_id, id, merged_into, orphan_of)
    WHERE merged_into IS NULL AND orphan_of IS NULL;

  -- Saved segments: the definition as sent (evaluated fresh on every read) and the segments each one names.
  CREATE TABLE segments (
    account_id TEXT NOT NULL,
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    where_json TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, id)
  ) STRICT;
  CREATE INDEX segments_by_created ON segments (account_id, created_at, id);
  CREATE TABLE segment_refs (
    account_id TEXT NOT NULL,
    ref_id     TEXT NOT NULL,
    segment_id TEXT NOT NULL,
    PRIMARY KEY (account_id, ref_id, segment_id)
  ) STRICT, WITHOUT ROWID;

  -- Profiles written before this migration get their rows when the store next opens (SqliteSegments.backfill).
  INSERT INTO meta (key, value) SELECT 'segment_values.backfill', '0' WHERE EXISTS (SELECT 1 FROM profiles);
`;

/**
 * Migration 5 (sqlite/schema.ts): property index rows keyed by a small integer per (account, path) instead of the
 * account id and path as text, which every row and both value indexes repeated. Measured on 200k profiles of 10
 * properties: 46 against 78 µs of CPU per profile to write its rows, and smaller indexes to read. `segment_paths` is
 * the dictionary; AUTOINCREMENT because an id must never come back for another path (a rolled-back id would).
 */
export const SEGMENT_PATH_IDS_SCHEMA = `
  CREATE TABLE segment_paths (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id TEXT NOT NULL,
    path       TEXT NOT NULL,
    UNIQUE (account_id, path)
  ) STRICT;
  INSERT INTO segment_paths (account_id, path) SELECT DISTINCT account_id, path FROM segment_values ORDER BY 1, 2;
  CREATE TABLE segment_values_by_path_id (
    profile_pk INTEGER NOT NULL,
    path_id    INTEGER NOT NULL,
    ord        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    many       INTEGER NOT NULL,
    str        TEXT,
    num        REAL,
    PRIMARY KEY (profile_pk, path_id, ord)
  ) STRICT, WITHOUT ROWID;
  INSERT INTO segment_values_by_path_id (profile_pk, path_id, ord, kind, many, str, num)
    SELECT v.profile_pk, d.id, v.ord, v.kind, v.many, v.str, v.num
    FROM segment_values v JOIN segment_paths d ON d.account_id = v.account_id AND d.path = v.path;
  DROP TABLE segment_values;
  ALTER TABLE segment_values_by_path_id RENAME TO segment_values;
  CREATE INDEX segment_values_by_str ON segment_values (path_id, kind, str, many);
  CREATE INDEX segment_values_by_num ON segment_values (path_id, kind, num, many);
`;

const BACKFILL_KEY = "segment_values.backfill";

/** Sets whose index rows exceed this are not worth starting from; the smallest one under it is used. */
const DRIVER_CAP = 100_000;
/** Up to this many starting keys, property leaves are tested per profile rather than as sets. */
const ROW_FORM_CAP = 20_000;
const LIVE = "p.account_id = @p0 AND p.merged_into IS NULL AND p.orphan_of IS NULL";
/** The walk over the account's live profiles (see profiles_live). */
const SCAN = "profiles p INDEXED BY profiles_live";
const ROW_FORMS: Omit<CompileOptions, "skip"> = { values: "row", events: () => "row" };

/**
 * Tests only: force the planner's choices (`driver` true: start from the smallest driver whatever its size; false:
 * never), and every leaf's form. Results must not change; the differential test runs every combination.
 */
export const sqlitePlanning: { force?: { driver: boolean; forms: LeafForm } } = {};
const STREAM_BATCH = 500;
/** The page cache of a segment stream's own connection, in KB. */
const STREAM_CACHE_KB = 2048;

interface SegmentRow {
  id: string;
  name: string;
  where_json: string;
  created_at: number;
}

function toSegment(row: SegmentRow): SavedSegment {
  return { id: row.id, name: row.name, where: JSON.parse(row.where_json) as Json, createdAt: row.created_at };
}

/** `storedIsoMs` as an SQL function, on every connection that runs segment SQL. */
function registerFunctions(db: Database.Database): void {
  db.function(ISO_MS_FUNCTION, { deterministic: true }, (x: unknown) =>
    typeof x === "string" ? (storedIsoMs(x) ?? null) : null,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The property index, kept by the adapter's transactions

const indexes = new WeakMap<Database.Database, SqliteSegmentIndex>();

/** The property index maintenance of the store on `db` (sqlite-store.ts calls it from its profile writes). */
export function segmentIndex(db: Database.Database): SqliteSegmentIndex {
  let index = indexes.get(db);
  if (index === undefined) {
    index = new SqliteSegmentIndex(db);
    indexes.set(db, index);
  }
  return index;
}

export class SqliteSegmentIndex {
  /** Per transaction: profile id → the JSON of its properties as stored now (read or written by it). */
  private readonly stored = new WeakMap<object, Map<string, string>>();
  /** Path ids of committed `segment_paths` rows, by account and path. */
  private readonly pathIds = new Map<string, number>();
  /** Per transaction: path ids it found or created, kept apart until it commits (a rollback may undo a creation). */
  private readonly pendingPathIds = new WeakMap<object, Map<string, number>>();
  private readonly sql;

  constructor(db: Database.Database) {
    this.sql = {
      deleteAll: db.prepare<[number]>("DELETE FROM segment_values WHERE profile_pk = ?"),
      deletePath: db.prepare<[number, number]>("DELETE FROM segment_values WHERE profile_pk = ? AND path_id = ?"),
      insert: db.prepare<[number, number, number, string, number, string | null, number | null]>(
        `INSERT INTO segment_values (profile_pk, path_id, ord, kind, many, str, num) VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ),
      findPath: db
        .prepare<[string, string], number>("SELECT id FROM segment_paths WHERE account_id = ? AND path = ?")
        .pluck(),
      insertPath: db.prepare<[string, string]>("INSERT INTO segment_paths (account_id, path) VALUES (?, ?)"),
    };
  }

  private of(tx: object): Map<string, string> {
    let map = this.stored.get(tx);
    if (map === undefined) {
      map = new Map();
      this.stored.set(tx, map);
    }
    return map;
  }

  /** The id of a path in `tx`, creating it when `create` (else undefined when the account never stored the path). */
  private pathId(tx: object, accountId: string, path: string, create: boolean): number | undefined {
    const key = `${accountId}\u0000${path}`;
    const known = this.pathIds.get(key) ?? this.pendingPathIds.get(tx)?.get(key);
    if (known !== undefined) return known;
    let id = this.sql.findPath.get(accountId, path);
    if (id === undefined) {
      if (!create) return undefined;
      id = Number(this.sql.insertPath.run(accountId, path).lastInsertRowid);
    }
    let pending = this.pendingPathIds.get(tx);
    if (pending === undefined) {
      pending = new Map();
      this.pendingPathIds.set(tx, pending);
    }
    pending.set(key, id);
    return id;
  }

  /** A profile row was read in `tx`: its stored rows match these properties. */
  loaded(tx: object, state: ProfileState): void {
    this.of(tx).set(state.id, JSON.stringify(state.props));
  }

  /** A profile row was inserted (`inserted`) or updated in `tx`: rewrites its rows if its properties changed. */
  written(tx: object, accountId: string, pk: number, state: ProfileState, inserted: boolean): void {
    const json = JSON.stringify(state.props);
    const known = this.of(tx);
    const before = inserted ? undefined : known.get(state.id);
    if (before === json) return;
    if (before === undefined) {
      if (!inserted) this.sql.deleteAll.run(pk);
      this.insert(tx, accountId, pk, indexValues(state.props));
    } else {
      // Only the paths whose rows differ are rewritten.
      const old = byPath(indexValues(JSON.parse(before) as Record<string, PropertyEntry>));
      const now = byPath(indexValues(state.props));
      const deletePath = (path: string) => {
        const id = this.pathId(tx, accountId, path, false);
        if (id !== undefined) this.sql.deletePath.run(pk, id);
      };
      for (const path of old.keys()) {
        if (!now.has(path)) deletePath(path);
      }
      for (const [path, rows] of now) {
        const was = old.get(path);
        if (was !== undefined && JSON.stringify(was) === JSON.stringify(rows)) continue;
        if (was !== undefined) deletePath(path);
        this.insert(tx, accountId, pk, rows);
      }
    }
    known.set(state.id, json);
  }

  /** A profile was deleted in `tx`. */
  deleted(tx: object, pk: number, profileId: string): void {
    this.sql.deleteAll.run(pk);
    this.of(tx).delete(profileId);
  }

  /** A savepoint of `tx` rolled back: what it knew of stored rows, and of paths it created, may no longer hold. */
  rolledBack(tx: object): void {
    this.stored.delete(tx);
    this.pendingPathIds.delete(tx);
  }

  /** `tx` committed: the path ids it found or created are now everyone's. */
  committed(tx: object): void {
    for (const [key, id] of this.pendingPathIds.get(tx) ?? []) this.pathIds.set(key, id);
    this.pendingPathIds.delete(tx);
  }

  private insert(tx: object, accountId: string, pk: number, rows: readonly IndexValue[]): void {
    const ords = ordsOf(rows);
    let path: string | undefined;
    let id = 0;
    rows.forEach((r, i) => {
      if (r.path !== path) {
        path = r.path;
        id = this.pathId(tx, accountId, r.path, true) as number;
      }
      this.sql.insert.run(pk, id, ords[i] as number, r.kind, r.many ? 1 : 0, r.str, r.num);
    });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The SegmentStore

interface Plan {
  from: string;
  where: string;
  params: Record<string, unknown>;
  /** The condition can hold for nobody. */
  empty: boolean;
}

export class SqliteSegments implements SegmentStore {
  private readonly read: Database.Database;
  private readonly sql;

  constructor(
    private readonly db: Database.Database,
    readDb: Database.Database | null,
    private readonly exclusive: <T>(fn: () => T) => Promise<T>,
  ) {
    this.read = readDb ?? db;
    registerFunctions(db);
    if (readDb) registerFunctions(readDb);
    const on = this.read;
    this.sql = {
      getSegment: on.prepare<[string, string], SegmentRow>(
        "SELECT id, name, where_json, created_at FROM segments WHERE account_id = ? AND id = ?",
      ),
      listSegments: on.prepare<[string, number, number, string, number], SegmentRow>(
        `SELECT id, name, where_json, created_at FROM segments
         WHERE account_id = ? AND (created_at > ? OR (created_at = ? AND id > ?))
         ORDER BY created_at, id LIMIT ?`,
      ),
      usedBy: on
        .prepare<[string, string], string>(
          "SELECT segment_id FROM segment_refs WHERE account_id = ? AND ref_id = ? ORDER BY segment_id",
        )
        .pluck(),
      // Writes, on the writer connection.
      exists: db.prepare<[string, string], number>("SELECT 1 FROM segments WHERE account_id = ? AND id = ?").pluck(),
      usedByForWrite: db
        .prepare<[string, string], string>(
          "SELECT segment_id FROM segment_refs WHERE account_id = ? AND ref_id = ? ORDER BY segment_id",
        )
        .pluck(),
      insert: db.prepare<[string, string, string, string, number]>(
        "INSERT INTO segments (account_id, id, name, where_json, created_at) VALUES (?, ?, ?, ?, ?)",
      ),
      insertRef: db.prepare<[string, string, string]>(
        "INSERT OR IGNORE INTO segment_refs (account_id, ref_id, segment_id) VALUES (?, ?, ?)",
      ),
      delete: db.prepare<[string, string]>("DELETE FROM segments WHERE account_id = ? AND id = ?"),
      deleteRefs: db.prepare<[string, string]>("DELETE FROM segment_refs WHERE account_id = ? AND segment_id = ?"),
    };
    this.backfill();
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Evaluation

  /**
   * The statement's FROM and WHERE: the account's live profiles, from the best starting set, passing the condition.
   * Runs queries (estimates, the starting keys), so it must run in the same read transaction as the statement it
   * plans: one snapshot for both.
   *
   * 1. Compile with set forms; count (capped) the index rows behind each driver (a set every member is in).
   * 2. None under DRIVER_CAP: walk the account's profiles, set forms (each set built once, probed per profile).
   * 3. Else the starting keys are the smallest driver, intersected with any other at most 4× its size; their
   *    conjuncts are then known to hold. With n keys, property leaves are tested per profile (primary key seeks)
   *    when n ≤ ROW_FORM_CAP, and a behaviour leaf per profile when building its set would read more than 30 index
   *    rows per key (its events by name and window, counted with that cap).
   */
  private plan(db: Database.Database, accountId: string, condition: Condition, ctx: EvaluateContext): Plan {
    const first = new SqliteSegmentCompiler(accountId, ctx).compile(condition);
    if (first.where === "0") return { from: "profiles p", where: "0", params: {}, empty: true };
    const rows = (sql: string, cap: number) =>
      db.prepare(`SELECT count(*) FROM (${sql} LIMIT ${cap})`).pluck().get(first.params) as number;
    const force = sqlitePlanning.force;
    // Counting stops where a set could no longer be used (over 4× the smallest so far, or DRIVER_CAP).
    let smallest = DRIVER_CAP;
    const sized = (force?.driver === false ? [] : first.drivers)
      .map((d) => {
        const n = rows(d.rows, Math.min(DRIVER_CAP, 4 * smallest + 1));
        smallest = Math.min(smallest, n);
        return { d, n };
      })
      .sort((a, b) => a.n - b.n);
    const best = sized[0];
    if (best === undefined || (best.n >= DRIVER_CAP && force?.driver !== true)) {
      if (force?.forms === "row") {
        const c = new SqliteSegmentCompiler(accountId, ctx, { ...ROW_FORMS, skip: new Set() }).compile(condition);
        return { from: SCAN, where: `${LIVE} AND (${c.where})`, params: c.params, empty: false };
      }
      return { from: SCAN, where: `${LIVE} AND (${first.where})`, params: first.params, empty: false };
    }
    const start = sized.filter((x, i) => i === 0 || x.n <= 4 * best.n).slice(0, 3);
    const keys = db
      .prepare(
        start.length === 1
          ? `SELECT DISTINCT profile_pk FROM (${best.d.select})`
          : start.map((x) => `SELECT profile_pk FROM (${x.d.select})`).join(" INTERSECT "),
      )
      .pluck()
      .all(first.params) as number[];
    if (keys.length === 0) return { from: "profiles p", where: "0", params: {}, empty: true };
    const n = keys.length;
    const eventForms = first.events.map((sql): LeafForm => {
      if (force) return force.forms;
      const cap = n * 30;
      return rows(sql, cap) >= cap ? "row" : "set";
    });
    const second = new SqliteSegmentCompiler(accountId, ctx, {
      values: force?.forms ?? (n <= ROW_FORM_CAP ? "row" : "set"),
      events: (leaf) => eventForms[leaf] ?? "set",
      skip: new Set(start.map((x) => x.d.conjunct)),
    }).compile(condition);
    return {
      from: "json_each(@driverKeys) d CROSS JOIN profiles p ON p.pk = d.value",
      where: `${LIVE} AND (${second.where})`,
      params: { ...second.params, driverKeys: JSON.stringify(keys) },
      empty: false,
    };
  }

  async countSegment(accountId: string, condition: Condition, ctx: EvaluateContext): Promise<number> {
    return this.read.transaction(() => {
      const plan = this.plan(this.read, accountId, condition, ctx);
      if (plan.empty) return 0;
      return this.read
        .prepare(`SELECT count(*) FROM ${plan.from} WHERE ${plan.where}`)
        .pluck()
        .get(plan.params) as number;
    })();
  }

  async querySegment(
    accountId: string,
    condition: Condition,
    ctx: EvaluateContext,
    page: { after: string | null; limit: number },
  ): Promise<SegmentPage> {
    const limit = checkLimit(page.limit);
    const ids = this.read.transaction(() => {
      const plan = this.plan(this.read, accountId, condition, ctx);
      if (plan.empty) return [];
      return this.read
        .prepare(`SELECT p.id FROM ${plan.from} WHERE ${plan.where} AND p.id > @after ORDER BY p.id LIMIT ${limit + 1}`)
        .pluck()
        .all({ ...plan.params, after: page.after ?? "" }) as string[];
    })();
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
    const file = this.read.name;
    if (this.read.memory || file === "" || file === ":memory:") {
      // One connection only: page by id (a plan per page) instead of holding a cursor open on it.
      let after = "";
      for (;;) {
        const rows = this.read.transaction(() => {
          const plan = this.plan(this.read, accountId, condition, ctx);
          if (plan.empty) return [];
          return this.read
            .prepare(
              `SELECT p.id, p.state, ${ACTIVITY_OF_P} FROM ${plan.from} ${JOIN_ACTIVITY}
                WHERE ${plan.where} AND p.id > @after ORDER BY p.id LIMIT ${size}`,
            )
            .all({ ...plan.params, after }) as StreamedRow[];
        })();
        if (rows.length === 0) return;
        yield rows.map(streamed);
        after = rows[rows.length - 1]!.id;
      }
    }
    // A connection of its own, in one read transaction (one snapshot for the plan and every row): the cursor stays
    // open while the caller awaits, and nobody else's reads queue behind it.
    const connection = new Database(file, { readonly: true });
    try {
      connection.pragma("busy_timeout = 5000");
      // better-sqlite3's default page cache is 16 MB per connection, and a whole-segment read fills it: each export
      // held ≈ 17–27 MB for as long as its client took to read (300k profiles). 2 MB reads as fast (a cursor
      // visits each page about once).
      connection.pragma(`cache_size = ${-STREAM_CACHE_KB}`);
      registerFunctions(connection);
      connection.exec("BEGIN");
      const plan = this.plan(connection, accountId, condition, ctx);
      if (plan.empty) return;
      const rows = connection
        .prepare(
          `SELECT p.id, p.state, ${ACTIVITY_OF_P} FROM ${plan.from} ${JOIN_ACTIVITY} WHERE ${plan.where}
            ORDER BY p.id`,
        )
        .iterate(plan.params) as IterableIterator<StreamedRow>;
      try {
        let batch: ProfileState[] = [];
        for (const row of rows) {
          batch.push(streamed(row));
          if (batch.length >= size) {
            yield batch;
            batch = [];
          }
        }
        if (batch.length > 0) yield batch;
      } finally {
        rows.return?.();
      }
    } finally {
      connection.close();
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Saved segments

  async insertSegment(accountId: string, segment: SavedSegment, refs: readonly string[]): Promise<InsertSegmentResult> {
    return this.exclusive((): InsertSegmentResult => {
      for (const ref of refs) {
        if (this.sql.exists.get(accountId, ref) === undefined) return { inserted: false, missing: ref };
      }
      this.sql.insert.run(accountId, segment.id, segment.name, JSON.stringify(segment.where), segment.createdAt);
      for (const ref of refs) this.sql.insertRef.run(accountId, ref, segment.id);
      return { inserted: true };
    });
  }

  async getSegment(accountId: string, id: string): Promise<SavedSegment | null> {
    const row = this.sql.getSegment.get(accountId, id);
    return row === undefined ? null : toSegment(row);
  }

  async listSegments(
    accountId: string,
    page: { after: { createdAt: number; id: string } | null; limit: number },
  ): Promise<SavedSegment[]> {
    const after = page.after ?? { createdAt: Number.MIN_SAFE_INTEGER, id: "" };
    return this.sql.listSegments
      .all(accountId, after.createdAt, after.createdAt, after.id, checkLimit(page.limit))
      .map(toSegment);
  }

  async listSegmentsUsing(accountId: string, id: string): Promise<string[]> {
    return this.sql.usedBy.all(accountId, id);
  }

  async deleteSegment(accountId: string, id: string): Promise<DeleteSegmentResult> {
    return this.exclusive((): DeleteSegmentResult => {
      if (this.sql.exists.get(accountId, id) === undefined) return { deleted: false };
      const usedBy = this.sql.usedByForWrite.all(accountId, id).filter((s) => s !== id);
      if (usedBy.length > 0) return { deleted: false, usedBy };
      this.sql.delete.run(accountId, id);
      this.sql.deleteRefs.run(accountId, id);
      return { deleted: true };
    });
  }

  // ---------------------------------------------------------------------------------------------------------------

  /**
   * Rows for profiles written before the property index existed (the migration leaves a marker when there were any):
   * rebuilt from their stored state, 1,000 profiles per transaction, before the store serves anything.
   */
  private backfill(): void {
    const db = this.db;
    const marker = db.prepare<[string], string>("SELECT value FROM meta WHERE key = ?").pluck();
    if (marker.get(BACKFILL_KEY) === undefined) return;
    const page = db.prepare<[number], { pk: number; account_id: string; state: string }>(
      "SELECT pk, account_id, state FROM profiles WHERE pk > ? ORDER BY pk LIMIT 1000",
    );
    const index = segmentIndex(db);
    let after = 0;
    for (;;) {
      const rows = page.all(after);
      if (rows.length === 0) break;
      const tx = {};
      db.transaction(() => {
        for (const row of rows) {
          const state = JSON.parse(row.state) as ProfileState;
          index.written(tx, row.account_id, row.pk, state, false);
        }
      }).immediate();
      index.committed(tx);
      after = rows[rows.length - 1]!.pk;
    }
    db.prepare<[string]>("DELETE FROM meta WHERE key = ?").run(BACKFILL_KEY);
  }
}

function checkLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be a whole number ≥ 1, got ${limit}`);
  return limit;
}

/** A profile row as streamSegment reads it: the state and its activity columns (store/activity-columns.ts). */
interface StreamedRow {
  id: string;
  state: string;
  first_seen: number | null;
  last_seen: number | null;
  event_count: number;
}

function streamed(row: StreamedRow): ProfileState {
  return withActivity(JSON.parse(row.state) as ProfileState, row.first_seen, row.last_seen, row.event_count);
}
