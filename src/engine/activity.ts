/**
 * System fields that follow from activity (SEMANTICS §2 system fields, §3 Event, §11 context):
 * firstSeen/lastSeen from every record's ts, acquiredFrom, location and Timezone from context, event stats.
 */
import type { ProfileState, RecordContext } from "./types.js";

/** Applies a record's ts and context to the system fields. Returns a new state; the input is not changed. */
export function applyActivity(state: ProfileState, ts: number, context: RecordContext | undefined): ProfileState {
  const next: ProfileState = {
    ...state,
    firstSeen: state.firstSeen === null ? ts : Math.min(state.firstSeen, ts),
    lastSeen: state.lastSeen === null ? ts : Math.max(state.lastSeen, ts),
  };
  if (!context) return next;

  const source = acquisitionOf(context);
  if (source && isEarlierSource(state, source.kind, ts)) {
    next.acquiredFrom = source.value;
    next.acquiredTs = ts;
    next.acquiredKind = source.kind;
  }
  // Location is a snapshot of where the person was last seen: only a record at least as new replaces it.
  if (context.location && ts >= (state.lastSeen ?? 0)) {
    next.location = {
      city: context.location.city ?? null,
      region: context.location.region ?? null,
      country: context.location.country ?? null,
      lat: context.location.lat ?? null,
      lon: context.location.lon ?? null,
    };
  }
  // Context timezone sets Timezone unless a client wrote it explicitly (SEMANTICS §11).
  const tz = context.timezone;
  const current = state.props.Timezone;
  if (tz && (current?.v === undefined || state.timezoneFromContext) && ts >= (current?.ts ?? 0)) {
    next.props = { ...state.props, Timezone: { v: tz, t: "string", ts } };
    next.timezoneFromContext = true;
  }
  return next;
}

function acquisitionOf(context: RecordContext): { kind: "utm" | "referrer"; value: string } | null {
  if (context.utm_source) return { kind: "utm", value: context.utm_source };
  if (context.referrer) {
    try {
      const host = new URL(context.referrer).host;
      if (host) return { kind: "referrer", value: host };
    } catch {
      // A referrer that is not a URL says nothing about where the person came from.
    }
  }
  return null;
}

/** The earliest utm_source wins; a referrer only counts while no utm_source has been seen. */
function isEarlierSource(
  state: Pick<ProfileState, "acquiredKind" | "acquiredTs">,
  kind: "utm" | "referrer",
  ts: number,
): boolean {
  if (state.acquiredKind === null) return true;
  if (kind === "utm" && state.acquiredKind === "referrer") return true;
  if (kind === "referrer" && state.acquiredKind === "utm") return false;
  return ts < (state.acquiredTs ?? Number.POSITIVE_INFINITY);
}

/** A counted event: stats and, for Charged, customer status and revenue (SEMANTICS §3 Event). */
export function countEvent(state: ProfileState, name: string, amount: number): ProfileState {
  const charged = name === "Charged";
  return {
    ...state,
    stats: {
      events: state.stats.events + 1,
      charged: state.stats.charged + (charged ? 1 : 0),
      revenue: charged ? roundMoney(state.stats.revenue + amount) : state.stats.revenue,
    },
  };
}

/**
 * Keeps revenue free of binary-fraction drift (0.1 + 0.2) for the amounts people actually charge. Past 9e9 there are
 * no millionths a double could keep, and n × 1e6 would overflow near 1.8e302: such a sum is kept as it is, and one
 * beyond the largest double stays at it, since JSON has no Infinity (the revenue became null, and the next Charged
 * counted from 0 again).
 */
export function roundMoney(n: number): number {
  if (Math.abs(n) >= 9e9) return Math.min(n, Number.MAX_VALUE);
  return Math.round(n * 1e6) / 1e6;
}

/**
 * What a run of count-only events (below) does to a profile, folded: the earliest and latest ts, how many there were,
 * and the latest ts of those that restamp the profile's context-set Timezone with the zone it has. Folding is
 * commutative and applying a fold equals applying its events one by one, so a store can add it to a profile it never
 * read (StoreTx.addActivity): most events change nothing else, and reading and rewriting the whole profile for them
 * was most of an event's cost.
 */
export interface ActivityDelta {
  firstTs: number;
  lastTs: number;
  events: number;
  /** Set when events restamp `props.Timezone` (same zone, from context): its value and the latest of their ts. */
  timezone?: { value: string; ts: number };
}

