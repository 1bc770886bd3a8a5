/**
 * An SDK batch's `sentAt`: what it must be (SDK audit F4: junk was ignored without a word, and an absurd one moved
 * every ts out of range and was reported as a bad `ts`), and how the skew it gives moves numeric ts.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CLOCK_SKEW_TOLERANCE_MS, clockSkewOf, readSentAt } from "./clock-skew.js";
import { PortraitError } from "./errors.js";
import { parseTimestamp } from "./properties/event-properties.js";

const now = Date.UTC(2025, 0, 10);
const day = 86_400;

function errorOf(fn: () => unknown): PortraitError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(PortraitError);
    return e as PortraitError;
  }
  throw new Error("expected a PortraitError");
}

/** A numeric ts as a batch with this sentAt has it parsed. */
const tsWith = (sentAt: number, ts: unknown) => parseTimestamp(ts, now, "ts", "UTC", clockSkewOf(sentAt, now));

describe("readSentAt", () => {
  it("takes epoch seconds as a number, fractions too, and nothing when absent", () => {
    expect(readSentAt(undefined)).toBeUndefined();
    expect(readSentAt(1736467200.123)).toBe(1736467200.123);
    expect(readSentAt(0.001)).toBe(0.001);
    expect(readSentAt(253_402_300_799)).toBe(253_402_300_799);
  });

  it.each([
    ["abc", /JSON number/],
    ["1736467200", /JSON number.*string "1736467200"/],
    ["2025-01-10T00:00:00Z", /JSON number/],
    [true, /JSON number/],
    [null, /JSON number.*null/],
    [[], /JSON number/],
    [{}, /JSON number/],
    [Number.NaN, /JSON number/],
    [Number.POSITIVE_INFINITY, /JSON number/],
    [0, /after 1970/],
    [-1, /after 1970/],
    [0.0004, /after 1970/],
    [1e300, /no later than 9999-12-31/],
    [253_402_300_800, /no later than 9999-12-31/],
    [1_736_467_200_000, /epoch seconds \(not milliseconds\)/],
  ])("refuses %j with INVALID_VALUE naming sentAt and what it got", (value, message) => {
    const e = errorOf(() => readSentAt(value));
    expect(e.code).toBe("INVALID_VALUE");
    expect(e.field).toBe("sentAt");
    expect(e.message).toMatch(/^sentAt must be /);
    expect(e.message).toMatch(message);
  });
});

describe("clockSkewOf and parseTimestamp with it", () => {
  it("moves every numeric ts by the sender's skew, keeping the records' spacing", () => {
    const sentAt = now / 1000 + 3 * day; // a clock 3 days fast
    expect(tsWith(sentAt, sentAt - 60.5)).toBe(now - 60_500);
    expect(tsWith(sentAt, sentAt)).toBe(now);
    const slow = now / 1000 - 365 * day;
    expect(tsWith(slow, slow - 30)).toBe(now - 30_000);
  });

  it("moves nothing within the tolerance or without sentAt", () => {
    expect(clockSkewOf((now + CLOCK_SKEW_TOLERANCE_MS - 1) / 1000, now)).toBeUndefined();
    expect(clockSkewOf((now - CLOCK_SKEW_TOLERANCE_MS) / 1000, now)).toBeUndefined();
    expect(clockSkewOf(undefined, now)).toBeUndefined();
    expect(clockSkewOf((now + CLOCK_SKEW_TOLERANCE_MS + 1) / 1000, now)).toEqual({
      sentAt: (now + CLOCK_SKEW_TOLERANCE_MS + 1) / 1000,
      ms: -(CLOCK_SKEW_TOLERANCE_MS + 1),
    });
  });

  it("leaves ISO-8601 ts alone, and judges junk ts as before", () => {
    const sentAt = now / 1000 - 365 * day;
    expect(tsWith(sentAt, "2024-01-01T00:00:00Z")).toBe(Date.parse("2024-01-01T00:00:00Z"));
    expect(tsWith(sentAt, "1704067200")).toBe(Date.parse("2024-01-01T00:00:00Z"));
    for (const junk of [true, null, "yesterday"]) {
      const e = errorOf(() => tsWith(sentAt, junk));
      expect(e).toMatchObject({ code: "INVALID_TIMESTAMP", field: "ts" });
      expect(e.message).not.toContain("sentAt");
    }
  });

  it("refuses a ts more than a day after sentAt, naming both (a record made after its batch was sent)", () => {
    const sentAt = 1_000_000_000; // 2001, a clock 24 years slow; the record's ts from a right one
    const e = errorOf(() => tsWith(sentAt, now / 1000 - 60));
    expect(e).toMatchObject({ code: "INVALID_TIMESTAMP", field: "ts" });
    expect(e.message).toContain("at most one day after the batch's sentAt (1000000000");
    expect(e.message).toContain(`got ${now / 1000 - 60}, ${now / 1000 - 60 - sentAt} s after it`);
    expect(tsWith(sentAt, sentAt + day - 60)).toBe(now + (day - 60) * 1000); // within a day after: kept
  });

  it("refuses a ts so long before sentAt that the server's clock puts it before 1970, naming both", () => {
    const sentAt = now / 1000 + 3 * day;
    const e = errorOf(() => tsWith(sentAt, 5));
    expect(e).toMatchObject({ code: "INVALID_TIMESTAMP", field: "ts" });
    expect(e.message).toMatch(
      /^ts is \d+ s before the batch's sentAt .*before 1970-01-01T00:00:00Z on the server's clock/,
    );
  });

  it("never refuses a ts of a valid sentAt's clock made up to 10 years before the send (property)", () => {
    const maxSentAt = 253_402_300_799;
    fc.assert(
      fc.property(
        fc.double({ min: 0.001, max: maxSentAt, noNaN: true }),
        fc.integer({ min: -10 * 365 * day, max: 0 }),
        (sentAt, offset) => {
          expect(readSentAt(sentAt)).toBe(sentAt);
          const ms = tsWith(sentAt, sentAt + offset);
          expect(ms).toBeGreaterThan(0);
          expect(ms).toBeLessThanOrEqual(now + CLOCK_SKEW_TOLERANCE_MS + 1);
        },
      ),
    );
  });
});
