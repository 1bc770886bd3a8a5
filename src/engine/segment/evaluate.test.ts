import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PortraitError } from "../errors.js";
import { newProfileState } from "../profile.js";
import type { JsonValue, ProfileDocument, StoredEvent, StoredValue, ValueType } from "../types.js";
import {
  ARB_NOW,
  ARB_PARSE_OPTIONS,
  ARB_SEGMENTS,
  arbBehaviourJson,
  arbConditionJson,
  arbContext,
  arbPropertyJson,
  arbSubject,
} from "./arbitrary.js";
import { type Condition, type Json, NEGATIVE_OPS } from "./condition.js";
import { type EvaluateContext, evaluate, isMember, type Subject } from "./evaluate.js";
import { normalise, type ParseConditionOptions, parseCondition } from "./parse.js";

const NOW = Date.UTC(2024, 10, 20, 12, 0, 0); // 13:00 in Paris
const TZ = "Europe/Paris";
const DAY = 86_400_000;
const utc = (iso: string) => Date.parse(iso);

const TYPES: Record<string, ValueType> = {
  Plan: "string",
  Points: "number",
  Active: "boolean",
  Signup: "date",
  Tags: "multi",
  address: "object",
  "address.city": "string",
  "address.zip": "number",
  "address.geo": "object",
  "address.geo.lat": "number",
};

interface Fixture {
  props?: Record<string, StoredValue | { v?: StoredValue; t?: ValueType }>;
  events?: Array<[name: string, ts: number, properties?: StoredEvent["properties"]]>;
  documents?: Array<[compartmentId: string, body: { [key: string]: JsonValue }]>;
  devices?: Array<{ pushToken: string | null }>;
  patch?: Partial<Subject["state"]>;
}

function typeOf(key: string, v: StoredValue): ValueType {
  if (TYPES[key]) return TYPES[key];
  if (key === "DOB") return "date";
  if (Array.isArray(v)) return "multi";
  return typeof v === "object" ? "object" : (typeof v as ValueType);
}

function subject(f: Fixture = {}): Subject {
  const state = { ...newProfileState("a".repeat(32), NOW - 100 * DAY, 417), ...f.patch };
  for (const [key, raw] of Object.entries(f.props ?? {})) {
    const isEntry = typeof raw === "object" && raw !== null && !Array.isArray(raw) && ("v" in raw || "t" in raw);
    const v = isEntry ? (raw as { v?: StoredValue }).v : (raw as StoredValue);
    const t = isEntry ? (raw as { t?: ValueType }).t : typeOf(key, v as StoredValue);
    state.props[key] = v === undefined ? { ts: 1 } : { v, t, ts: 1 };
  }
  const events: StoredEvent[] = (f.events ?? []).map(([name, ts, properties = {}], i) => ({
    seq: i + 1,
    profileId: state.id,
    id: `e${i}`,
    name,
    ts,
    properties,
    deviceId: null,
    platform: null,
  }));
  const documents: ProfileDocument[] = (f.documents ?? []).map(([compartmentId, body], i) => ({
    profileId: state.id,
    compartmentId,
    userAccountId: `u${i}`,
    body,
    createdAt: NOW,
    updatedAt: NOW,
  }));
  return { state, events, documents, devices: f.devices ?? [] };
}

const OPTS: ParseConditionOptions = { timezone: TZ, now: NOW, types: (p) => TYPES[p] };

function ctxWith(segments: Record<string, Json> = {}, over: Partial<EvaluateContext> = {}): EvaluateContext {
  const parsed = new Map(Object.entries(segments).map(([id, j]) => [id, parseCondition(j, OPTS)]));
  return { now: NOW, timezone: TZ, segment: (id) => parsed.get(id), ...over };
}

function check(
  where: Json,
  s: Subject,
  over: Partial<EvaluateContext> = {},
  opts: Partial<ParseConditionOptions> = {},
) {
  return evaluate(parseCondition(where, { ...OPTS, ...opts }), s, ctxWith({}, over));
}

const prop = (property: string, op: string, value?: Json): Json =>
  value === undefined ? { property, op } : { property, op, value };