/**
 * False for an event that always changes its profile beyond the counts: Charged (revenue and customer status), and
 * context with a location (a snapshot of where the person was last seen). Any other event is count-only unless its
 * timezone, utm_source or referrer would change the profile: `contextEffect` decides that from `ContextStatus`.
 */
export function isCountOnlyEvent(name: string, context: RecordContext | undefined): boolean {
  return name !== "Charged" && context?.location === undefined;
}

/** True when `contextEffect` must look at the profile before an event can count only. */
export function needsContextStatus(context: RecordContext | undefined): boolean {
  return context !== undefined && !!(context.timezone || context.utm_source || context.referrer);
}

/** What the context rules of `applyActivity` read of a profile. */
export interface ContextStatus {
  /** `props.Timezone`: its value (null for none or a tombstone) and ts (null when the key was never written). */
  timezone: string | null;
  timezoneTs: number | null;
  timezoneFromContext: boolean;
  acquiredKind: "utm" | "referrer" | null;
  acquiredTs: number | null;
}

export function contextStatusOf(state: ProfileState): ContextStatus {
  const tz = state.props.Timezone;
  return {
    timezone: typeof tz?.v === "string" ? tz.v : null,
    timezoneTs: tz?.ts ?? null,
    timezoneFromContext: state.timezoneFromContext,
    acquiredKind: state.acquiredKind,
    acquiredTs: state.acquiredTs,
  };
}

/**
 * What an event's context does to a profile in `status`, beyond what `applyActivity` does to every event: null when it
 * changes something (acquisition, Timezone's value); else the zone it restamps (`applyActivity` sets the same value
 * again with the event's ts), or null `timezone` when it changes nothing. The answers it gives hold as the profile
 * changes: acquisition only moves to an earlier source, so "no change" stays true; a restamp is guarded where it is
 * written (StoreTx.addActivity).
 */
export function contextEffect(
  status: ContextStatus,
  ts: number,
  context: RecordContext | undefined,
): { timezone: string | null } | null {
  if (!context) return { timezone: null };
  const source = acquisitionOf(context);
  if (source && isEarlierSource(status, source.kind, ts)) return null;
  const tz = context.timezone;
  if (!tz) return { timezone: null };
  const contextMayWrite = status.timezone === null || status.timezoneFromContext;
  if (!contextMayWrite || ts < (status.timezoneTs ?? 0)) return { timezone: null };
  return tz === status.timezone && status.timezoneFromContext ? { timezone: tz } : null;
}

/** Adds one count-only event at `ts` to a fold (none yet: undefined), restamping `timezone` when one is given. */
export function foldActivity(
  delta: ActivityDelta | undefined,
  ts: number,
  timezone: string | null = null,
): ActivityDelta {
  const next: ActivityDelta = delta
    ? { firstTs: Math.min(delta.firstTs, ts), lastTs: Math.max(delta.lastTs, ts), events: delta.events + 1 }
    : { firstTs: ts, lastTs: ts, events: 1 };
  const restamp = delta?.timezone;
  if (timezone !== null) {
    if (restamp && restamp.value !== timezone) throw new Error("foldActivity: two zones restamped in one fold");
    next.timezone = { value: timezone, ts: Math.max(restamp?.ts ?? ts, ts) };
  } else if (restamp) {
    next.timezone = restamp;
  }
  return next;
}

/** A fold applied to a profile: the same state as its events applied one by one (activity.test.ts). */
export function applyActivityDelta(state: ProfileState, delta: ActivityDelta): ProfileState {
  const next: ProfileState = {
    ...state,
    firstSeen: state.firstSeen === null ? delta.firstTs : Math.min(state.firstSeen, delta.firstTs),
    lastSeen: state.lastSeen === null ? delta.lastTs : Math.max(state.lastSeen, delta.lastTs),
    stats: { ...state.stats, events: state.stats.events + delta.events },
  };
  const restamp = delta.timezone;
  const tz = state.props.Timezone;
  if (restamp && tz && restampHolds(state, delta)) {
    next.props = { ...state.props, Timezone: { ...tz, ts: Math.max(tz.ts, restamp.ts) } };
  }
  return next;
}

/**
 * False when a fold restamps a Timezone the profile no longer has from context: another writer changed it after the
 * status was read (PostgreSQL only), and the fold's events must then be applied again from the start.
 */
export function restampHolds(state: ProfileState, delta: ActivityDelta): boolean {
  const restamp = delta.timezone;
  return restamp === undefined || (state.props.Timezone?.v === restamp.value && state.timezoneFromContext);
}
