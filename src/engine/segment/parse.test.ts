import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PortraitError } from "../errors.js";
import { ARB_PARSE_OPTIONS, arbConditionJson } from "./arbitrary.js";
import { type Condition, conditionToJson, type Json } from "./condition.js";
import { normalise, type ParseConditionOptions, parseCondition, referencedSegments } from "./parse.js";

const NOW = Date.UTC(2024, 10, 20, 12, 0, 0);
const TYPES: Record<string, "string" | "number" | "boolean" | "date" | "multi" | "object"> = {
  Plan: "string",
  Points: "number",
  Active: "boolean",
  Signup: "date",
  Tags: "multi",
  address: "object",
  "address.city": "string",
};
const OPTS: ParseConditionOptions = {
  timezone: "Europe/Paris",
  now: NOW,
  types: (p) => TYPES[p],
  eventTypes: (e, p) => (e === "Charged" && p === "Amount" ? "number" : undefined),
};

const parse = (input: unknown, opts: Partial<ParseConditionOptions> = {}) =>
  parseCondition(input, { ...OPTS, ...opts });

function errorOf(fn: () => unknown): PortraitError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PortraitError) return e;
    throw e;
  }
  throw new Error("expected a PortraitError, nothing was thrown");
}

const utc = (iso: string) => Date.parse(iso);

function nest(depth: number): Json {
  let c: Json = { type: "customer" };
  for (let i = 1; i < depth; i++) c = { not: c };
  return c;
}

