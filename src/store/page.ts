/** Paging a timeline newest first by (ts, seq), the same in every adapter (StoreReader.listEvents, timelinePage). */
import type { PageOptions } from "./store.js";

/** Larger than any ts or seq: the cursor of the first page. */
const END = Number.MAX_SAFE_INTEGER;

/** Where a page starts, and how many events to read: one more than asked tells whether another page exists. */
export function pageStart(opts: PageOptions, what: string): { ts: number; seq: number; read: number } {
  const { limit } = opts;
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`${what}: limit must be ≥ 1, got ${limit}`);
  return { ts: opts.before?.ts ?? END, seq: opts.before?.seq ?? END, read: limit + 1 };
}

/** The page of at most `limit` events out of the `limit + 1` read newest first (cut in place). */
export function pageOf<E extends { ts: number; seq: number }>(
  events: E[],
  limit: number,
): { events: E[]; next: { ts: number; seq: number } | null } {
  const more = events.length > limit;
  if (more) events.length = limit;
  const last = events[events.length - 1];
  return { events, next: more && last ? { ts: last.ts, seq: last.seq } : null };
}
