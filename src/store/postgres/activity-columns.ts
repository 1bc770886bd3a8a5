/**
 * The activity columns (store/activity-columns.ts) as PostgreSQL's statements write and read them: writes set them from
 * the state document in SQL, reads return them beside it.
 */
import type { ProfileState } from "../../engine/types.js";
import { withActivity } from "../activity-columns.js";

/** The columns on `profiles`, in the order of `Activity`. */
export const ACTIVITY = "first_seen, last_seen, event_count";

/** The columns' values as a write sets them from the state document `state` (an SQL jsonb expression). */
export function activitySqlOf(state: string): string {
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

/** The state of a row as read, with its activity columns put back into it. */
export function stateOf(row: StateRow): ProfileState {
  return withActivity(row.state, row.first_seen, row.last_seen, row.event_count);
}
