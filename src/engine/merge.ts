/** Combining two people into one (SEMANTICS §7). The pipeline moves rows; this decides the merged state. */
import { roundMoney } from "./activity.js";
import { PortraitError } from "./errors.js";
import { type IdentityChange, newestValue, trim } from "./identity/identities.js";
import { mergeProperties } from "./properties/apply.js";
import type { IdentityKey, ProfileState, ProfileStats } from "./types.js";

export function assertMergeable(target: ProfileState | null, source: ProfileState | null, ids: [string, string]): void {
  const [targetId, sourceId] = ids;
  if (!target) throw new PortraitError("UNKNOWN_PROFILE", `targetId ${targetId} is not a profile`, "targetId");
  if (!source) throw new PortraitError("UNKNOWN_PROFILE", `sourceId ${sourceId} is not a profile`, "sourceId");
  if (target.id === source.id)
    throw new PortraitError("INVALID_MERGE", "a profile cannot be merged with itself", "sourceId");
  for (const [field, p] of [
    ["targetId", target],
    ["sourceId", source],
  ] as const) {
    if (p.mergedInto) throw new PortraitError("INVALID_MERGE", `${field} is a merge tombstone`, field);
    if (p.orphanOf) throw new PortraitError("INVALID_MERGE", `${field} is an orphan of ${p.orphanOf}`, field);
  }
}

export interface MergedState {
  state: ProfileState;
  /** Identity values as they change for the target; values over a limit are released. */
  identities: IdentityChange;
}

/**
 * The merged target: properties by per-key ts (counters summed, sets unioned), identities unioned and trimmed to
 * their limits newest-first, earliest creation and first sighting, latest sighting, the target's bucket and
 * acquisition, either side's flags, stats added up less the events dropped as repeated Charged IDs.
 */
export function mergeStates(
  target: ProfileState,
  source: ProfileState,
  limits: Partial<Record<IdentityKey, number>>,
  dropped: ProfileStats,
  now: number,
): MergedState {
  const union: ProfileState["identities"] = { ...target.identities };
  const keys = new Set<IdentityKey>();
  for (const [key, values] of Object.entries(source.identities) as Array<
    [IdentityKey, ProfileState["identities"][IdentityKey]]
  >) {
    if (!values?.length) continue;
    // The source's values first: `trim` counts the later of two values with one ts as the newer, and on a tie of ts
    // the target's must win, as its property does in `mergeProperties`, so that the property of an identity key
    // still shows the newest value kept (SEMANTICS §2).
    const list = values.filter((v) => !(union[key] ?? []).some((x) => x.value === v.value));
    list.push(...(union[key] ?? []));
    union[key] = list;
    keys.add(key);
  }
  const props = mergeProperties(target.props, source.props);
  // A key whose property the merge decided is a `$delete` (one side deleted it after the other side's values were
  // written) keeps no value: an identity value is also the property of its name (SEMANTICS §2), and a value older
  // than its key's delete is gone on one profile too. Kept, lookups found a value that segments and exports did not.
  for (const key of Object.keys(union) as IdentityKey[]) {
    const entry = props[key];
    if (entry !== undefined && entry.v === undefined) delete union[key];
  }
  const identities = trim(target.identities, union, keys, limits);

  const min = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.min(a, b));
  const max = (a: number | null, b: number | null) => (a === null ? b : b === null ? a : Math.max(a, b));
  const state: ProfileState = {
    ...target,
    props,
    identities: identities.identities,
    createdAt: Math.min(target.createdAt, source.createdAt),
    updatedAt: now,
    firstSeen: min(target.firstSeen, source.firstSeen),
    lastSeen: max(target.lastSeen, source.lastSeen),
    location: target.location.city !== null || target.location.lat !== null ? target.location : source.location,
    timezoneFromContext:
      props.Timezone === target.props.Timezone ? target.timezoneFromContext : source.timezoneFromContext,
    flags: {
      test: target.flags.test || source.flags.test,
      controlGroupExcluded: target.flags.controlGroupExcluded || source.flags.controlGroupExcluded,
    },
    stats: {
      events: target.stats.events + source.stats.events - dropped.events,
      charged: target.stats.charged + source.stats.charged - dropped.charged,
      revenue: roundMoney(target.stats.revenue + source.stats.revenue - dropped.revenue),
    },
  };
  // SEMANTICS §9: a test profile carries is_test_user = "Yes"; the flag may come from the source.
  if (state.flags.test && state.props.is_test_user?.v !== "Yes") {
    state.props = { ...state.props, is_test_user: { v: "Yes", t: "string", ts: now } };
  }
  return { state, identities };
}

/** What remains of the source: a pointer to the target, nothing else (its data moved). */
export function tombstoneOf(source: ProfileState, targetId: string, now: number): ProfileState {
  return {
    ...source,
    props: {},
    identities: {},
    updatedAt: now,
    flags: { test: false, controlGroupExcluded: false },
    stats: { events: 0, charged: 0, revenue: 0 },
    mergedInto: targetId,
    journalMergeId: null,
  };
}

/**
 * A profile an undo restores without one identity value, which another person holds now (SEMANTICS §7 demerge; a
 * value is never taken from a live person). The property of that key keeps showing the newest value left (§2), or
 * becomes a tombstone at its ts when none is left, so that an older write replayed after it still loses.
 */
export function withoutIdentityValue(state: ProfileState, key: IdentityKey, value: string): ProfileState {
  const left = (state.identities[key] ?? []).filter((v) => v.value !== value);
  const identities = { ...state.identities };
  if (left.length > 0) identities[key] = left;
  else delete identities[key];
  const props = { ...state.props };
  const entry = props[key];
  if (entry?.v === value) {
    const newest = newestValue(left);
    props[key] = newest ? { v: newest.value, t: "string", ts: entry.ts } : { ts: entry.ts };
  }
  return { ...state, identities, props };
}
