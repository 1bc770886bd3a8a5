import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PortraitError } from "../errors.js";
import { parseEventProperties, parseTimestamp, RESERVED_EVENT_NAMES, validateEventName } from "./event-properties.js";

function errorOf(fn: () => unknown): PortraitError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PortraitError) return e;
    throw e;
  }
  throw new Error("expected a PortraitError, nothing was thrown");
}

const tz = { timezone: "UTC" };
const NOW = Date.parse("2024-11-20T12:00:00Z");

function refuse(name: string, input: unknown, code: string, field: string | undefined, ...fragments: string[]) {
  const e = errorOf(() => parseEventProperties(name, input, tz));
  expect(e.code).toBe(code);
  expect(e.field).toBe(field);
  for (const f of fragments) expect(e.message).toContain(f);
}

describe("validateEventName", () => {
  it.each(["Product Viewed", "App Launched", "Charged", "x", "é".repeat(120), "a.b:c$"])("accepts %j", (name) => {
    expect(validateEventName(name)).toBe(name);
  });

  it.each(["", "   ", "x".repeat(121), "tab\tname", 5, null, undefined, ["Charged"]])(
    "refuses %j with INVALID_EVENT_NAME",
    (name) => {
      const e = errorOf(() => validateEventName(name));
      expect(e.code).toBe("INVALID_EVENT_NAME");
      expect(e.field).toBeUndefined();
      expect(e.message).toContain("Event name");
    },
  );

  it("refuses the four reserved names, and only those", () => {
    expect([...RESERVED_EVENT_NAMES].sort()).toEqual([
      "Identity Error",
      "Identity Set",
      "Profile Demerged",
      "Profile Merged",
    ]);
    for (const name of RESERVED_EVENT_NAMES) {
      const e = errorOf(() => validateEventName(name));
      expect(e.code).toBe("RESERVED_EVENT_NAME");
      expect(e.message).toContain(JSON.stringify(name));
    }
    expect(validateEventName("identity set")).toBe("identity set");
  });

  it("trims white space at both ends before the reserved names are recognised, and returns the trimmed name", () => {
    for (const name of [" Identity Set", "Identity Set ", "\tProfile Merged\u00a0"]) {
      expect(errorOf(() => validateEventName(name)).code).toBe("RESERVED_EVENT_NAME");
    }
    expect(validateEventName(" Charged ")).toBe("Charged");
    expect(validateEventName("  Product  Viewed ")).toBe("Product  Viewed");
    expect(validateEventName(` ${"x".repeat(120)} `)).toBe("x".repeat(120));
    expect(errorOf(() => validateEventName(" \t ")).code).toBe("INVALID_EVENT_NAME");
  });
});