describe("strings", () => {
  const s = subject({ props: { Plan: "Pro plus", Name: "Zoë" } });
  it("eq/neq/in/notIn are exact and case-sensitive", () => {
    expect(check(prop("Plan", "eq", "Pro plus"), s)).toBe(true);
    expect(check(prop("Plan", "eq", "pro plus"), s)).toBe(false);
    expect(check(prop("Plan", "neq", "pro plus"), s)).toBe(true);
    expect(check(prop("Plan", "in", ["x", "Pro plus"]), s)).toBe(true);
    expect(check(prop("Plan", "in", []), s)).toBe(false);
    expect(check(prop("Plan", "notIn", ["x", "Pro plus"]), s)).toBe(false);
    expect(check(prop("Plan", "notIn", []), s)).toBe(true);
  });
  it("contains is a substring test, startsWith a prefix test, both by code point", () => {
    expect(check(prop("Plan", "contains", "o p"), s)).toBe(true);
    expect(check(prop("Plan", "contains", "PRO"), s)).toBe(false);
    expect(check(prop("Plan", "contains", ""), s)).toBe(true);
    expect(check(prop("Plan", "notContains", "plus"), s)).toBe(false);
    expect(check(prop("Plan", "startsWith", "Pro"), s)).toBe(true);
    expect(check(prop("Plan", "startsWith", "pro"), s)).toBe(false);
    // No Unicode normalisation or locale folding: a composed ë is not e + combining diaeresis.
    expect(check(prop("Name", "eq", "Zoe\u0308"), s)).toBe(false);
    expect(check(prop("Name", "startsWith", "Zo"), s)).toBe(true);
  });
  it("ordering operators compare by code point, case-sensitively (upper case before lower case)", () => {
    expect(check(prop("Plan", "gt", "A"), s)).toBe(true);
    expect(check(prop("Plan", "gt", "a"), s)).toBe(false);
    expect(check(prop("Plan", "gte", "Pro plus"), s)).toBe(true);
    expect(check(prop("Plan", "gt", "Pro plus"), s)).toBe(false);
    expect(check(prop("Plan", "lt", "Pro plus!"), s)).toBe(true);
    expect(check(prop("Plan", "lte", "Pro"), s)).toBe(false);
    expect(check(prop("Plan", "between", ["Pro", "Pro plus"]), s)).toBe(true);
    expect(check(prop("Plan", "between", ["Pro plut", "z"]), s)).toBe(false);
    // U+1D4AB is above U+FF5A, though its UTF-16 units (D835 DCAB) are below.
    const astral = subject({ props: { Plan: "𝒫" } });
    expect(check(prop("Plan", "gt", "ｚ"), astral)).toBe(true);
    expect(check(prop("Plan", "lt", "ｚ"), astral)).toBe(false);
  });
  it("a date-looking value on a string key is a string; before/after read dates", () => {
    const codes = [subject({ props: { Plan: "B" } }), subject({ props: { Plan: "2025-01-01" } })];
    for (const c of codes) expect(check(prop("Plan", "gt", "2024-01-01"), c)).toBe(true);
    for (const c of codes) expect(check(prop("Plan", "lt", "2024-01-01"), c)).toBe(false);
    expect(check(prop("Plan", "before", "2024-01-01"), s)).toBe(false);
    const iso = subject({ props: { Plan: "2023-06-01T00:00:00.000Z" } });
    expect(check(prop("Plan", "before", "2024-01-01"), iso)).toBe(true);
    expect(check(prop("Plan", "lt", "2024-01-01"), iso)).toBe(true);
  });
  it("on an unregistered key a text that is not a date orders as text", () => {
    const u = subject({ props: { Code: { v: "B", t: "string" } } });
    expect(check(prop("Code", "gt", "A"), u, {}, { types: () => undefined })).toBe(true);
    expect(check(prop("Code", "between", ["2024-01-01", "A"]), u, {}, { types: () => undefined })).toBe(false);
    expect(check(prop("Code", "between", ["2024-01-01", "C"]), u, {}, { types: () => undefined })).toBe(true);
    expect(check(prop("Code", "gt", "2024-01-01"), u, {}, { types: () => undefined })).toBe(false); // a date
  });
});

describe("numbers and booleans", () => {
  const s = subject({ props: { Points: 10, Active: false, Score: 0 } });
  it("compares numbers", () => {
    expect(check(prop("Points", "eq", 10), s)).toBe(true);
    expect(check(prop("Points", "gt", 10), s)).toBe(false);
    expect(check(prop("Points", "gte", 10), s)).toBe(true);
    expect(check(prop("Points", "lt", 10.5), s)).toBe(true);
    expect(check(prop("Points", "lte", 9.99), s)).toBe(false);
    expect(check(prop("Points", "between", [10, 10]), s)).toBe(true);
    expect(check(prop("Points", "between", [-1, 9]), s)).toBe(false);
    expect(check(prop("Points", "in", [1, 10]), s)).toBe(true);
    expect(check(prop("Points", "notIn", [1, 10]), s)).toBe(false);
    expect(check(prop("Score", "eq", 0), s)).toBe(true);
  });
  it("never mixes types on an unregistered key", () => {
    expect(check(prop("Score", "eq", "0"), s)).toBe(false);
    expect(check(prop("Score", "eq", false), s)).toBe(false);
    expect(check(prop("Score", "contains", "0"), s)).toBe(false);
  });
  it("compares booleans", () => {
    expect(check(prop("Active", "eq", false), s)).toBe(true);
    expect(check(prop("Active", "eq", true), s)).toBe(false);
    expect(check(prop("Active", "neq", true), s)).toBe(true);
    expect(check(prop("Active", "in", [true]), s)).toBe(false);
  });
});

