import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ActivityDelta,
  applyActivity,
  applyActivityDelta,
  contextEffect,
  contextStatusOf,
  countEvent,
  foldActivity,
  isCountOnlyEvent,
  roundMoney,
} from "./activity.js";
import { newProfileState } from "./profile.js";
import type { ProfileState, RecordContext } from "./types.js";

const ts = fc.integer({ min: 1, max: 1_000 });
const ZONES = ["Europe/Paris", "UTC"];

/** A profile somewhere in its life: seen or not, with counts, a location, a Timezone (from context or explicit, or a
 * tombstone) and an acquisition source or none. */
const profile: fc.Arbitrary<ProfileState> = fc
  .record({
    seen: fc.option(fc.tuple(ts, ts), { nil: undefined }),
    events: fc.nat({ max: 1000 }),
    charged: fc.nat({ max: 10 }),
    revenue: fc.integer({ min: 0, max: 100_000 }),
    city: fc.option(fc.constantFrom("Paris", "Lyon"), { nil: null }),
    timezone: fc.option(
      fc.record({ v: fc.option(fc.constantFrom(...ZONES), { nil: undefined }), ts, fromContext: fc.boolean() }),
      { nil: undefined },
    ),
    acquired: fc.option(fc.record({ kind: fc.constantFrom("utm" as const, "referrer" as const), ts }), {
      nil: undefined,
    }),
  })
  .map(({ seen, events, charged, revenue, city, timezone, acquired }): ProfileState => {
    const state = newProfileState("p1", 5, 7);
    const props: ProfileState["props"] = timezone
      ? { Timezone: timezone.v === undefined ? { ts: timezone.ts } : { v: timezone.v, t: "string", ts: timezone.ts } }
      : {};
    return {
      ...state,
      firstSeen: seen ? Math.min(...seen) : null,
      lastSeen: seen ? Math.max(...seen) : null,
      stats: { events, charged, revenue },
      location: { ...state.location, city },
      props,
      timezoneFromContext: timezone?.fromContext === true && timezone.v !== undefined,
      acquiredFrom: acquired ? "somewhere" : null,
      acquiredKind: acquired?.kind ?? null,
      acquiredTs: acquired?.ts ?? null,
    };
  });

/** Context as the browser SDK sends it (a zone, a referrer, utm parameters), and what nothing reads. */
const context: fc.Arbitrary<RecordContext | undefined> = fc.option(
  fc.record(
    {
      platform: fc.constantFrom("iOS", "Web"),
      locale: fc.constantFrom("fr-FR", "en-GB"),
      url: fc.constant("https://example.com/a"),
      utm_medium: fc.constant("email"),
      timezone: fc.constantFrom(...ZONES),
      referrer: fc.constantFrom("https://news.example/", "https://shop.example/page", "not a url"),
      utm_source: fc.constantFrom("newsletter", "ads"),
    },
    { requiredKeys: [] },
  ),
  { nil: undefined },
);

const event = fc.record({
  name: fc.constantFrom("App Launched", "Product Viewed", "App Uninstalled", "charged"),
  ts,
  context,
});

type Event = { name: string; ts: number; context?: RecordContext };

function oneByOne(state: ProfileState, events: Event[]) {
  return events.reduce((s, e) => applyActivity(countEvent(s, e.name, 0), e.ts, e.context), state);
}

/** What the pipeline folds: each event checked against the status read once, before the fold (resolve.ts). */
function foldAgainst(state: ProfileState, events: Event[]): ActivityDelta | null {
  const status = contextStatusOf(state);
  let delta: ActivityDelta | undefined;
  for (const e of events) {
    const effect = contextEffect(status, e.ts, e.context);
    if (effect === null) return null;
    delta = foldActivity(delta, e.ts, effect.timezone);
  }
  return delta ?? null;
}

