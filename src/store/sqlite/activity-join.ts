/**
 * A profile's activity lives in `profile_activity`, one narrow row per profile by pk (schema version 8), so that
 * count-only events rewrite ≈ 30 bytes instead of the profile's row with its state document. A profile without activity
 * (firstSeen and lastSeen null, no events) may have no row: a new profile's row is written with its first activity,
 * which saves a statement per new person. A read of profiles `p` brings it with this join (a LEFT JOIN also keeps `p`
 * the outer loop) and selects these columns, in the order of `Activity`.
 */
export const JOIN_ACTIVITY = "LEFT JOIN profile_activity a ON a.pk = p.pk";
export const ACTIVITY_OF_P = "a.first_seen, a.last_seen, coalesce(a.event_count, 0) AS event_count";