describe("multi-values", () => {
  const s = subject({ props: { Tags: ["vip", "gold", "b"] } });
  it("eq, in, contains and startsWith hold if any element does", () => {
    expect(check(prop("Tags", "eq", "gold"), s)).toBe(true);
    expect(check(prop("Tags", "eq", "Gold"), s)).toBe(false);
    expect(check(prop("Tags", "in", ["x", "b"]), s)).toBe(true);
    expect(check(prop("Tags", "contains", "ol"), s)).toBe(true);
    expect(check(prop("Tags", "contains", "vip"), s)).toBe(true);
    expect(check(prop("Tags", "startsWith", "go"), s)).toBe(true);
    expect(check(prop("Tags", "startsWith", "ip"), s)).toBe(false);
  });
  it("negative operators are not of the positive one", () => {
    expect(check(prop("Tags", "neq", "gold"), s)).toBe(false);
    expect(check(prop("Tags", "neq", "silver"), s)).toBe(true);
    expect(check(prop("Tags", "notContains", "ol"), s)).toBe(false);
    expect(check(prop("Tags", "notIn", ["x"]), s)).toBe(true);
  });
  it("ordering operators are false", () => {
    const n = subject({ props: { Nums: ["1", "2"], When: ["2024-11-19T10:00:00.000Z"] } });
    expect(check(prop("Nums", "gt", 0), n)).toBe(false);
    expect(check(prop("Nums", "lt", 100), n)).toBe(false);
    expect(check(prop("When", "after", "2024-01-01"), n)).toBe(false);
    expect(check(prop("When", "withinLast", { days: 30 }), n)).toBe(false);
    expect(check(prop("Tags", "before", "2030-01-01"), s)).toBe(false);
    for (const [op, value] of [
      ["lt", "z"],
      ["gt", ""],
      ["gte", "b"],
      ["lte", "vip"],
      ["between", ["a", "z"]],
    ] as const) {
      expect(check(prop("Tags", op, value as Json), s)).toBe(false);
      expect(check({ not: prop("Tags", op, value as Json) }, s)).toBe(true);
    }
  });
});

describe("absent values", () => {
  const s = subject({ props: { Gone: { v: undefined }, Plan: "pro" } });
  const valued: Array<[string, Json]> = [
    ["eq", "x"],
    ["contains", "x"],
    ["startsWith", "x"],
    ["gt", 1],
    ["gte", 1],
    ["lt", 1],
    ["lte", 1],
    ["between", [0, 1]],
    ["in", ["x"]],
    ["before", "2030-01-01"],
    ["after", "2000-01-01"],
    ["withinLast", { days: 30 }],
  ];
  for (const key of ["Unknown", "Gone", "Plan.inner", "address.street"]) {
    it(`every positive operator is false and every negative one true on ${key}`, () => {
      for (const [op, value] of valued) expect(check(prop(key, op, value), s), op).toBe(false);
      expect(check(prop(key, "exists"), s)).toBe(false);
      expect(check(prop(key, "notExists"), s)).toBe(true);
      expect(check(prop(key, "neq", "x"), s)).toBe(true);
      expect(check(prop(key, "notIn", ["x"]), s)).toBe(true);
      expect(check(prop(key, "notContains", "x"), s)).toBe(true);
    });
  }
});

describe("nested objects", () => {
  const s = subject({
    props: { address: { city: "Paris", zip: 75001, geo: { lat: 48.85 }, since: "2024-11-19T10:00:00.000Z" } },
  });
  it("follows a.b.c paths", () => {
    expect(check(prop("address.city", "eq", "Paris"), s)).toBe(true);
    expect(check(prop("address.zip", "gte", 75000), s)).toBe(true);
    expect(check(prop("address.geo.lat", "between", [48, 49]), s)).toBe(true);
    expect(check(prop("address.geo.lon", "exists"), s)).toBe(false);
    expect(check(prop("address.city.x", "exists"), s)).toBe(false);
  });
  it("an object exists but equals nothing", () => {
    expect(check(prop("address", "exists"), s)).toBe(true);
    expect(check(prop("address.geo", "exists"), s)).toBe(true);
    expect(check(prop("address.geo", "eq", "x"), s, {}, { types: undefined })).toBe(false);
  });
  it("reads a leaf stored as a date (ISO string) as a date", () => {
    expect(check(prop("address.since", "after", "2024-11-18"), s)).toBe(true);
    expect(check(prop("address.since", "after", "2024-11-19"), s)).toBe(false);
    expect(check(prop("address.since", "withinLast", { days: 2 }), s)).toBe(true);
    expect(check(prop("address.since", "eq", "2024-11-19T10:00:00.000Z"), s)).toBe(true); // still a string
  });
});

