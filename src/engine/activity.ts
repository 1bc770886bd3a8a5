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