describe("parseTimestamp", () => {
  it("defaults to now", () => {
    expect(parseTimestamp(undefined, NOW, "ts")).toBe(NOW);
  });

  it("reads epoch seconds, keeping fractions to the millisecond", () => {
    expect(parseTimestamp(1732000000, NOW, "ts")).toBe(1_732_000_000_000);
    expect(parseTimestamp(1732000000.123, NOW, "ts")).toBe(1_732_000_000_123);
    expect(parseTimestamp("1732000000", NOW, "ts")).toBe(1_732_000_000_000);
    expect(parseTimestamp("1732000000.5", NOW, "ts")).toBe(1_732_000_000_500);
  });

  it("reads a ts string as every date text is read: YYYYMMDD is a day in the timezone, not seconds of 1970", () => {
    expect(parseTimestamp("20241120", NOW, "ts", "Europe/Paris")).toBe(Date.parse("2024-11-19T23:00:00Z"));
    expect(parseTimestamp(" 1732000000 ", NOW, "ts")).toBe(1_732_000_000_000);
    for (const v of ["12345", "99999999", "01732000000", "-5", "1.5"]) {
      expect(errorOf(() => parseTimestamp(v, NOW, "ts")).code, v).toBe("INVALID_TIMESTAMP");
    }
    // A number is epoch seconds, however small.
    expect(parseTimestamp(12345, NOW, "ts")).toBe(12_345_000);
  });

  it("reads ISO-8601, offset-less in the given timezone (UTC by default)", () => {
    expect(parseTimestamp("2024-11-20T10:00:00Z", NOW, "ts")).toBe(Date.parse("2024-11-20T10:00:00Z"));
    expect(parseTimestamp("2024-11-20T10:00:00.250+01:00", NOW, "ts")).toBe(Date.parse("2024-11-20T09:00:00.250Z"));
    expect(parseTimestamp("2024-11-20T10:00:00", NOW, "ts")).toBe(Date.parse("2024-11-20T10:00:00Z"));
    expect(parseTimestamp("2024-11-20T10:00:00", NOW, "ts", "Europe/Paris")).toBe(Date.parse("2024-11-20T09:00:00Z"));
  });

  it("allows up to one day in the future, not more", () => {
    expect(parseTimestamp((NOW + 86_400_000) / 1000, NOW, "ts")).toBe(NOW + 86_400_000);
    const e = errorOf(() => parseTimestamp((NOW + 86_401_000) / 1000, NOW, "records[0].ts"));
    expect(e.code).toBe("INVALID_TIMESTAMP");
    expect(e.field).toBe("records[0].ts");
    expect(e.message).toContain("one day in the future");
  });

  it("refuses milliseconds sent as seconds", () => {
    expect(errorOf(() => parseTimestamp(NOW, NOW, "ts")).message).toContain("not milliseconds");
  });

  it.each([0, -5, "1969-12-31T23:59:59Z", "0"])("refuses %j, which is not after 1970", (v) => {
    const e = errorOf(() => parseTimestamp(v, NOW, "ts"));
    expect(e.code).toBe("INVALID_TIMESTAMP");
    expect(e.field).toBe("ts");
  });

  it.each([
    null,
    "yesterday",
    "",
    "2024-02-30T00:00:00Z",
    Number.NaN,
    Number.POSITIVE_INFINITY,
    true,
    {},
    "$D_1732000000",
  ])("refuses %j with INVALID_TIMESTAMP", (v) => {
    const e = errorOf(() => parseTimestamp(v, NOW, "ts"));
    expect(e.code).toBe("INVALID_TIMESTAMP");
    expect(e.field).toBe("ts");
    expect(e.message).toContain("ts must be");
  });

  it("accepts every whole second in (0, now + 1 day] (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: NOW / 1000 + 86_400 }), (s) => {
        expect(parseTimestamp(s, NOW, "ts")).toBe(s * 1000);
        expect(parseTimestamp(new Date(s * 1000).toISOString(), NOW, "ts")).toBe(s * 1000);
      }),
    );
  });
});

describe("parseEventProperties", () => {
  it("keeps scalars and turns dates into ISO-8601 UTC strings", () => {
    expect(
      parseEventProperties(
        "Product Viewed",
        { Product: "Shoe", Price: 59.9, New: true, At: "$D_1732000000", Day: { $date: "2024-11-20" }, Zero: -0 },
        { timezone: "Europe/Paris" },
      ),
    ).toEqual({
      Product: "Shoe",
      Price: 59.9,
      New: true,
      At: "2024-11-19T07:06:40.000Z",
      Day: "2024-11-19T23:00:00.000Z",
      Zero: 0,
    });
  });

  it("accepts absent or empty properties", () => {
    expect(parseEventProperties("x", undefined, tz)).toEqual({});
    expect(parseEventProperties("x", {}, tz)).toEqual({});
  });

  it.each([null, [], "x", 1])("refuses %j as properties with INVALID_RECORD", (input) => {
    refuse("x", input, "INVALID_RECORD", undefined, "JSON object");
  });

  it("refuses non-scalars, null, long strings and non-finite numbers", () => {
    refuse("Charged", { Tags: ["a"] }, "TYPE_MISMATCH", "Tags", "only Charged");
    refuse("View", { Tags: ["a"] }, "TYPE_MISMATCH", "Tags", '"Tags"', "string, number, boolean or date", "array");
    refuse("View", { Obj: { a: 1 } }, "TYPE_MISMATCH", "Obj", "object");
    refuse("View", { N: null }, "TYPE_MISMATCH", "N", "null");
    refuse("View", { S: "x".repeat(513) }, "VALUE_TOO_LONG", "S", "512");
    refuse("View", { P: Number.NaN }, "INVALID_VALUE", "P", "finite");
    refuse("View", { D: "$D_x" }, "INVALID_DATE", "D");
  });

  it("validates keys and allows at most 256 of them", () => {
    refuse("View", { "a.b": 1 }, "INVALID_KEY", "a.b");
    const many = Object.fromEntries(Array.from({ length: 256 }, (_, i) => [`k${i}`, i]));
    expect(Object.keys(parseEventProperties("View", many, tz))).toHaveLength(256);
    refuse("View", { ...many, extra: 1 }, "TOO_MANY_PROPERTIES", undefined, "256", "257");
  });

  it("allows Items only on Charged", () => {
    refuse("Added To Cart", { Items: [{ a: 1 }] }, "TYPE_MISMATCH", "Items");
  });
});