describe("dates", () => {
  // 2024-11-19 00:30 in Paris, 2024-11-18 23:30 UTC.
  const signup = utc("2024-11-18T23:30:00Z");
  const s = subject({ props: { Signup: signup } });
  it("date-only values are whole days in the account timezone", () => {
    expect(check(prop("Signup", "eq", "2024-11-19"), s)).toBe(true);
    expect(check(prop("Signup", "eq", "2024-11-18"), s)).toBe(false);
    expect(check(prop("Signup", "eq", "2024-11-18"), s, { timezone: "UTC" }, { timezone: "UTC" })).toBe(true);
    expect(check(prop("Signup", "before", "2024-11-19"), s)).toBe(false);
    expect(check(prop("Signup", "before", "2024-11-20"), s)).toBe(true);
    expect(check(prop("Signup", "after", "2024-11-18"), s)).toBe(true);
    expect(check(prop("Signup", "after", "2024-11-19"), s)).toBe(false);
    expect(check(prop("Signup", "between", ["2024-11-19", "2024-11-19"]), s)).toBe(true);
    expect(check(prop("Signup", "in", ["2024-11-01", "2024-11-19"]), s)).toBe(true);
    expect(check(prop("Signup", "neq", "2024-11-19"), s)).toBe(false);
  });
  it("gt/gte/lt/lte treat a day as a range", () => {
    expect(check(prop("Signup", "gt", "2024-11-19"), s)).toBe(false);
    expect(check(prop("Signup", "gte", "2024-11-19"), s)).toBe(true);
    expect(check(prop("Signup", "lt", "2024-11-19"), s)).toBe(false);
    expect(check(prop("Signup", "lte", "2024-11-19"), s)).toBe(true);
    expect(check(prop("Signup", "gt", "2024-11-18T23:29:59Z"), s)).toBe(true);
    expect(check(prop("Signup", "gt", "2024-11-18T23:30:00Z"), s)).toBe(false);
    expect(check(prop("Signup", "gte", "$D_1731972600"), s)).toBe(true);
  });
  it("instants compare exactly", () => {
    expect(check(prop("Signup", "eq", "2024-11-18T23:30:00Z"), s)).toBe(true);
    expect(check(prop("Signup", "eq", "2024-11-19T00:30:00"), s)).toBe(true); // offset-less: Paris
    expect(check(prop("Signup", "before", "2024-11-18T23:30:00.001Z"), s)).toBe(true);
    expect(check(prop("Signup", "after", "2024-11-18T23:29:59.999Z"), s)).toBe(true);
  });
  it("withinLast n days means ts ≥ now − n × 86400 s (rolling, inclusive)", () => {
    const at = (ts: number) => subject({ props: { Signup: ts } });
    expect(check(prop("Signup", "withinLast", { days: 7 }), at(NOW - 7 * DAY))).toBe(true);
    expect(check(prop("Signup", "withinLast", { days: 7 }), at(NOW - 7 * DAY - 1))).toBe(false);
    expect(check(prop("Signup", "withinLast", { days: 0.5 }), at(NOW - 12 * 3_600_000))).toBe(true);
    expect(check(prop("Signup", "withinLast", { days: 1 }), at(NOW + DAY))).toBe(true);
  });
  it("a number is not a date on a profile", () => {
    const n = subject({ props: { Stamp: signup } });
    expect(check(prop("Stamp", "after", "2000-01-01"), n)).toBe(false);
    expect(check(prop("Stamp", "gt", 0), n)).toBe(true);
  });
});

describe("DOB and Age", () => {
  // 2024-11-20 23:30 UTC is already 2024-11-21 in Paris.
  const late = utc("2024-11-20T23:30:00Z");
  const s = subject({ props: { DOB: "2006-11-21" } });
  it("Age is whole years from DOB at now in the account timezone", () => {
    expect(check(prop("Age", "eq", 18), s, { now: late })).toBe(true);
    expect(check(prop("Age", "eq", 17), s, { now: late, timezone: "UTC" })).toBe(true);
    expect(check(prop("Age", "gte", 18), s, { now: NOW })).toBe(false);
    expect(check(prop("Age", "between", [17, 17]), s, { now: NOW })).toBe(true);
    expect(check(prop("Age", "in", [16, 17]), s)).toBe(true);
    expect(check(prop("Age", "exists"), s)).toBe(true);
  });
  it("Age is absent without DOB", () => {
    const none = subject({ props: { Plan: "pro" } });
    expect(check(prop("Age", "exists"), none)).toBe(false);
    expect(check(prop("Age", "gte", 0), none)).toBe(false);
    expect(check(prop("Age", "neq", 30), none)).toBe(true);
  });
  it("DOB is midnight of its day in the account timezone", () => {
    expect(check(prop("DOB", "eq", "2006-11-21"), s)).toBe(true);
    expect(check(prop("DOB", "eq", "2006-11-20T23:00:00Z"), s)).toBe(true); // Paris midnight
    expect(check(prop("DOB", "eq", "2006-11-21T00:00:00Z"), s)).toBe(false);
    expect(check(prop("DOB", "eq", "2006-11-21T00:00:00Z"), s, { timezone: "UTC" }, { timezone: "UTC" })).toBe(true);
    expect(check(prop("DOB", "before", "2006-11-22"), s)).toBe(true);
    expect(check(prop("DOB", "after", "2006-11-20"), s)).toBe(true);
    expect(check(prop("DOB", "after", "2006-11-21"), s)).toBe(false);
  });
});