describe("parseCondition: refusals name the JSON path of the fault", () => {
  const cases: Array<[string, unknown, string]> = [
    ["null", null, "where"],
    ["an array", [], "where"],
    ["a string", "Plan = pro", "where"],
    ["an empty object", {}, "where"],
    ["an unknown root key", { foo: 1 }, "where.foo"],
    ["two kinds in one object", { all: [], any: [] }, "where.any"],
    ["property and system together", { property: "Plan", system: "city", op: "exists" }, "where.system"],
    ["all that is not an array", { all: {} }, "where.all"],
    ["101 children", { all: Array.from({ length: 101 }, () => ({ test: true })) }, "where.all"],
    ["depth 11", nest(11), `where${".not".repeat(10)}`],
    ["not of a number", { not: 5 }, "where.not"],
    ["an extra key on a property condition", { property: "Plan", op: "eq", value: "x", extra: 1 }, "where.extra"],
    ["an empty path", { property: "", op: "exists" }, "where.property"],
    ["an empty path segment", { property: "a..b", op: "exists" }, "where.property"],
    ["a 121-character segment", { property: "x".repeat(121), op: "exists" }, "where.property"],
    ["a path that is not a string", { property: 5, op: "exists" }, "where.property"],
    ["an unknown op", { property: "Plan", op: "like", value: "x" }, "where.op"],
    ["a missing op", { property: "Plan" }, "where.op"],
    ["a missing value", { property: "Plan", op: "eq" }, "where.value"],
    ["a value on exists", { property: "Plan", op: "exists", value: 1 }, "where.value"],
    ["a value on notExists", { property: "Plan", op: "notExists", value: null }, "where.value"],
    ["in without an array", { property: "Plan", op: "in", value: "pro" }, "where.value"],
    [
      "in with 1001 values",
      { property: "Plan", op: "in", value: Array.from({ length: 1001 }, (_, i) => `v${i}`) },
      "where.value",
    ],
    ["an in element of a wrong type", { property: "X", op: "in", value: [1, null] }, "where.value[1]"],
    ["between with one value", { property: "Points", op: "between", value: [1] }, "where.value"],
    ["between high below low", { property: "Points", op: "between", value: [5, 1] }, "where.value"],
    ["between mixing a number and a date", { property: "X", op: "between", value: [1, "2024-01-01"] }, "where.value"],
    ["gt with a string on a number key", { property: "Points", op: "gt", value: "abc" }, "where.value"],
    ["gt with a number on a string key", { property: "Plan", op: "gt", value: 5 }, "where.value"],
    ["between mixing a number and a string", { property: "X", op: "between", value: [1, "abc"] }, "where.value"],
    ["between of strings high below low", { property: "Plan", op: "between", value: ["b", "a"] }, "where.value"],
    // By code point U+1D4AB comes after U+FF5A, though its UTF-16 units (D835 DCAB) come before.
    ["between of strings in UTF-16 order only", { property: "Plan", op: "between", value: ["𝒫", "ｚ"] }, "where.value"],
    ["gt with a boolean", { property: "X", op: "gt", value: true }, "where.value"],
    ["eq with a number on a date key", { property: "Signup", op: "eq", value: 5 }, "where.value"],
    ["eq with a string on a boolean key", { property: "Active", op: "eq", value: "true" }, "where.value"],
    [
      "eq with a number on a string key",
      { all: [{ test: true }, { test: false }, { property: "Plan", op: "eq", value: 1 }] },
      "where.all[2].value",
    ],
    ["eq with null", { property: "X", op: "eq", value: null }, "where.value"],
    ["eq with an object", { property: "X", op: "eq", value: { a: 1 } }, "where.value"],
    ["contains with a number", { property: "Plan", op: "contains", value: 5 }, "where.value"],
    ["contains on a number key", { property: "Points", op: "contains", value: "5" }, "where.op"],
    ["eq on an object key", { property: "address", op: "eq", value: "x" }, "where.op"],
    ["before on a boolean key", { property: "Active", op: "before", value: "2024-01-01" }, "where.op"],
    [
      "an ordering number on a multi key",
      { any: [{ type: "customer" }, { not: { property: "Tags", op: "gt", value: 5 } }] },
      "where.any[1].not.value",
    ],
    ["withinLast -1 days", { property: "Signup", op: "withinLast", value: { days: -1 } }, "where.value.days"],
    ["withinLast 36501 days", { property: "Signup", op: "withinLast", value: { days: 36501 } }, "where.value.days"],
    [
      "withinLast with an extra key",
      { property: "Signup", op: "withinLast", value: { days: 7, hours: 1 } },
      "where.value.hours",
    ],
    ["withinLast as a number", { property: "Signup", op: "withinLast", value: 7 }, "where.value"],
    ["before a word", { property: "Signup", op: "before", value: "yesterday" }, "where.value"],
    ["before month 13", { property: "Signup", op: "before", value: "2024-13-01" }, "where.value"],
    ["a malformed $D_", { property: "Signup", op: "before", value: "$D_abc" }, "where.value"],
    [
      "a {$date} object (not in the grammar)",
      { property: "Signup", op: "before", value: { $date: "2024-01-01" } },
      "where.value",
    ],
    ["an unknown system field", { system: "updatedAt", op: "exists" }, "where.system"],
    ["compartment on a system condition", { system: "city", compartment: "1", op: "exists" }, "where.compartment"],
    ["a numeric compartment", { property: "x", compartment: 1606, op: "exists" }, "where.compartment"],
    ["an empty event name", { did: "" }, "where.did"],
    ["a blank event name", { didNot: "  " }, "where.didNot"],
    ["didAny with no names", { didAny: [] }, "where.didAny"],
    ["didAny with a number", { didAny: ["a", 5] }, "where.didAny[1]"],
    ["did and didNot together", { did: "X", didNot: "Y" }, "where.didNot"],
    ["a non-integer count", { did: "X", count: { op: "gte", value: 1.5 } }, "where.count.value"],
    ["a negative count", { did: "X", count: { op: "gte", value: -1 } }, "where.count.value"],
    ["count with between", { did: "X", count: { op: "between", value: 1 } }, "where.count.op"],
    ["count with an extra key", { did: "X", count: { op: "eq", value: 1, of: "X" } }, "where.count.of"],
    ["withinLast and from in one window", { did: "X", withinLast: { days: 7 }, from: "2024-11-01" }, "where.from"],
    ["to without from", { did: "X", to: "2024-11-01" }, "where.from"],
    ["to before from", { did: "X", from: "2024-11-30", to: "2024-11-01" }, "where.to"],
    ["a window object (not inline)", { did: "X", window: { withinLast: { days: 7 } } }, "where.window"],
    ["a from that is not a date", { did: "X", from: 1732000000 }, "where.from"],
    ["where that is not an array", { did: "X", where: {} }, "where.where"],
    [
      "compartment inside where",
      { did: "X", where: [{ property: "Amount", compartment: "1", op: "exists" }] },
      "where.where[0].compartment",
    ],
    ["system inside where", { did: "X", where: [{ system: "city", op: "exists" }] }, "where.where[0].system"],
    [
      "a wrong-typed event property value",
      { did: "Charged", where: [{ property: "Amount", op: "gt", value: "big" }] },
      "where.where[0].value",
    ],
    ["an empty firstTime", { did: "X", firstTime: {} }, "where.firstTime"],
    ["firstTime with an unknown key", { did: "X", firstTime: { days: 7 } }, "where.firstTime.days"],
    [
      "lastTime withinLast of a string",
      { did: "X", lastTime: { withinLast: { days: "7" } } },
      "where.lastTime.withinLast.days",
    ],
    ["sum with in", { did: "X", sum: { property: "Amount", op: "in", value: [1] } }, "where.sum.op"],
    [
      "sum between with a string",
      { did: "X", sum: { property: "Amount", op: "between", value: [1, "2"] } },
      "where.sum.value",
    ],
    ["avg without a value", { did: "X", avg: { property: "Amount", op: "gt" } }, "where.avg.value"],
    ["avg without a property", { did: "X", avg: { op: "gt", value: 1 } }, "where.avg.property"],
    ["an unknown type", { type: "vip" }, "where.type"],
    ["test as a string", { test: "yes" }, "where.test"],
    ["controlGroupExcluded as a number", { controlGroupExcluded: 1 }, "where.controlGroupExcluded"],
    ["an unknown channel", { reachableBy: "fax" }, "where.reachableBy"],
    ["bucket to 1000", { bucket: { from: 0, to: 1000 } }, "where.bucket.to"],
    ["bucket from above to", { bucket: { from: 10, to: 5 } }, "where.bucket.to"],
    ["a fractional bucket", { bucket: { from: 0.5, to: 5 } }, "where.bucket.from"],
    ["a bucket without to", { bucket: { from: 0 } }, "where.bucket.to"],
    ["an empty inSegment id", { inSegment: "" }, "where.inSegment"],
    ["inSegment with an extra key", { inSegment: "s", name: "x" }, "where.name"],
    ["type with an extra key", { type: "customer", test: true }, "where.test"],
  ];

  it.each(cases)("refuses %s", (_what, input, field) => {
    const e = errorOf(() => parse(input));
    expect(e.code).toBe("INVALID_SEGMENT");
    expect(e.field).toBe(field);
    expect(e.message.length).toBeGreaterThan(10);
  });

  it("names the unknown key in the sentence", () => {
    const e = errorOf(() => parse({ property: "Plan", op: "exists", colour: "red" }));
    expect(e.message).toContain('"colour"');
    expect(e.field).toBe("where.colour");
  });

  it("names the key, its type and the operator for a wrong-typed value", () => {
    const e = errorOf(() => parse({ property: "Points", op: "gt", value: "abc" }));
    expect(e.message).toMatch(/Points.*number/);
    expect(e.message).toContain("gt");
  });

  it("prefixes fields with the root option", () => {
    expect(errorOf(() => parse({ foo: 1 }, { root: "body.where" })).field).toBe("body.where.foo");
    expect(errorOf(() => parse({ all: [5] }, { root: "" })).field).toBe("all[0]");
  });

  it("allows depth 10 and 100 children", () => {
    expect(() => parse(nest(10))).not.toThrow();
    expect(() => parse({ any: Array.from({ length: 100 }, () => ({ test: true })) })).not.toThrow();
    expect(() => parse({ property: "X", op: "in", value: Array.from({ length: 1000 }, (_, i) => i) })).not.toThrow();
  });
});

