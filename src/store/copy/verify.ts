/**
 * The copy's last check, inside its transaction: a mismatch rolls everything back (VERIFY_FAILED), so a target that
 * committed holds what the checks say. Row counts per table against the source's (or the documented count for a
 * translated or rebuilt table: TableResult.expected), the activity folded into profiles against SQLite's
 * profile_activity, and the source itself: nobody may have written to it or opened it since the snapshot.
 */
import type { CopyContext, TableResult } from "./copy-context.js";
import { CopyError } from "./copy-error.js";

/** Profiles with a first seen time, with a last seen time, and their events counted, in total. */
type ActivityTotals = [firstSeen: number, lastSeen: number, events: number];

export async function verifyCopy(ctx: CopyContext, results: readonly TableResult[]): Promise<void> {
  const wrong: string[] = [];
  for (const result of results) {
    const held = await ctx.target.count(result.table);
    if (held !== result.expected) wrong.push(`${result.table} holds ${held} rows, ${result.expected} expected`);
  }
  const sqlite = ctx.source.row<ActivityTotals>(
    `SELECT count(a.first_seen), count(a.last_seen), coalesce(sum(a.event_count), 0)
     FROM profile_activity a JOIN profiles p ON p.pk = a.pk`,
  );
  const [pg] = await ctx.target.query<{ first: string; last: string; events: string }>(
    `SELECT count(first_seen) AS first, count(last_seen) AS last, coalesce(sum(event_count), 0) AS events
     FROM profiles`,
  );
  const postgres: ActivityTotals = [Number(pg?.first), Number(pg?.last), Number(pg?.events)];
  if (postgres.some((n, i) => n !== sqlite[i])) {
    wrong.push(
      `profile activity (first seen, last seen, events) is ${postgres.join("/")}, ${sqlite.join("/")} expected`,
    );
  }
  if (wrong.length > 0) {
    throw new CopyError("VERIFY_FAILED", `the copy does not match the source: ${wrong.join("; ")}; it was rolled back`);
  }
  const holders = ctx.source.holders();
  if (ctx.source.writtenSinceOpen() || (holders !== null && holders.length > 0)) {
    const who = holders && holders.length > 0 ? ` (pid ${holders.join(", ")} has it open)` : "";
    throw new CopyError(
      "STORE_IN_USE",
      `${ctx.source.file} was written or opened by another process during the copy${who}: what it wrote would be ` +
        "missing from the target, so the copy was rolled back; stop every `portrait serve` on it and copy again",
    );
  }
}