describe("identity properties, system fields and documents", () => {
  const s = subject({
    props: { Email: "ana@x.io", Identity: "u-42", Timezone: "Europe/Paris" },
    patch: {
      acquiredFrom: "news",
      location: { city: "Paris", region: null, country: "FR", lat: null, lon: null },
      firstSeen: null,
      lastSeen: NOW - 2 * DAY,
      createdAt: utc("2024-11-18T23:30:00Z"),
    },
    documents: [
      ["1606", { newsletter_options: { subscribed: true }, tags: ["x", "y"], $creation_ts: NOW - DAY }],
      ["1606", { newsletter_options: { subscribed: false } }],
      ["2000", { score: 5, items: [{ sku: "s1" }], none: [] }],
    ],
  });
  it("identity values are properties", () => {
    expect(check(prop("Email", "eq", "ana@x.io"), s)).toBe(true);
    expect(check(prop("Identity", "startsWith", "u-"), s)).toBe(true);
  });
  it("system fields", () => {
    const sys = (system: string, op: string, value?: Json) =>
      check({ system, op, ...(value === undefined ? {} : { value }) }, s);
    expect(sys("city", "eq", "Paris")).toBe(true);
    expect(sys("country", "in", ["DE", "FR"])).toBe(true);
    expect(sys("timezone", "eq", "Europe/Paris")).toBe(true);
    expect(sys("acquiredFrom", "contains", "ew")).toBe(true);
    expect(sys("firstSeen", "exists")).toBe(false);
    expect(sys("firstSeen", "notExists")).toBe(true);
    expect(sys("lastSeen", "withinLast", { days: 3 })).toBe(true);
    expect(sys("lastSeen", "withinLast", { days: 1 })).toBe(false);
    expect(sys("createdAt", "eq", "2024-11-19")).toBe(true);
    expect(check({ system: "city", op: "neq", value: "Paris" }, subject())).toBe(true);
  });
  it("compartment conditions read any document of that compartment", () => {
    const doc = (property: string, compartment: string, op: string, value?: Json) =>
      check({ property, compartment, op, ...(value === undefined ? {} : { value }) }, s);
    expect(doc("newsletter_options.subscribed", "1606", "eq", true)).toBe(true);
    expect(doc("newsletter_options.subscribed", "1606", "eq", false)).toBe(true);
    expect(doc("newsletter_options.subscribed", "1606", "neq", false)).toBe(false);
    expect(doc("newsletter_options.subscribed", "2000", "exists")).toBe(false);
    expect(doc("newsletter_options.subscribed", "2000", "neq", true)).toBe(true);
    expect(doc("score", "2000", "gt", 4)).toBe(true);
    expect(doc("score", "1606", "gt", 4)).toBe(false);
    expect(doc("tags", "1606", "eq", "y")).toBe(true);
    expect(doc("$creation_ts", "1606", "withinLast", { days: 2 })).toBe(true);
    expect(doc("$creation_ts", "1606", "after", "2024-11-20")).toBe(false);
    expect(doc("score", "9999", "notExists")).toBe(true);
    // An array with no scalar element is set, as an object is: it exists, holds no value (segments audit 2026-11-25).
    for (const key of ["items", "none"]) {
      expect(doc(key, "2000", "exists"), key).toBe(true);
      expect(doc(key, "2000", "notExists"), key).toBe(false);
      expect(doc(key, "2000", "eq", "s1"), key).toBe(false);
    }
  });
});

