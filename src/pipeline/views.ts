/** How a profile reads from outside (API.md Profiles): values rendered, derived fields computed at read time. */
import { limitFor } from "../engine/identity/identities.js";
import { toIsoUtc } from "../engine/iso-utc.js";
import { ageFromDob, profileType } from "../engine/profile.js";
import type { Account, JsonValue, ProfileState, PropertyEntry } from "../engine/types.js";
import type { ProfileCard } from "../store/store.js";

export const iso = (ms: number | null): string | null => (ms === null ? null : toIsoUtc(ms));

export function renderValue(entry: PropertyEntry): JsonValue | undefined {
  if (entry.v === undefined) return undefined;
  if (entry.t === "date" && typeof entry.v === "number") return toIsoUtc(entry.v);
  return entry.v as JsonValue;
}

export function renderProperties(state: ProfileState, account: Account, now: number): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const key of Object.keys(state.props).sort()) {
    const value = renderValue(state.props[key] as PropertyEntry);
    if (value !== undefined) out[key] = value;
  }
  const dob = state.props.DOB?.v;
  if (typeof dob === "string") {
    const age = ageFromDob(dob, now, account.settings.timezone);
    if (age) out.Age = { years: age.years, months: age.months };
  }
  return out;
}

export function renderIdentities(state: ProfileState, account: Account): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const key of account.settings.identityKeys) {
    const values = (state.identities[key] ?? []).map((v) => v.value);
    if (values.length === 0) continue;
    // API.md: a key whose limit is above 1 shows its values as an array, newest last.
    out[key] = limitFor(account.settings.identityLimits, key) > 1 ? values : (values[values.length - 1] as string);
  }
  return out;
}

export interface ProfileView {
  id: string;
  type: string;
  identities: Record<string, JsonValue>;
  devices: string[];
  accounts: Array<{ compartmentId: string; userAccountId: string }>;
  properties: Record<string, JsonValue>;
  system: Record<string, JsonValue | null | ProfileState["location"]>;
  flags: { test: boolean; controlGroupExcluded: boolean };
  stats: { events: number; revenue: number; orphans: number };
  orphanOf: string | null;
  mergedInto: string | null;
}

/** §5: an orphan's events count nowhere, its own stats included (its timeline still lists them). */
function countedStats(state: ProfileState, card: ProfileCard): ProfileView["stats"] {
  if (state.orphanOf !== null) return { events: 0, revenue: 0, orphans: card.orphanCount };
  return { events: state.stats.events, revenue: state.stats.revenue, orphans: card.orphanCount };
}

export function profileView(account: Account, card: ProfileCard, now: number): ProfileView {
  const { state } = card;
  const tz = state.props.Timezone?.v;
  return {
    id: state.id,
    type: profileType(state),
    identities: renderIdentities(state, account),
    devices: card.deviceIds,
    accounts: card.userAccounts,
    properties: renderProperties(state, account, now),
    system: {
      createdAt: iso(state.createdAt),
      updatedAt: iso(state.updatedAt),
      firstSeen: iso(state.firstSeen),
      lastSeen: iso(state.lastSeen),
      acquiredFrom: state.acquiredFrom,
      // In API.md's order on both stores (PostgreSQL's jsonb gives shorter keys first).
      location: {
        city: state.location.city,
        region: state.location.region,
        country: state.location.country,
        lat: state.location.lat,
        lon: state.location.lon,
      },
      timezone: typeof tz === "string" ? tz : null,
      bucket: state.bucket,
    },
    flags: { ...state.flags },
    stats: countedStats(state, card),
    orphanOf: state.orphanOf,
    mergedInto: state.mergedInto,
  };
}

/** What decides later writes of one key (SEMANTICS §4): the ts a set, `$set` or `$delete` must reach. */
export interface PropertyStateView {
  ts: string;
  /** A tombstone left by `$delete`: the key has no value, and only a write at least this new sets it again. */
  deleted: boolean;
  /** Last changed by `$incr`/`$decr`: a merge sums the key when the other side's was too (SEMANTICS §7). */
  counter: boolean;
}

/** Every stored key of a profile, tombstones included, with what decides its later writes (the export). */
export function propertyStatesView(state: ProfileState): Record<string, PropertyStateView> {
  const out: Record<string, PropertyStateView> = {};
  for (const key of Object.keys(state.props).sort()) {
    const entry = state.props[key] as PropertyEntry;
    out[key] = { ts: toIsoUtc(entry.ts), deleted: entry.v === undefined, counter: entry.counter === true };
  }
  return out;
}

/** Each identity value with the ts that decides which values a key's limit keeps (SEMANTICS §2, §7). */
export function identityValuesView(state: ProfileState): Record<string, Array<{ value: string; ts: string }>> {
  const out: Record<string, Array<{ value: string; ts: string }>> = {};
  for (const [key, values] of Object.entries(state.identities)) {
    if (values && values.length > 0) out[key] = values.map((v) => ({ value: v.value, ts: toIsoUtc(v.ts) }));
  }
  return out;
}
