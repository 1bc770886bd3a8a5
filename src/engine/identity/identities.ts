/** Identity values kept on a profile: per-key limits, newest kept by ts (SEMANTICS §2, §7). */
import type { IdentityKey, IdentityValue, ProfileState } from "../types.js";

export interface IdentityChange {
  identities: ProfileState["identities"];
  /** Values this profile no longer holds (to release from the account-wide index). */
  released: Array<{ key: IdentityKey; value: string }>;
  /** Values newly held (to claim in the index). */
  added: Array<{ key: IdentityKey; value: string }>;
}

export function limitFor(limits: Partial<Record<IdentityKey, number>>, key: IdentityKey): number {
  const n = limits[key];
  return n !== undefined && Number.isInteger(n) && n >= 1 ? n : 1;
}

/**
 * Adds values to a profile's identities and trims each key to its limit, newest (by ts, later arrival on a tie)
 * first. A value already held moves to the newest place only when re-sent at its ts or later. Does not mutate
 * its input.
 */
export function addIdentityValues(
  current: ProfileState["identities"],
  additions: Array<{ key: IdentityKey; value: string; ts: number }>,
  limits: Partial<Record<IdentityKey, number>>,
): IdentityChange {
  const next: ProfileState["identities"] = { ...current };
  const touched = new Set<IdentityKey>();
  for (const a of additions) {
    const list = [...(next[a.key] ?? [])];
    const i = list.findIndex((v) => v.value === a.value);
    if (i >= 0) {
      // A value re-sent at an older ts stays where it was: like its property (last writer by ts), it must not
      // become the newest. At the same ts or later it is the latest arrival, as a property write would be.
      if (a.ts < (list[i] as IdentityValue).ts) continue;
      list.splice(i, 1);
    }
    list.push({ value: a.value, ts: a.ts });
    next[a.key] = list;
    touched.add(a.key);
  }
  return trim(current, next, touched, limits);
}

/** Re-applies the limits (a lowered limit releases the oldest values at once; merges union two lists). */
export function trim(
  before: ProfileState["identities"],
  next: ProfileState["identities"],
  keys: Iterable<IdentityKey>,
  limits: Partial<Record<IdentityKey, number>>,
): IdentityChange {
  const out: ProfileState["identities"] = { ...next };
  for (const key of keys) {
    const list = out[key] ?? [];
    // Stable sort keeps arrival order among equal ts, so the later arrival counts as newer.
    const sorted = list.map((v, i) => ({ v, i })).sort((a, b) => a.v.ts - b.v.ts || a.i - b.i);
    const kept = sorted.slice(Math.max(0, sorted.length - limitFor(limits, key))).map((x) => x.v);
    if (kept.length === 0) delete out[key];
    else out[key] = kept;
  }
  return { identities: out, ...diff(before, out) };
}

export function diff(
  before: ProfileState["identities"],
  after: ProfileState["identities"],
): Pick<IdentityChange, "released" | "added"> {
  const released: IdentityChange["released"] = [];
  const added: IdentityChange["added"] = [];
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]) as Set<IdentityKey>;
  for (const key of keys) {
    const b = new Set((before[key] ?? []).map((v) => v.value));
    const a = new Set((after[key] ?? []).map((v) => v.value));
    for (const value of b) if (!a.has(value)) released.push({ key, value });
    for (const value of a) if (!b.has(value)) added.push({ key, value });
  }
  return { released, added };
}

export function removeIdentityKey(current: ProfileState["identities"], key: IdentityKey): IdentityChange {
  const next = { ...current };
  delete next[key];
  return { identities: next, ...diff(current, next) };
}

/** The newest value of a key (what the property of the same name shows). */
export function newestValue(list: IdentityValue[] | undefined): IdentityValue | undefined {
  return list?.[list.length - 1];
}