describe("parseCondition: the grammar's examples", () => {
  const examples: Json[] = [
    { all: [] },
    { any: [] },
    { not: { test: true } },
    { property: "Age", op: "between", value: [25, 30] },
    { property: "newsletter_options.subscribed", compartment: "1606", op: "eq", value: true },
    {
      did: "Charged",
      count: { op: "gte", value: 2 },
      withinLast: { days: 30 },
      where: [{ property: "Amount", op: "gt", value: 100 }],
    },
    { didNot: "App Uninstalled" },
    { didAny: ["Product Viewed", "Added To Cart"], from: "2024-11-01", to: "2024-11-30" },
    { did: "Charged", firstTime: { withinLast: { days: 7 } } },
    { did: "Charged", sum: { property: "Amount", op: "gte", value: 500 } },
    { type: "customer" },
    { test: true },
    { reachableBy: "email" },
    { bucket: { from: 0, to: 99 } },
    { inSegment: "seg-1" },
    { system: "city", op: "eq", value: "Paris" },
  ];
  it.each(examples.map((e) => [JSON.stringify(e), e]))("accepts %s and prints it back", (_s, e) => {
    expect(conditionToJson(parse(e))).toEqual(e);
  });

  it("builds the typed tree", () => {
    expect(parse({ property: "address.city", op: "eq", value: "Paris" })).toEqual({
      kind: "property",
      target: { source: "profile", path: ["address", "city"] },
      op: "eq",
      value: { kind: "string", value: "Paris" },
    });
    expect(parse({ didAny: ["A", "B"], count: { op: "lt", value: 3 } })).toEqual({
      kind: "behaviour",
      mode: "didAny",
      events: ["A", "B"],
      count: { op: "lt", value: 3 },
    });
  });
});

