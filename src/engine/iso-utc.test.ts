import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { toIsoUtc } from "./iso-utc.js";

const native = (ms: number) => new Date(ms).toISOString();

describe("toIsoUtc", () => {
  it("writes what Date#toISOString writes for every instant of years 1970–9999", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 253_402_300_799_999 }), (ms) => {
        expect(toIsoUtc(ms)).toBe(native(ms));
      }),
      { numRuns: 20_000 },
    );
  });

  it("gets the edges of days, months, leap days and centuries right", () => {
    const edges = [
      0,
      1,
      999,
      1000,
      86_399_999,
      86_400_000,
      Date.UTC(2000, 1, 29),
      Date.UTC(2000, 1, 29, 23, 59, 59, 999),
      Date.UTC(2000, 2, 1),
      Date.UTC(2100, 1, 28, 23, 59, 59, 999),
      Date.UTC(2100, 2, 1),
      Date.UTC(2024, 11, 31, 23, 59, 59, 999),
      Date.UTC(2025, 0, 1),
      Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    ];
    for (const ms of edges) expect(toIsoUtc(ms)).toBe(native(ms));
  });

  it("leaves instants outside that range, and fractions of a millisecond, to Date", () => {
    fc.assert(
      fc.property(fc.integer({ min: -8_640_000_000_000_000, max: 8_640_000_000_000_000 }), (ms) => {
        expect(toIsoUtc(ms)).toBe(native(ms));
      }),
    );
    for (const ms of [-1, 253_402_300_800_000, 1.5, 1_700_000_000_000.25]) expect(toIsoUtc(ms)).toBe(native(ms));
    expect(() => toIsoUtc(Number.NaN)).toThrow(RangeError);
  });
});
