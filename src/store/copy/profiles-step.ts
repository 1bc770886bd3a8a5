/**
 * Profiles, with what SQLite keeps beside them in other shapes:
 * - their activity (first_seen, last_seen, event_count), in SQLite's `profile_activity` by pk (a profile without a row
 *   has none: null, null, 0), goes into the columns PostgreSQL keeps on the profile row;
 * - the property index (`segment_values`) is rebuilt from each profile's properties, exactly as the PostgreSQL
 *   adapter writes it for a new profile (indexValues into IndexRowColumns, its insertSegmentRows statement), rather
 *   than translated from SQLite's index, whose paths are ids into its own dictionary (`segment_paths`).
 * The state document is copied as stored: its own copies of the activity may be older than the columns, which hold
 * the truth on both stores (store/activity-columns.ts); journalMergeId, a column on SQLite, is read from it on
 * PostgreSQL.
 */
import { indexValues } from "../../engine/segment/index-values.js";
import type { ProfileState } from "../../engine/types.js";
import { IndexRowColumns } from "../postgres/postgres-segments.js";
import { SQL } from "../postgres/postgres-store.js";
import { type CopyContext, checkInterrupted, secondsSince, type TableResult } from "./copy-context.js";
import type { PostgresTarget } from "./postgres-target.js";
import { insertStatement, RowChunk } from "./row-chunk.js";
import { type Column, origin } from "./tables.js";

/** In the target's key order; profile_activity joined by pk. */
const SELECT = `SELECT p.account_id, p.id, p.state, p.merged_into, p.orphan_of, p.control_group_excluded, p.created_at,
    p.updated_at, a.first_seen, a.last_seen, coalesce(a.event_count, 0)
  FROM profiles p LEFT JOIN profile_activity a ON a.pk = p.pk
  ORDER BY p.account_id, p.id`;

export const PROFILE_COLUMNS: readonly Column[] = [
  { name: "account_id", type: "text" },
  { name: "id", type: "text" },
  { name: "state", type: "jsonb" },
  { name: "merged_into", type: "text" },
  { name: "orphan_of", type: "text" },
  { name: "control_group_excluded", type: "boolean" },
  { name: "created_at", type: "bigint" },
  { name: "updated_at", type: "bigint" },
  { name: "first_seen", type: "float8" },
  { name: "last_seen", type: "float8" },
  { name: "event_count", type: "float8" },
];

/** Property index rows per INSERT, at most (a profile's rows are never split). */
const INDEX_CHUNK_ROWS = 20_000;

/**
 * The property index rows of the profiles read so far, sent as the PostgreSQL adapter sends a group's new profiles'
 * rows (one insertSegmentRows per account and chunk).
 */
class PropertyIndexRows {
  private accountId: string | null = null;
  private columns = new IndexRowColumns();
  /** Rows sent. */
  sent = 0;

  constructor(private readonly target: PostgresTarget) {}

  /** A profile's rows (`id` the row's id, the key its index rows are written under). */
  async add(accountId: string, id: string, state: ProfileState): Promise<void> {
    if (accountId !== this.accountId) {
      await this.flush();
      this.accountId = accountId;
    }
    this.columns.add(id, indexValues(state.props));
    if (this.columns.size >= INDEX_CHUNK_ROWS) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.accountId === null || this.columns.size === 0) return;
    const values = [this.accountId, ...this.columns.arrays()];
    await this.target.send("segment_values", { name: "copy_segment_values", text: SQL.insertSegmentRows, values });
    this.sent += this.columns.size;
    this.columns = new IndexRowColumns();
  }
}

export async function copyProfiles(ctx: CopyContext): Promise<TableResult[]> {
  const start = performance.now();
  const total = ctx.source.value<number>("SELECT count(*) FROM profiles");
  const text = insertStatement("profiles", PROFILE_COLUMNS);
  const index = new PropertyIndexRows(ctx.target);
  let chunk = new RowChunk("profiles", PROFILE_COLUMNS, 2);
  let rows = 0;
  const sendProfiles = async () => {
    await ctx.target.send("profiles", chunk.statement(text));
    rows += chunk.rows;
    chunk = new RowChunk("profiles", PROFILE_COLUMNS, 2);
    ctx.progress({ table: "profiles", rows, total, done: false, seconds: secondsSince(start) });
    checkInterrupted(ctx);
  };
  for (const row of ctx.source.rows(SELECT)) {
    chunk.add(row);
    await index.add(row[0] as string, row[1] as string, JSON.parse(row[2] as string) as ProfileState);
    if (chunk.full) await sendProfiles();
  }
  if (chunk.rows > 0) await sendProfiles();
  await index.flush();
  await ctx.target.drain();
  const seconds = secondsSince(start);
  const indexRows = index.sent;
  ctx.progress({ table: "profiles", rows, total, done: true, seconds });
  // SQLite's own index, for comparison only: the rebuilt one must match the profiles, which it does by construction.
  const sqliteIndexRows = ctx.source.value<number>("SELECT count(*) FROM segment_values");
  ctx.progress({ table: "segment_values", rows: indexRows, total: indexRows, done: true, seconds });
  const profiles: TableResult = { table: "profiles", ...origin("profiles"), rows, expected: total, seconds };
  const segmentValues: TableResult = {
    table: "segment_values",
    ...origin("segment_values"),
    rows: indexRows,
    expected: indexRows,
    seconds,
  };
  if (sqliteIndexRows !== indexRows) {
    segmentValues.note =
      `SQLite's property index had ${sqliteIndexRows} rows where its profiles give ${indexRows}: the copy's index ` +
      "follows the profiles, so a segment on a property may count differently than it did on SQLite";
  }
  return [profiles, segmentValues];
}
