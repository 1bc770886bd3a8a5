/**
 * A profile's activity (firstSeen, lastSeen, its event count) in columns of its own (schema version 6). Count-only
 * events update only them: rewriting the state document with jsonb_set costs ≈ 10 µs a row, as much as the rest of the
 * update. The columns hold the truth; every write sets them from the state, every read puts them back into it.
 */
import type { ProfileState } from "../../engine/types.js";

/** The columns, in the order `activityOf` gives their values. */
export const ACTIVITY = "first_seen, last_seen, event_count";

/** The columns' values as a write sets them from the state document `state` (an SQL jsonb expression). */
export function activityOf(state: string): string {
  return `(${state}->>'firstSeen')::float8, (${state}->>'lastSeen')::float8,
    coalesce((${state}#>>'{stats,events}')::float8, 0)`;
}

/** The activity columns as a read returns them beside `state`. */
export interface ActivityRow {
  first_seen: number | null;
  last_seen: number | null;
  event_count: number;
}

/** A profile row as the reads of its state return it. */
export interface StateRow extends ActivityRow {
  state: ProfileState;
}

/** A state as read: the activity columns hold the truth, the document's own copies of them may be older. */
export function withActivity<S extends ProfileState>(state: S, row: ActivityRow): S {
  state.firstSeen = row.first_seen;
  state.lastSeen = row.last_seen;
  state.stats.events = row.event_count;
  return state;
}