describe("activity deltas", () => {
  it("applying the fold of count-only events equals applying them one by one, whatever their context", () => {
    let folded = 0;
    fc.assert(
      fc.property(profile, fc.array(event, { minLength: 1, maxLength: 12 }), (state, events) => {
        for (const e of events) expect(isCountOnlyEvent(e.name, e.context)).toBe(true);
        const delta = foldAgainst(state, events);
        if (delta === null) return;
        folded++;
        expect(applyActivityDelta(state, delta)).toEqual(oneByOne(state, events));
      }),
      { numRuns: 1000 },
    );
    // The property must not hold only vacuously (about one run in eight folds all its events).
    expect(folded).toBeGreaterThan(50);
  });

  it("a context the fold refuses really changes the profile beyond the counts and Timezone's stamp", () => {
    fc.assert(
      fc.property(profile, event, (state, e) => {
        if (contextEffect(contextStatusOf(state), e.ts, e.context) !== null) return;
        const applied = oneByOne(state, [e]);
        const counted = applyActivityDelta(state, foldActivity(undefined, e.ts));
        const changed = (s: ProfileState) => [s.acquiredFrom, s.acquiredKind, s.acquiredTs, s.props.Timezone?.v];
        expect(changed(applied)).not.toEqual(changed(counted));
      }),
      { numRuns: 500 },
    );
  });

  it("folding is order-free: any order of the same events gives the same delta", () => {
    fc.assert(
      fc.property(fc.array(ts, { minLength: 1, maxLength: 20 }), fc.infiniteStream(fc.nat()), (times, picks) => {
        const shuffled = [...times];
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = picks.next().value % (i + 1);
          [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
        }
        const fold = (list: number[]) =>
          list.reduce<ActivityDelta | undefined>((d, t) => foldActivity(d, t, t % 2 === 0 ? "UTC" : null), undefined);
        expect(fold(shuffled)).toEqual(fold(times));
      }),
    );
  });

  it("two folds applied in turn equal their concatenation applied once (a transaction's delta after another's)", () => {
    fc.assert(
      fc.property(profile, fc.array(ts, { minLength: 1 }), fc.array(ts, { minLength: 1 }), (state, a, b) => {
        const zone = state.timezoneFromContext ? (state.props.Timezone?.v as string) : null;
        const d = (list: number[]) =>
          list.reduce<ActivityDelta | undefined>((acc, t) => foldActivity(acc, t, zone), undefined)!;
        expect(applyActivityDelta(applyActivityDelta(state, d(a)), d(b))).toEqual(
          applyActivityDelta(state, d([...a, ...b])),
        );
      }),
    );
  });

  it("Charged and a location are never count-only; a fold never mixes two zones", () => {
    expect(isCountOnlyEvent("Charged", undefined)).toBe(false);
    expect(isCountOnlyEvent("App Launched", { location: { city: "Paris" } })).toBe(false);
    expect(isCountOnlyEvent("App Launched", { location: {} })).toBe(false);
    expect(isCountOnlyEvent("App Launched", { timezone: "UTC", referrer: "https://a.example/" })).toBe(true);
    expect(() => foldActivity(foldActivity(undefined, 1, "UTC"), 2, "Europe/Paris")).toThrow(/two zones/);
    const state = { ...newProfileState("p1", 5, 7), firstSeen: 10, lastSeen: 20 };
    expect(applyActivity(countEvent(state, "Charged", 12), 30, undefined)).not.toEqual(
      applyActivityDelta(state, foldActivity(undefined, 30)),
    );
  });
});

describe("lifetime revenue", () => {
  it("keeps millionths for ordinary amounts and stays at the largest double instead of overflowing", () => {
    expect(roundMoney(0.1 + 0.2)).toBe(0.3);
    expect(roundMoney(12_345_678_901.5)).toBe(12_345_678_901.5);
    let state = newProfileState("p", 1, 1);
    for (const amount of [1e308, 1e308, 5]) {
      state = countEvent(state, "Charged", amount);
      expect(Number.isFinite(state.stats.revenue)).toBe(true);
    }
    expect(state.stats.revenue).toBe(Number.MAX_VALUE);
    expect(JSON.parse(JSON.stringify(state.stats)).revenue).toBe(Number.MAX_VALUE);
    expect(countEvent(newProfileState("q", 1, 1), "Charged", 2e302).stats.revenue).toBe(2e302);
  });
});
