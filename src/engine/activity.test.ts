import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type ActivityDelta,
  applyActivity,
  applyActivityDelta,
  countEvent,
  foldActivity,
  isCountOnlyEvent,
} from "./activity.js";
import { newProfileState } from "./profile.js";
import type { ProfileState, RecordContext } from "./types.js";

const ts = fc.integer({ min: 1, max: 1_000_000 });

/** A profile somewhere in its life: seen or never seen, with counts, a location and a context-set Timezone or not. */
const profile: fc.Arbitrary<ProfileState> = fc
  .record({
    seen: fc.option(fc.tuple(ts, ts), { nil: undefined }),
    events: fc.nat({ max: 1000 }),
    charged: fc.nat({ max: 10 }),
    revenue: fc.integer({ min: 0, max: 100_000 }),
    city: fc.option(fc.constantFrom("Paris", "Lyon"), { nil: null }),
    timezone: fc.option(fc.tuple(fc.constantFrom("Europe/Paris", "UTC"), ts), { nil: undefined }),
  })
  .map(({ seen, events, charged, revenue, city, timezone }): ProfileState => {
    const state = newProfileState("p1", 5, 7);
    const props: ProfileState["props"] = timezone ? { Timezone: { v: timezone[0], t: "string", ts: timezone[1] } } : {};
    return {
      ...state,
      firstSeen: seen ? Math.min(...seen) : null,
      lastSeen: seen ? Math.max(...seen) : null,
      stats: { events, charged, revenue },
      location: { ...state.location, city },
      props,
      timezoneFromContext: timezone !== undefined,
    };
  });

/** Context that only the event row keeps (platform) or nothing reads (locale, url, utm_medium). */
const inertContext: fc.Arbitrary<RecordContext | undefined> = fc.option(
  fc.record(
    {
      platform: fc.constantFrom("iOS", "Android", "Web"),
      locale: fc.constantFrom("fr-FR", "en-GB"),
      url: fc.constant("https://example.com/a"),
      utm_medium: fc.constant("email"),
    },
    { requiredKeys: [] },
  ),
  { nil: undefined },
);

const countOnlyEvent = fc.record({
  name: fc.constantFrom("App Launched", "Product Viewed", "App Uninstalled", "charged"),
  ts,
  context: inertContext,
});

function oneByOne(state: ProfileState, events: Array<{ name: string; ts: number; context?: RecordContext }>) {
  return events.reduce((s, e) => applyActivity(countEvent(s, e.name, 0), e.ts, e.context), state);
}

function fold(events: Array<{ ts: number }>): ActivityDelta | undefined {
  return events.reduce<ActivityDelta | undefined>((d, e) => foldActivity(d, e.ts), undefined);
}

describe("activity deltas", () => {
  it("applying the fold of count-only events equals applying them one by one", () => {
    fc.assert(
      fc.property(profile, fc.array(countOnlyEvent, { minLength: 1, maxLength: 20 }), (state, events) => {
        for (const e of events) expect(isCountOnlyEvent(e.name, e.context)).toBe(true);
        expect(applyActivityDelta(state, fold(events)!)).toEqual(oneByOne(state, events));
      }),
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
        const asEvents = (list: number[]) => list.map((t) => ({ ts: t }));
        expect(fold(asEvents(shuffled))).toEqual(fold(asEvents(times)));
      }),
    );
  });

  it("two folds applied in turn equal their concatenation applied once (a transaction's delta after another's)", () => {
    fc.assert(
      fc.property(profile, fc.array(ts, { minLength: 1 }), fc.array(ts, { minLength: 1 }), (state, a, b) => {
        const d = (list: number[]) => fold(list.map((t) => ({ ts: t })))!;
        expect(applyActivityDelta(applyActivityDelta(state, d(a)), d(b))).toEqual(
          applyActivityDelta(state, d([...a, ...b])),
        );
      }),
    );
  });

  it("Charged and context that acquisition, location or Timezone read are not count-only", () => {
    expect(isCountOnlyEvent("Charged", undefined)).toBe(false);
    expect(isCountOnlyEvent("App Launched", { timezone: "Europe/Paris" })).toBe(false);
    expect(isCountOnlyEvent("App Launched", { utm_source: "newsletter" })).toBe(false);
    expect(isCountOnlyEvent("App Launched", { referrer: "https://news.example/" })).toBe(false);
    expect(isCountOnlyEvent("App Launched", { location: { city: "Paris" } })).toBe(false);
    expect(isCountOnlyEvent("App Launched", { location: {} })).toBe(false);
    expect(isCountOnlyEvent("App Launched", { platform: "iOS", locale: "fr-FR" })).toBe(true);
  });

  it("each excluded context really changes the profile beyond the count, so the exclusion is needed", () => {
    const state = { ...newProfileState("p1", 5, 7), firstSeen: 10, lastSeen: 20 };
    const contexts: RecordContext[] = [
      { timezone: "Europe/Paris" },
      { utm_source: "newsletter" },
      { referrer: "https://news.example/" },
      { location: { city: "Paris" } },
    ];
    for (const context of contexts) {
      const counted = applyActivityDelta(state, foldActivity(undefined, 30));
      expect(applyActivity(countEvent(state, "App Launched", 0), 30, context)).not.toEqual(counted);
    }
    expect(applyActivity(countEvent(state, "Charged", 12), 30, undefined)).not.toEqual(
      applyActivityDelta(state, foldActivity(undefined, 30)),
    );
  });
});
