/**
 * A profile's activity lives in `profile_activity`, one narrow row per profile by pk (schema version 8), so that
 * count-only events rewrite ≈ 30 bytes instead of the profile's row with its state document. A read of profiles `p`
 * brings it with this join (CROSS JOIN keeps `p` the outer loop) and selects these columns, in the order of `Activity`.
 */
export const JOIN_ACTIVITY = "CROSS JOIN profile_activity a ON a.pk = p.pk";
export const ACTIVITY_OF_P = "a.first_seen, a.last_seen, a.event_count";