describe("parseCondition: dates", () => {
  const dateOf = (c: Condition) => {
    if (c.kind !== "property" || !("value" in c) || Array.isArray(c.value) || !("kind" in c.value)) {
      throw new Error("no literal");
    }
    return c.value;
  };

  it("resolves a date-only value to its whole day in the account timezone", () => {
    const d = dateOf(parse({ property: "Signup", op: "before", value: "2024-11-19" }));
    expect(d).toEqual({
      kind: "date",
      text: "2024-11-19",
      start: utc("2024-11-18T23:00:00Z"),
      end: utc("2024-11-19T23:00:00Z") - 1,
      dateOnly: true,
    });
    const inUtc = dateOf(parse({ property: "Signup", op: "before", value: "2024-11-19" }, { timezone: "UTC" }));
    expect(inUtc).toMatchObject({ start: utc("2024-11-19T00:00:00Z"), end: utc("2024-11-20T00:00:00Z") - 1 });
  });

  it("gives a DST day its 25 hours", () => {
    const d = dateOf(parse({ property: "Signup", op: "after", value: "2024-10-27" }));
    expect(d).toMatchObject({ start: utc("2024-10-26T22:00:00Z"), end: utc("2024-10-27T23:00:00Z") - 1 });
  });

  it("reads offset-less date-times in the account timezone and keeps instants as instants", () => {
    expect(dateOf(parse({ property: "Signup", op: "gt", value: "2024-11-19T10:00:00" }))).toMatchObject({
      start: utc("2024-11-19T09:00:00Z"),
      end: utc("2024-11-19T09:00:00Z"),
      dateOnly: false,
    });
    expect(dateOf(parse({ property: "Signup", op: "gt", value: "2024-11-19T10:00:00Z" }))).toMatchObject({
      start: utc("2024-11-19T10:00:00Z"),
      end: utc("2024-11-19T10:00:00Z"),
    });
    expect(dateOf(parse({ property: "Signup", op: "lt", value: "$D_1732000000" }))).toMatchObject({
      start: 1_732_000_000_000,
      end: 1_732_000_000_000,
    });
  });

  it("makes `to` inclusive through the end of its day", () => {
    const c = parse({ did: "X", from: "2024-11-01", to: "2024-11-30" });
    if (c.kind !== "behaviour" || c.window?.kind !== "range") throw new Error("no range");
    expect(c.window.from.start).toBe(utc("2024-10-31T23:00:00Z"));
    expect(c.window.to?.end).toBe(utc("2024-11-30T23:00:00Z") - 1);
  });

  it("decides string or date by the key's type and the operator", () => {
    const lit = (input: Json, opts: Partial<ParseConditionOptions> = {}) => dateOf(parse(input, opts)).kind;
    expect(lit({ property: "Signup", op: "eq", value: "2024-11-01" })).toBe("date");
    expect(lit({ property: "Plan", op: "eq", value: "2024-11-01" })).toBe("string");
    expect(lit({ property: "Unregistered", op: "eq", value: "2024-11-01" })).toBe("string");
    expect(lit({ property: "Unregistered", op: "gt", value: "2024-11-01" })).toBe("date");
    expect(lit({ property: "Unregistered", op: "gt", value: 5 })).toBe("number");
    expect(lit({ property: "Unregistered", op: "gt", value: "abc" })).toBe("string");
    expect(lit({ property: "Plan", op: "gt", value: "2024-11-01" })).toBe("string");
    expect(lit({ property: "Plan", op: "before", value: "2024-11-01" })).toBe("date");
    expect(lit({ property: "Tags", op: "lt", value: "z" })).toBe("string");
    expect(lit({ property: "Signup", op: "gt", value: "2024-11-01" })).toBe("date");
    expect(lit({ system: "city", op: "gte", value: "2024-11-01" })).toBe("string");
    expect(lit({ property: "x", compartment: "1", op: "gt", value: "2024-11-01" })).toBe("date");
    expect(lit({ property: "x", compartment: "1", op: "gt", value: "A" })).toBe("string");
    expect(lit({ property: "DOB", op: "eq", value: "2000-01-01" }, { types: undefined })).toBe("date");
    expect(lit({ system: "createdAt", op: "eq", value: "2024-11-01" })).toBe("date");
    expect(lit({ system: "city", op: "eq", value: "2024-11-01" })).toBe("string");
    expect(lit({ property: "x", compartment: "1", op: "eq", value: "2024-11-01" })).toBe("string");
  });

  it("checks built-in types without a registry", () => {
    expect(errorOf(() => parse({ property: "Age", op: "eq", value: "27" }, { types: undefined })).field).toBe(
      "where.value",
    );
    expect(errorOf(() => parse({ property: "MSG-email", op: "eq", value: 1 }, { types: undefined })).field).toBe(
      "where.value",
    );
    expect(errorOf(() => parse({ system: "lastSeen", op: "gt", value: 5 })).field).toBe("where.value");
  });

  it("accepts a value that suits one of a didAny's registries", () => {
    const eventTypes = (e: string, p: string) =>
      p === "Price" ? (e === "A" ? "number" : e === "B" ? "string" : undefined) : undefined;
    expect(() =>
      parse({ didAny: ["A", "B"], where: [{ property: "Price", op: "eq", value: "cheap" }] }, { eventTypes }),
    ).not.toThrow();
    expect(() =>
      parse({ didAny: ["A", "C"], where: [{ property: "Price", op: "eq", value: 5 }] }, { eventTypes }),
    ).not.toThrow();
    expect(
      errorOf(() => parse({ didAny: ["A"], where: [{ property: "Price", op: "eq", value: "cheap" }] }, { eventTypes }))
        .field,
    ).toBe("where.where[0].value");
  });
});