describe("behaviour", () => {
  const s = subject({
    events: [
      ["Charged", NOW - 2 * DAY, { Amount: 100, "Payment Mode": "card", Items: [{ Price: 50 }] }],
      ["Charged", NOW - 10 * DAY, { Amount: 300, "Payment Mode": "cash" }],
      ["Charged", NOW - 40 * DAY, { Amount: 50 }],
      ["Charged", NOW - 5 * DAY, { "Payment Mode": "card" }],
      ["Product Viewed", utc("2024-11-30T23:30:00Z"), { Product: "Shoe" }], // Dec 1, 00:30 in Paris
      ["Product Viewed", utc("2024-10-31T23:30:00Z"), { Product: "Hat" }], // Nov 1, 00:30 in Paris
    ],
  });
  it("did without count means at least one; unknown events never happened", () => {
    expect(check({ did: "Charged" }, s)).toBe(true);
    expect(check({ did: "Never" }, s)).toBe(false);
    expect(check({ didNot: "Never" }, s)).toBe(true);
    expect(check({ did: "Never", count: { op: "eq", value: 0 } }, s)).toBe(true);
    expect(check({ did: "charged" }, s)).toBe(false);
  });
  it("counts inside the window", () => {
    expect(check({ did: "Charged", count: { op: "eq", value: 4 } }, s)).toBe(true);
    expect(check({ did: "Charged", count: { op: "eq", value: 3 }, withinLast: { days: 30 } }, s)).toBe(true);
    expect(check({ did: "Charged", count: { op: "gte", value: 2 }, withinLast: { days: 7 } }, s)).toBe(true);
    expect(check({ did: "Charged", count: { op: "gt", value: 2 }, withinLast: { days: 7 } }, s)).toBe(false);
    expect(check({ did: "Charged", count: { op: "lt", value: 1 }, withinLast: { days: 1 } }, s)).toBe(true);
    expect(check({ did: "Charged", count: { op: "lte", value: 1 }, withinLast: { days: 2 } }, s)).toBe(true);
    expect(check({ did: "Charged", withinLast: { days: 2 } }, s)).toBe(true);
    expect(check({ did: "Charged", withinLast: { days: 1.99 } }, s)).toBe(false);
  });
  it("absolute windows are days in the account timezone, to inclusive", () => {
    expect(check({ did: "Product Viewed", from: "2024-11-01", to: "2024-11-30" }, s)).toBe(true);
    expect(
      check({ did: "Product Viewed", count: { op: "eq", value: 1 }, from: "2024-11-01", to: "2024-11-30" }, s),
    ).toBe(true);
    expect(
      check({ did: "Product Viewed", count: { op: "eq", value: 2 }, from: "2024-11-01", to: "2024-12-01" }, s),
    ).toBe(true);
    expect(check({ did: "Product Viewed", from: "2024-11-02", to: "2024-11-30" }, s)).toBe(false);
    expect(check({ did: "Product Viewed", from: "2024-11-02", to: "2024-11-30" }, s, {}, { timezone: "UTC" })).toBe(
      true,
    );
    expect(check({ did: "Product Viewed", count: { op: "eq", value: 1 }, from: "2024-12-01" }, s)).toBe(true);
  });
  it("where filters events by their properties; Items are ignored", () => {
    const card = [{ property: "Payment Mode", op: "eq", value: "card" }];
    expect(check({ did: "Charged", count: { op: "eq", value: 2 }, where: card }, s)).toBe(true);
    expect(check({ did: "Charged", where: [{ property: "Amount", op: "gt", value: 100 }] }, s)).toBe(true);
    expect(check({ did: "Charged", where: [{ property: "Amount", op: "gt", value: 300 }] }, s)).toBe(false);
    expect(
      check(
        { did: "Charged", count: { op: "eq", value: 2 }, where: [{ property: "Amount", op: "neq", value: 100 }] },
        s,
      ),
      "neq holds on events without Amount",
    ).toBe(false);
    expect(
      check(
        { did: "Charged", count: { op: "eq", value: 3 }, where: [{ property: "Amount", op: "neq", value: 100 }] },
        s,
      ),
    ).toBe(true);
    expect(check({ did: "Charged", where: [{ property: "Items", op: "exists" }] }, s)).toBe(false);
    expect(check({ did: "Charged", where: [{ property: "Items.Price", op: "eq", value: 50 }] }, s)).toBe(false);
    expect(
      check(
        {
          did: "Charged",
          where: [
            { property: "Amount", op: "eq", value: 100 },
            { property: "Payment Mode", op: "eq", value: "cash" },
          ],
        },
        s,
      ),
    ).toBe(false);
  });
  it("didAny pools its names", () => {
    expect(check({ didAny: ["Charged", "Product Viewed"], count: { op: "eq", value: 6 } }, s)).toBe(true);
    expect(check({ didAny: ["Never", "Product Viewed"], count: { op: "eq", value: 2 } }, s)).toBe(true);
    expect(check({ didAny: ["Never", "Other"] }, s)).toBe(false);
  });
  it("sum and avg over M; missing values count as 0; empty sum is 0, empty avg false", () => {
    const sum = (op: string, value: Json, extra: Record<string, Json> = {}) =>
      check({ did: "Charged", ...extra, sum: { property: "Amount", op, value } }, s);
    expect(sum("eq", 450)).toBe(true);
    expect(sum("eq", 400, { withinLast: { days: 30 } })).toBe(true);
    expect(sum("between", [100, 100], { withinLast: { days: 7 } })).toBe(true);
    expect(
      check({ did: "Charged", withinLast: { days: 30 }, avg: { property: "Amount", op: "eq", value: 400 / 3 } }, s),
    ).toBe(true);
    expect(
      check({ did: "Charged", withinLast: { days: 7 }, avg: { property: "Amount", op: "eq", value: 50 } }, s),
    ).toBe(true);
    // Empty M: sum is 0, avg never holds.
    expect(sum("eq", 0, { count: { op: "eq", value: 0 }, withinLast: { days: 1 } })).toBe(true);
    expect(
      check(
        {
          did: "Charged",
          count: { op: "eq", value: 0 },
          withinLast: { days: 1 },
          avg: { property: "Amount", op: "lte", value: 0 },
        },
        s,
      ),
    ).toBe(false);
    expect(
      check(
        {
          didNot: "Charged",
          count: { op: "eq", value: 0 },
          withinLast: { days: 1 },
          avg: { property: "Amount", op: "lte", value: 0 },
        },
        s,
      ),
    ).toBe(true);
    // Without a count, an empty M fails before the aggregate is looked at.
    expect(sum("eq", 0, { withinLast: { days: 1 } })).toBe(false);
    expect(check({ did: "Charged", sum: { property: "Nope", op: "eq", value: 0 } }, s)).toBe(true);
    expect(check({ did: "Charged", sum: { property: "Payment Mode", op: "eq", value: 0 } }, s)).toBe(true);
  });
  it("firstTime/lastTime look at the first/last matching event ever, ignoring the window", () => {
    expect(check({ did: "Charged", firstTime: { withinLast: { days: 30 } } }, s)).toBe(false);
    expect(check({ did: "Charged", firstTime: { withinLast: { days: 41 } } }, s)).toBe(true);
    expect(check({ did: "Charged", withinLast: { days: 7 }, firstTime: { withinLast: { days: 30 } } }, s)).toBe(false);
    expect(check({ did: "Charged", lastTime: { withinLast: { days: 3 } } }, s)).toBe(true);
    expect(check({ did: "Charged", lastTime: { withinLast: { days: 1 } } }, s)).toBe(false);
    const cash = [{ property: "Payment Mode", op: "eq", value: "cash" }];
    expect(check({ did: "Charged", where: cash, firstTime: { withinLast: { days: 30 } } }, s)).toBe(true);
    expect(check({ did: "Charged", where: cash, lastTime: { from: "2024-11-10", to: "2024-11-10" } }, s)).toBe(true);
    expect(check({ did: "Never", count: { op: "eq", value: 0 }, firstTime: { withinLast: { days: 30 } } }, s)).toBe(
      false,
    );
  });
  it("didNot is exactly not(did) with the same fields", () => {
    const fields: Array<Record<string, Json>> = [
      {},
      { withinLast: { days: 7 } },
      { count: { op: "gte", value: 3 } },
      { where: [{ property: "Amount", op: "gt", value: 100 }] },
      { sum: { property: "Amount", op: "gt", value: 1000 } },
      { firstTime: { withinLast: { days: 30 } } },
    ];
    for (const f of fields) {
      expect(check({ didNot: "Charged", ...f }, s)).toBe(!check({ did: "Charged", ...f }, s));
    }
    expect(check({ didNot: "Charged", withinLast: { days: 1 } }, s)).toBe(true);
  });
});

