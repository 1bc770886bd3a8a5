/** Creating profiles and deriving what is never stored: type and Age (SEMANTICS §2). */
import type { IdentityKey, ProfileState, ProfileType } from "./types.js";

export function newProfileState(id: string, now: number, bucket: number): ProfileState {
  return {
    id,
    props: {},
    identities: {},
    createdAt: now,
    updatedAt: now,
    firstSeen: null,
    lastSeen: null,
    acquiredFrom: null,
    acquiredTs: null,
    acquiredKind: null,
    location: { city: null, region: null, country: null, lat: null, lon: null },
    timezoneFromContext: false,
    bucket,
    flags: { test: false, controlGroupExcluded: false },
    stats: { events: 0, charged: 0, revenue: 0 },
    orphanOf: null,
    mergedInto: null,
    journalMergeId: null,
  };
}

export function hasIdentity(state: ProfileState): boolean {
  for (const values of Object.values(state.identities)) if (values && values.length > 0) return true;
  return false;
}

export function identityValues(state: ProfileState, key: IdentityKey): string[] {
  return (state.identities[key] ?? []).map((v) => v.value);
}

/**
 * SEMANTICS §2 Type: customer beats identified beats anonymous; addressable (Email or Phone) counts as identified. An
 * orphan's Charged events count nowhere (§5), so they never make it a customer.
 */
export function profileType(state: ProfileState): ProfileType {
  if (state.stats.charged > 0 && state.orphanOf === null) return "customer";
  if (hasIdentity(state)) return "identified";
  if (state.props.Email?.v !== undefined || state.props.Phone?.v !== undefined) return "identified";
  return "anonymous";
}

/** The calendar date of `at` in `timeZone` as [year, month 1-12, day]. */
export function calendarDate(at: number, timeZone: string): [number, number, number] {
  const parts = dateFormatter(timeZone).formatToParts(new Date(at));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  return [get("year"), get("month"), get("day")];
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function dateFormatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", { timeZone, year: "numeric", month: "numeric", day: "numeric" });
    formatters.set(timeZone, f);
  }
  return f;
}

export interface Age {
  years: number;
  months: number;
}

/** Whole years and months from a `YYYY-MM-DD` birth date to `now`'s calendar date in the account timezone. */
export function ageFromDob(dob: string, now: number, timeZone: string): Age | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(dob);
  if (!m) return null;
  const [by, bm, bd] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const [ny, nm, nd] = calendarDate(now, timeZone);
  let months = (ny - by) * 12 + (nm - bm);
  if (nd < bd) months -= 1;
  if (months < 0) return { years: 0, months: 0 };
  return { years: Math.floor(months / 12), months: months % 12 };
}