describe("Charged", () => {
  it("accepts Amount, Payment Mode, Charged ID and Items", () => {
    expect(
      parseEventProperties(
        "Charged",
        {
          Amount: 118.5,
          "Payment Mode": "card",
          "Charged ID": 9001,
          Items: [
            { Name: "Shoe", Price: 59.9, Qty: 1, Gift: false },
            { Name: "Sock", When: "$D_1732000000" },
          ],
        },
        tz,
      ),
    ).toEqual({
      Amount: 118.5,
      "Payment Mode": "card",
      "Charged ID": "9001",
      Items: [
        { Name: "Shoe", Price: 59.9, Qty: 1, Gift: false },
        { Name: "Sock", When: "2024-11-19T07:06:40.000Z" },
      ],
    });
  });

  it("Amount is optional; when present a finite number >= 0", () => {
    expect(parseEventProperties("Charged", { Amount: 0 }, tz)).toEqual({ Amount: 0 });
    expect(parseEventProperties("Charged", {}, tz)).toEqual({});
    for (const bad of [-1, "10", null, Number.NaN, Number.POSITIVE_INFINITY, true]) {
      refuse("Charged", { Amount: bad }, "INVALID_VALUE", "Amount", '"Amount"', ">= 0");
    }
    // Only Charged gives Amount a rule.
    expect(parseEventProperties("Refund", { Amount: -5 }, tz)).toEqual({ Amount: -5 });
  });

  it("Charged ID is a non-empty string or a whole number, kept as a string", () => {
    expect(parseEventProperties("Charged", { "Charged ID": "ord-1" }, tz)).toEqual({ "Charged ID": "ord-1" });
    for (const bad of ["", "  ", 1.5, true, null, "x".repeat(513), ["a"]]) {
      refuse("Charged", { "Charged ID": bad }, "INVALID_VALUE", "Charged ID", '"Charged ID"');
    }
  });

  it("Items is an array of at most 100 flat objects of scalars", () => {
    const item = { Name: "x" };
    expect((parseEventProperties("Charged", { Items: Array(100).fill(item) }, tz).Items as unknown[]).length).toBe(100);
    expect(parseEventProperties("Charged", { Items: [] }, tz)).toEqual({ Items: [] });
    refuse("Charged", { Items: Array(101).fill(item) }, "TOO_MANY_VALUES", "Items", "100", "101");
    refuse("Charged", { Items: "Shoe" }, "TYPE_MISMATCH", "Items", "array of objects");
    refuse("Charged", { Items: [item, "Shoe"] }, "TYPE_MISMATCH", "Items[1]");
    refuse("Charged", { Items: [{ Tags: ["a"] }] }, "TYPE_MISMATCH", "Items[0].Tags", "flat objects");
    refuse("Charged", { Items: [{ Nested: { a: 1 } }] }, "TYPE_MISMATCH", "Items[0].Nested");
    refuse("Charged", { Items: [{ Price: null }] }, "TYPE_MISMATCH", "Items[0].Price");
    refuse("Charged", { Items: [{ "a.b": 1 }] }, "INVALID_KEY", "Items[0].a.b");
    refuse("Charged", { Items: [{ S: "x".repeat(513) }] }, "VALUE_TOO_LONG", "Items[0].S");
    const wide = Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`k${i}`, i]));
    refuse("Charged", { Items: [wide] }, "TOO_MANY_PROPERTIES", "Items[0]");
  });

  it("never throws anything but a PortraitError, whatever the JSON (property)", () => {
    fc.assert(
      fc.property(fc.constantFrom("Charged", "View"), fc.jsonValue({ maxDepth: 4 }), (name, input) => {
        try {
          parseEventProperties(name, input, tz);
        } catch (e) {
          expect(e).toBeInstanceOf(PortraitError);
        }
      }),
    );
  });
});