describe("type, flags, bucket, reachability, inSegment", () => {
  it("type via profileType", () => {
    expect(check({ type: "anonymous" }, subject())).toBe(true);
    expect(check({ type: "identified" }, subject({ props: { Email: "a@x.io" } }))).toBe(true);
    expect(check({ type: "customer" }, subject({ patch: { stats: { events: 1, charged: 1, revenue: 5 } } }))).toBe(
      true,
    );
  });
  it("flags and bucket", () => {
    const s = subject({ patch: { flags: { test: true, controlGroupExcluded: false }, bucket: 99 } });
    expect(check({ test: true }, s)).toBe(true);
    expect(check({ test: false }, s)).toBe(false);
    expect(check({ controlGroupExcluded: false }, s)).toBe(true);
    expect(check({ bucket: { from: 0, to: 99 } }, s)).toBe(true);
    expect(check({ bucket: { from: 99, to: 99 } }, s)).toBe(true);
    expect(check({ bucket: { from: 100, to: 999 } }, s)).toBe(false);
  });
  it("reachability per channel (SEMANTICS §9)", () => {
    const r = (channel: string, f: Fixture) => check({ reachableBy: channel }, subject(f));
    expect(r("email", { props: { Email: "a@x.io" } })).toBe(true);
    expect(r("email", {})).toBe(false);
    expect(r("email", { props: { Email: "a@x.io", "MSG-email": false } })).toBe(false);
    expect(r("email", { props: { Email: "a@x.io", "MSG-email": true, "MSG-dndEmail": false } })).toBe(true);
    expect(r("email", { props: { Email: "a@x.io", "MSG-dndEmail": true } })).toBe(false);
    expect(r("email", { props: { Email: "a@x.io", "MSG-dndPhone": true } })).toBe(true);
    expect(r("sms", { props: { Phone: "+33123456789" } })).toBe(true);
    expect(r("sms", { props: { Phone: "+33123456789", "MSG-sms": false } })).toBe(false);
    expect(r("sms", { props: { Phone: "+33123456789", "MSG-dndPhone": true } })).toBe(false);
    expect(r("sms", { props: { Phone: "+33123456789", "MSG-whatsapp": false } })).toBe(true);
    expect(r("whatsapp", { props: { Phone: "+33123456789", "MSG-whatsapp": false } })).toBe(false);
    expect(r("whatsapp", { props: { Phone: "+33123456789", "MSG-dndPhone": true } })).toBe(false);
    expect(r("whatsapp", { props: { Email: "a@x.io" } })).toBe(false);
    expect(r("push", { devices: [{ pushToken: null }, { pushToken: "tok" }] })).toBe(true);
    expect(r("push", { devices: [{ pushToken: null }] })).toBe(false);
    expect(r("push", { devices: [{ pushToken: "tok" }], props: { "MSG-push": false } })).toBe(false);
    expect(r("push", { props: { Email: "a@x.io" } })).toBe(false);
  });
  it("inSegment evaluates the referenced segment; a missing one matches nobody", () => {
    const s = subject({ props: { Plan: "pro" } });
    const ctx = ctxWith({ pro: prop("Plan", "eq", "pro"), outer: { not: { inSegment: "pro" } } });
    const run = (j: Json) => evaluate(parseCondition(j, OPTS), s, ctx);
    expect(run({ inSegment: "pro" })).toBe(true);
    expect(run({ inSegment: "outer" })).toBe(false);
    expect(run({ inSegment: "missing" })).toBe(false);
    expect(run({ not: { inSegment: "missing" } })).toBe(true);
  });
  it("a cycle that slipped through is refused rather than looping", () => {
    const ctx = ctxWith({ a: { inSegment: "b" }, b: { inSegment: "a" } });
    const e = (() => {
      try {
        evaluate(parseCondition({ inSegment: "a" }, OPTS), subject(), ctx);
      } catch (err) {
        return err;
      }
    })();
    expect(e).toBeInstanceOf(PortraitError);
    expect((e as PortraitError).code).toBe("INVALID_SEGMENT");
  });
  it("orphans and tombstones are never members", () => {
    const everyone = parseCondition({ all: [] }, OPTS);
    const ctx = ctxWith();
    expect(isMember(everyone, subject(), ctx)).toBe(true);
    expect(isMember(everyone, subject({ patch: { orphanOf: "b".repeat(32) } }), ctx)).toBe(false);
    expect(isMember(everyone, subject({ patch: { mergedInto: "b".repeat(32) } }), ctx)).toBe(false);
    const noneOf = parseCondition({ not: { test: true } }, OPTS);
    expect(isMember(noneOf, subject({ patch: { orphanOf: "b".repeat(32) } }), ctx)).toBe(false);
    expect(evaluate(noneOf, subject({ patch: { orphanOf: "b".repeat(32) } }), ctx)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Properties over random conditions and subjects

const arbSegmentsCtx = (() => {
  const parsed = new Map(Object.entries(ARB_SEGMENTS).map(([id, j]) => [id, parseCondition(j, ARB_PARSE_OPTIONS)]));
  return arbContext((id) => parsed.get(id));
})();
const parseArb = (j: Json): Condition => parseCondition(j, ARB_PARSE_OPTIONS);
const ev = (c: Condition, s: Subject) => evaluate(c, s, arbSegmentsCtx);

describe("laws on random conditions and subjects", () => {
  it("(a) not is an involution and De Morgan holds for all/any", () => {
    fc.assert(
      fc.property(fc.array(arbConditionJson({ maxDepth: 3 }), { maxLength: 4 }), arbSubject(), (jsons, s) => {
        const cs = jsons.map(parseArb);
        const nots: Condition[] = cs.map((c) => ({ kind: "not", not: c }));
        for (const c of cs) expect(ev({ kind: "not", not: { kind: "not", not: c } }, s)).toBe(ev(c, s));
        expect(ev({ kind: "not", not: { kind: "all", all: cs } }, s)).toBe(ev({ kind: "any", any: nots }, s));
        expect(ev({ kind: "not", not: { kind: "any", any: cs } }, s)).toBe(ev({ kind: "all", all: nots }, s));
        expect(ev({ kind: "all", all: cs }, s)).toBe(cs.every((c) => ev(c, s)));
        expect(ev({ kind: "any", any: cs }, s)).toBe(cs.some((c) => ev(c, s)));
      }),
      { numRuns: 400 },
    );
  });

  it("(b) neq/notIn/notContains/notExists are exactly not of the positive operator", () => {
    const positives = new Map(Object.entries(NEGATIVE_OPS).map(([neg, pos]) => [pos as string, neg]));
    let compared = 0;
    fc.assert(
      fc.property(arbPropertyJson(), arbSubject(), (json, s) => {
        const j = json as { op: string; [k: string]: Json };
        const neg = positives.get(j.op);
        if (neg === undefined) return;
        compared++;
        expect(ev(parseArb({ ...j, op: neg }), s)).toBe(!ev(parseArb(j), s));
      }),
      { numRuns: 1500 },
    );
    expect(compared).toBeGreaterThan(100);
  });

  it("(b) didNot is exactly not(did) with the same fields", () => {
    fc.assert(
      fc.property(arbBehaviourJson("did"), arbSubject(), (json, s) => {
        const { did, ...rest } = json;
        expect(ev(parseArb({ didNot: did as Json, ...rest }), s)).toBe(!ev(parseArb(json), s));
      }),
      { numRuns: 500 },
    );
  });

  it("normalise never changes the outcome", () => {
    fc.assert(
      fc.property(arbConditionJson(), arbSubject(), (json, s) => {
        const c = parseArb(json);
        expect(ev(normalise(c), s)).toBe(ev(c, s));
      }),
      { numRuns: 400 },
    );
  });

  it("random conditions match some random subjects and miss others", () => {
    let yes = 0;
    let no = 0;
    fc.assert(
      fc.property(arbConditionJson({ maxDepth: 2 }), arbSubject(), (json, s) => {
        if (ev(parseArb(json), s)) yes++;
        else no++;
      }),
      { numRuns: 500 },
    );
    expect(yes).toBeGreaterThan(50);
    expect(no).toBeGreaterThan(50);
  });

  it("orphans and tombstones are members of nothing; live profiles follow evaluate", () => {
    fc.assert(
      fc.property(arbConditionJson(), arbSubject({ unmatchable: true }), (json, s) => {
        const c = parseArb(json);
        const live = s.state.orphanOf === null && s.state.mergedInto === null;
        expect(isMember(c, s, arbSegmentsCtx)).toBe(live && ev(c, s));
      }),
      { numRuns: 300 },
    );
  });

  it("the generated subjects are at ARB_NOW", () => {
    expect(arbSegmentsCtx.now).toBe(ARB_NOW);
  });
});
