import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { TimelineEventView } from "../pipeline/portrait.js";
import { timelineJson } from "./timeline-json.js";

const nullableText = fc.option(fc.string({ unit: "grapheme-composite" }), { nil: null });
// Any UTF-16 code unit, lone surrogates and control characters included: the ones JSON.stringify escapes.
const codeUnits = fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) });
const event: fc.Arbitrary<TimelineEventView> = fc.record({
  id: codeUnits,
  name: fc.string({ unit: "grapheme" }),
  ts: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
  propertiesJson: fc.jsonValue().map((v) => JSON.stringify({ v })),
  anonymous: fc.boolean(),
  profileId: fc.string(),
  deviceId: fc.option(codeUnits, { nil: null }),
  platform: nullableText,
});

describe("timelineJson", () => {
  it("writes what JSON.stringify writes for the same page with its properties parsed, byte for byte", () => {
    fc.assert(
      fc.property(fc.array(event, { maxLength: 5 }), nullableText, (events, nextCursor) => {
        const parsed = {
          events: events.map(({ propertiesJson, ...e }) => ({
            id: e.id,
            name: e.name,
            ts: e.ts,
            properties: JSON.parse(propertiesJson),
            anonymous: e.anonymous,
            profileId: e.profileId,
            deviceId: e.deviceId,
            platform: e.platform,
          })),
          nextCursor,
        };
        expect(timelineJson({ events, nextCursor })).toBe(JSON.stringify(parsed));
      }),
    );
  });
});