describe("referencedSegments and normalise", () => {
  it("lists inSegment ids once, in order", () => {
    const c = parse({
      all: [{ inSegment: "b" }, { not: { any: [{ inSegment: "a" }, { inSegment: "b" }] } }, { test: true }],
    });
    expect(referencedSegments(c)).toEqual(["b", "a"]);
    expect(referencedSegments(parse({ test: true }))).toEqual([]);
  });

  it("spells didNot as not(did) with the same fields", () => {
    const c = parse({ didNot: "Charged", withinLast: { days: 7 }, count: { op: "gte", value: 2 } });
    expect(normalise(c)).toEqual({
      kind: "not",
      not: {
        kind: "behaviour",
        mode: "did",
        events: ["Charged"],
        count: { op: "gte", value: 2 },
        window: { kind: "withinLast", days: 7 },
      },
    });
  });

  it("spells negative operators as not of the positive one", () => {
    const pairs: Array<[Json, Json]> = [
      [{ property: "Plan", op: "neq", value: "pro" }, { not: { property: "Plan", op: "eq", value: "pro" } }],
      [{ property: "Plan", op: "notIn", value: ["a"] }, { not: { property: "Plan", op: "in", value: ["a"] } }],
      [{ property: "Plan", op: "notContains", value: "p" }, { not: { property: "Plan", op: "contains", value: "p" } }],
      [{ system: "city", op: "notExists" }, { not: { system: "city", op: "exists" } }],
      [{ any: [{ didNot: "A" }] }, { any: [{ not: { did: "A" } }] }],
    ];
    for (const [input, expected] of pairs) expect(conditionToJson(normalise(parse(input)))).toEqual(expected);
    const positive = parse({ property: "Plan", op: "eq", value: "pro" });
    expect(normalise(positive)).toEqual(positive);
  });
});

describe("parseCondition: generated conditions (property c)", () => {
  it("accepts every generated condition and prints it back unchanged", () => {
    fc.assert(
      fc.property(arbConditionJson(), (json) => {
        const c = parseCondition(JSON.parse(JSON.stringify(json)), ARB_PARSE_OPTIONS);
        expect(conditionToJson(c)).toEqual(json);
      }),
      { numRuns: 500 },
    );
  });

  it("round-trips a parsed tree through JSON: parse(JSON(parse(x))) = parse(x)", () => {
    fc.assert(
      fc.property(arbConditionJson({ maxDepth: 10 }), (json) => {
        const c = parseCondition(json, ARB_PARSE_OPTIONS);
        const again = parseCondition(JSON.parse(JSON.stringify(conditionToJson(c))), ARB_PARSE_OPTIONS);
        expect(again).toEqual(c);
        expect(JSON.parse(JSON.stringify(c))).toEqual(c);
      }),
      { numRuns: 300 },
    );
  });
});
