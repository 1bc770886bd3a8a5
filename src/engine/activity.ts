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
function isEarlierSource(state: ProfileState, kind: "utm" | "referrer", ts: number): boolean {
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

/** Keeps revenue free of binary-fraction drift (0.1 + 0.2) for the amounts people actually charge. */
export function roundMoney(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}

/**
 * What a run of count-only events (below) does to a profile, folded: the earliest and latest ts and how many there
 * were. Folding is commutative and applying a fold equals applying its events one by one, so a store can add it to
 * a profile it never read (StoreTx.addActivity): most events change nothing else, and reading and rewriting the
 * whole profile for them was most of an event's cost.
 */
export interface ActivityDelta {
  firstTs: number;
  lastTs: number;
  events: number;
}

/**
 * True for an event whose only effect on its profile is firstSeen, lastSeen and the event count: not Charged (its
 * revenue and customer status), and no context that sets acquisition, location or Timezone, which depend on what the
 * profile holds already.
 */
export function isCountOnlyEvent(name: string, context: RecordContext | undefined): boolean {
  if (name === "Charged") return false;
  if (!context) return true;
  return context.location === undefined && !context.timezone && !context.utm_source && !context.referrer;
}

/** Adds one count-only event at `ts` to a fold (none yet: undefined). */
export function foldActivity(delta: ActivityDelta | undefined, ts: number): ActivityDelta {
  if (!delta) return { firstTs: ts, lastTs: ts, events: 1 };
  return { firstTs: Math.min(delta.firstTs, ts), lastTs: Math.max(delta.lastTs, ts), events: delta.events + 1 };
}

/** A fold applied to a profile: the same state as its events applied one by one (activity.test.ts). */
export function applyActivityDelta(state: ProfileState, delta: ActivityDelta): ProfileState {
  return {
    ...state,
    firstSeen: state.firstSeen === null ? delta.firstTs : Math.min(state.firstSeen, delta.firstTs),
    lastSeen: state.lastSeen === null ? delta.lastTs : Math.max(state.lastSeen, delta.lastTs),
    stats: { ...state.stats, events: state.stats.events + delta.events },
  };
}
