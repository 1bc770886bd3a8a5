/**
 * A profile's activity (firstSeen, lastSeen, its event count) lives in columns of its own on both stores (PostgreSQL
 * schema version 6; on SQLite a narrow table of its own since version 8), which count-only events update without
 * rewriting the state document: jsonb_set and json_set take the whole document apart and build it again. The columns
 * hold the truth: every write sets them from the state (`activityOf`), every read puts them back into it
 * (`withActivity`).
 */
import type { ProfileState } from "../engine/types.js";

/** The columns' values, in the order both stores select them (first_seen, last_seen, event_count). */
export type Activity = [firstSeen: number | null, lastSeen: number | null, events: number];

/** A new profile's activity. */
export const NO_ACTIVITY: Activity = [null, null, 0];

/** The columns' values as a write sets them from the state. */
export function activityOf(state: ProfileState): Activity {
  return [state.firstSeen, state.lastSeen, state.stats.events];
}

/** A state as read: the columns hold the truth, the document's own copies of them may be older. */
export function withActivity<S extends ProfileState>(
  state: S,
  firstSeen: number | null,
  lastSeen: number | null,
  events: number,
): S {
  state.firstSeen = firstSeen;
  state.lastSeen = lastSeen;
  state.stats.events = events;
  return state;
}

export function sameActivity(a: Activity, b: Activity): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
}
