/**
 * fast-check arbitraries for segment tests: valid `where` conditions (grammar JSON, as a client sends them) and
 * random profiles (Subjects) to evaluate them on. Names and values come from small pools around one fixed `now`,
 * so that random conditions match random profiles often enough to mean something. Test-only (imports fast-check);
 * the SQL differential tests reuse it: store the Subject, run the condition both ways, compare.
 */
import fc from "fast-check";
import { compareCodePoints } from "../text.js";
import type { JsonValue, ProfileDocument, ProfileState, PropertyEntry, StoredEvent, ValueType } from "../types.js";
import type { Json } from "./condition.js";
import type { EvaluateContext, Subject } from "./evaluate.js";
import type { ParseConditionOptions } from "./parse.js";

/** 2024-11-20T12:00:00Z (13:00 in Paris). */
export const ARB_NOW = Date.UTC(2024, 10, 20, 12, 0, 0);
/** A zone with an offset and DST, so that day boundaries differ from UTC's. */
export const ARB_TIMEZONE = "Europe/Paris";

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** The profile property registry of the generated profiles (system properties have built-in types). */
export const ARB_PROFILE_TYPES: Readonly<Record<string, ValueType>> = {
  Plan: "string",
  Points: "number",
  Active: "boolean",
  Signup: "date",
  Tags: "multi",
  address: "object",
  "address.city": "string",
  "address.zip": "number",
  "address.since": "string",
  "address.geo": "object",
  "address.geo.lat": "number",
};

/** Event property registry per event name. */
export const ARB_EVENT_TYPES: Readonly<Record<string, Readonly<Record<string, ValueType>>>> = {
  Charged: { Amount: "number", "Payment Mode": "string", Items: "object", When: "string" },
  "Product Viewed": { Product: "string", Price: "number", When: "string", Paid: "boolean" },
  "Added To Cart": { Product: "string", Price: "number" },
  "App Launched": { Paid: "boolean" },
};
export const ARB_EVENT_NAMES = ["Charged", "Product Viewed", "Added To Cart", "App Launched", "Never Sent"] as const;

export const arbTypes = (path: string): ValueType | undefined =>
  Object.hasOwn(ARB_PROFILE_TYPES, path) ? ARB_PROFILE_TYPES[path] : undefined;

export const arbEventTypes = (event: string, path: string): ValueType | undefined => {
  const reg = Object.hasOwn(ARB_EVENT_TYPES, event) ? ARB_EVENT_TYPES[event] : undefined;
  return reg && Object.hasOwn(reg, path) ? reg[path] : undefined;
};

/** Parse options matching the generated data. */
export const ARB_PARSE_OPTIONS: ParseConditionOptions = {
  timezone: ARB_TIMEZONE,
  now: ARB_NOW,
  types: arbTypes,
  eventTypes: arbEventTypes,
};

/** Saved segments that generated `inSegment` conditions name (`seg-missing` is deliberately absent). */
export const ARB_SEGMENTS: Readonly<Record<string, Json>> = {
  "seg-vip": { property: "Tags", op: "contains", value: "vip" },
  "seg-buyers": { did: "Charged", withinLast: { days: 30 } },
  "seg-nested": { any: [{ inSegment: "seg-vip" }, { property: "Points", op: "gte", value: 10 }] },
};
export const ARB_SEGMENT_IDS = ["seg-vip", "seg-buyers", "seg-nested", "seg-missing"] as const;

// ---------------------------------------------------------------------------------------------------------------
// Value pools

/** Instants around now, including both sides of Paris midnights and of 1/7/30-day windows. */
const INSTANTS = [
  ARB_NOW + 2 * HOUR,
  ARB_NOW,
  ARB_NOW - HOUR,
  Date.UTC(2024, 10, 19, 23, 0, 0), // 2024-11-20 00:00 Paris
  Date.UTC(2024, 10, 19, 22, 59, 59), // 2024-11-19 23:59:59 Paris
  ARB_NOW - DAY,
  ARB_NOW - DAY - 1000,
  Date.UTC(2024, 10, 18, 23, 0, 0), // 2024-11-19 00:00 Paris
  Date.UTC(2024, 10, 18, 12, 0, 0),
  ARB_NOW - 7 * DAY,
  ARB_NOW - 7 * DAY - 1000,
  ARB_NOW - 29 * DAY,
  ARB_NOW - 30 * DAY,
  ARB_NOW - 31 * DAY,
  Date.UTC(2024, 9, 1, 8, 0, 0),
  Date.UTC(2023, 10, 20, 12, 0, 0),
];

/** Date texts in every accepted form, sorted by the first instant they cover (so index order gives lo ≤ hi). */
export const ARB_DATE_TEXTS = [
  "2023-11-20",
  "2024-10-01T08:00:00Z",
  "$D_1729000000",
  "2024-10-21",
  "2024-11-13T12:00:00.000Z",
  "2024-11-18",
  "2024-11-19",
  "2024-11-19T00:00:00",
  "2024-11-19T22:59:59Z",
  "2024-11-20",
  "$D_1732104000",
  "2024-11-20T14:00:00+01:00",
];

/**
 * `ｚ` (U+FF5A) and `𝒫` (U+1D4AB) order one way by code point (how conditions compare text) and the other way by
 * UTF-16 code unit (JavaScript's `<`).
 */
const STRINGS = [
  "pro",
  "Pro",
  "free",
  "gold",
  "pro plus",
  "Paris",
  "paris",
  "Lyon",
  "p",
  "",
  "vip",
  "ana@x.io",
  "ｚ",
  "𝒫",
];
const NUMBERS = [-5, 0, 1, 5, 10, 10.5, 17, 18, 26, 27, 50, 100, 75001];
const TAGS = ["a", "b", "vip", "VIP", "gold"];
const DOBS = ["1997-11-20", "1997-11-21", "1997-11-19", "2006-11-20", "2006-11-21", "1990-01-01", "2000-02-29"];

const arbNumber = fc.constantFrom(...NUMBERS);
const arbDateText = fc.constantFrom(...ARB_DATE_TEXTS);
const arbDays = fc.constantFrom(0.5, 1, 7, 30, 365);
const arbInstant = fc.constantFrom(...INSTANTS);
const isoOf = (ms: number) => new Date(ms).toISOString();

function sortedPair<T>(pool: readonly T[]): fc.Arbitrary<[T, T]> {
  return fc
    .tuple(fc.nat(pool.length - 1), fc.nat(pool.length - 1))
    .map(([a, b]) => [pool[Math.min(a, b)] as T, pool[Math.max(a, b)] as T]);
}

// ---------------------------------------------------------------------------------------------------------------
// Conditions

type Kind = "string" | "number" | "boolean" | "date" | "multi" | "object" | "any";

/**
 * op and value for a key of a kind; `any` is an unregistered key (every operator, values of any type). `strings` are
 * the texts its conditions use.
 */
function arbTest(kind: Kind, strings: readonly string[] = STRINGS): fc.Arbitrary<{ [k: string]: Json }> {
  const op = (name: string, value?: fc.Arbitrary<Json>) =>
    value === undefined ? fc.constant({ op: name }) : value.map((v) => ({ op: name, value: v }));
  const numberPair = sortedPair([...NUMBERS].sort((a, b) => a - b));
  const datePair = sortedPair(ARB_DATE_TEXTS);
  const stringPool = fc.constantFrom(...strings);
  const presence = [op("exists"), op("notExists")];
  const equality = (v: fc.Arbitrary<Json>) => [
    op("eq", v),
    op("neq", v),
    op("in", fc.array(v, { maxLength: 3 })),
    op("notIn", fc.array(v, { maxLength: 3 })),
  ];
  const text = [op("contains", stringPool), op("notContains", stringPool), op("startsWith", stringPool)];
  const dateOperators = [
    op("before", arbDateText),
    op("after", arbDateText),
    op(
      "withinLast",
      arbDays.map((days) => ({ days })),
    ),
  ];
  const dateOrder = [...["gt", "gte", "lt", "lte"].map((o) => op(o, arbDateText)), op("between", datePair)];
  const numbers = [...["gt", "gte", "lt", "lte"].map((o) => op(o, arbNumber)), op("between", numberPair)];
  // Ordering by code point; on a string key date texts are texts too (string keys hold stored ISO dates as well).
  // A `between` pair is in code point order; two ISO date texts in it are in time order too, for the event
  // properties a key is registered for under one event name and not under another (dates there).
  const textOrder = (pool: readonly string[]) => [
    ...["gt", "gte", "lt", "lte"].map((o) => op(o, fc.constantFrom(...pool))),
    op("between", sortedPair([...pool.filter((t) => !t.startsWith("$D_"))].sort(compareCodePoints))),
  ];
  switch (kind) {
    case "string":
      return fc.oneof(
        ...presence,
        ...equality(stringPool),
        ...text,
        ...dateOperators,
        ...textOrder([...strings, ...ARB_DATE_TEXTS]),
      );
    case "multi":
      return fc.oneof(...presence, ...equality(stringPool), ...text, ...textOrder(strings));
    case "number":
      return fc.oneof(...presence, ...equality(arbNumber), ...numbers);
    case "boolean":
      return fc.oneof(...presence, ...equality(fc.boolean()));
    case "date":
      return fc.oneof(...presence, ...equality(arbDateText), ...dateOperators, ...dateOrder);
    case "object":
      return fc.oneof(...presence);
    case "any":
      // Texts that are not dates order as texts; date texts as dates.
      return fc.oneof(
        ...presence,
        ...equality(fc.oneof(stringPool, arbNumber, fc.boolean())),
        ...text,
        ...numbers,
        ...dateOperators,
        ...dateOrder,
        ...textOrder(strings),
      );
  }
}

const PROFILE_KEYS: ReadonlyArray<[string, Kind, string[]?]> = [
  ["Plan", "string"],
  ["Points", "number"],
  ["Active", "boolean"],
  ["Signup", "date"],
  ["Tags", "multi", [...TAGS, "v", ""]],
  ["address", "object"],
  ["address.city", "string"],
  ["address.zip", "number"],
  ["address.since", "string"],
  ["address.geo", "object"],
  ["address.geo.lat", "number"],
  ["DOB", "date"],
  ["Age", "number"],
  ["Email", "string"],
  ["Identity", "string"],
  ["MSG-email", "boolean"],
  ["Nope", "any"],
  ["address.nope", "any"],
];

/** A property condition on a profile property (registered, system, derived or unknown). */
export function arbProfilePropertyJson(): fc.Arbitrary<{ [k: string]: Json }> {
  return fc.oneof(
    ...PROFILE_KEYS.map(([path, kind, pool]) => arbTest(kind, pool).map((t) => ({ property: path, ...t }))),
  );
}

export function arbSystemJson(): fc.Arbitrary<{ [k: string]: Json }> {
  return fc.oneof(
    ...(["createdAt", "firstSeen", "lastSeen"] as const).map((f) => arbTest("date").map((t) => ({ system: f, ...t }))),
    ...(["acquiredFrom", "city", "country", "timezone"] as const).map((f) =>
      arbTest("string", ["news", "google.com", "Paris", "FR", "Europe/Paris", "UTC", "e"]).map((t) => ({
        system: f,
        ...t,
      })),
    ),
  );
}

export function arbDocumentJson(): fc.Arbitrary<{ [k: string]: Json }> {
  return fc
    .tuple(
      fc.constantFrom("1606", "default", "2000"),
      fc.constantFrom("newsletter.subscribed", "score", "tags", "items", "name", "$creation_ts", "missing"),
      arbTest("any", ["x", "y", "Ana", "A", "", "ｚ", "𝒫"]),
    )
    .map(([compartment, property, t]) => ({ property, compartment, ...t }));
}

/** Any property condition: profile, system or document. */
export function arbPropertyJson(): fc.Arbitrary<{ [k: string]: Json }> {
  return fc.oneof(arbProfilePropertyJson(), arbSystemJson(), arbDocumentJson());
}

const EVENT_KEYS: ReadonlyArray<[string, Kind]> = [
  ["Amount", "number"],
  ["Price", "number"],
  ["Product", "string"],
  ["Payment Mode", "string"],
  ["When", "string"],
  ["Paid", "boolean"],
  ["Nope", "any"],
];

function arbWindowJson(): fc.Arbitrary<{ [k: string]: Json }> {
  return fc.oneof(
    arbDays.map((days) => ({ withinLast: { days } })),
    arbDateText.map((from) => ({ from })),
    sortedPair(ARB_DATE_TEXTS).map(([from, to]) => ({ from, to })),
  );
}

function arbAggregateJson(): fc.Arbitrary<Json> {
  return fc.oneof(
    fc
      .tuple(fc.constantFrom("Amount", "Price", "Nope"), fc.constantFrom("eq", "gt", "gte", "lt", "lte"), arbNumber)
      .map(([property, op, value]) => ({ property, op, value })),
    fc
      .tuple(fc.constantFrom("Amount", "Price"), sortedPair([0, 10, 50, 60, 100, 250, 500]))
      .map(([property, value]) => ({ property, op: "between", value })),
  );
}

/** A behaviour condition (did/didNot/didAny) with random optional parts. */
export function arbBehaviourJson(mode?: "did" | "didNot" | "didAny"): fc.Arbitrary<{ [k: string]: Json }> {
  const name = fc.constantFrom(...ARB_EVENT_NAMES);
  const head =
    mode === "didAny"
      ? fc.uniqueArray(name, { minLength: 1, maxLength: 3 }).map((names) => ({ didAny: names }))
      : mode !== undefined
        ? name.map((n) => ({ [mode]: n }))
        : fc.oneof(
            name.map((n) => ({ did: n })),
            name.map((n) => ({ didNot: n })),
            fc.uniqueArray(name, { minLength: 1, maxLength: 3 }).map((names) => ({ didAny: names })),
          );
  const where = fc.array(
    fc.oneof(
      ...EVENT_KEYS.map(([path, kind]) =>
        arbTest(kind, ["Shoe", "shoe", "Hat", "card", "S"]).map((t) => ({ property: path, ...t })),
      ),
    ),
    { maxLength: 2 },
  );
  return fc
    .record(
      {
        head,
        count: fc.record({ op: fc.constantFrom("eq", "gt", "gte", "lt", "lte"), value: fc.nat(3) }),
        window: arbWindowJson(),
        where,
        firstTime: arbWindowJson(),
        lastTime: arbWindowJson(),
        sum: arbAggregateJson(),
        avg: arbAggregateJson(),
      },
      { requiredKeys: ["head"] },
    )
    .map(({ head, window, ...rest }) => ({ ...head, ...(window ?? {}), ...(rest as { [k: string]: Json }) }));
}

/** type, test, controlGroupExcluded, reachableBy, bucket, inSegment. */
export function arbProfileFactJson(): fc.Arbitrary<{ [k: string]: Json }> {
  return fc.oneof(
    fc.constantFrom("anonymous", "identified", "customer").map((type) => ({ type })),
    fc.boolean().map((test) => ({ test })),
    fc.boolean().map((controlGroupExcluded) => ({ controlGroupExcluded })),
    fc.constantFrom("email", "sms", "whatsapp", "push").map((reachableBy) => ({ reachableBy })),
    sortedPair([0, 1, 99, 100, 500, 999]).map(([from, to]) => ({ bucket: { from, to } })),
    fc.constantFrom(...ARB_SEGMENT_IDS).map((inSegment) => ({ inSegment })),
  );
}

/** Any leaf condition. */
export function arbLeafJson(): fc.Arbitrary<{ [k: string]: Json }> {
  return fc.oneof(arbPropertyJson(), arbBehaviourJson(), arbProfileFactJson());
}

/** A valid condition tree (grammar JSON) of at most `maxDepth` levels (default 4; the grammar allows 10). */
export function arbConditionJson(opts: { maxDepth?: number } = {}): fc.Arbitrary<Json> {
  const maxDepth = Math.min(opts.maxDepth ?? 4, 10) - 1;
  const { cond } = fc.letrec<{ cond: Json }>((tie) => ({
    cond: fc.oneof(
      { maxDepth, depthIdentifier: "segment-condition", withCrossShrink: true },
      arbLeafJson(),
      fc.array(tie("cond"), { maxLength: 4, depthIdentifier: "segment-condition" }).map((all) => ({ all })),
      fc.array(tie("cond"), { maxLength: 4, depthIdentifier: "segment-condition" }).map((any) => ({ any })),
      tie("cond").map((not) => ({ not })),
    ),
  }));
  return cond;
}

// ---------------------------------------------------------------------------------------------------------------
// Subjects

const optional = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 3 });

function entry(v: PropertyEntry["v"], t: ValueType): PropertyEntry {
  return { v, t, ts: ARB_NOW - DAY };
}

function arbProps(): fc.Arbitrary<Record<string, PropertyEntry>> {
  return fc
    .record({
      Plan: optional(fc.constantFrom("pro", "Pro", "free", "gold", "pro plus", "", "ｚ", "𝒫ro")),
      Points: optional(arbNumber),
      Active: optional(fc.boolean()),
      Signup: optional(arbInstant),
      Tags: optional(fc.uniqueArray(fc.constantFrom(...TAGS), { minLength: 1, maxLength: 3 })),
      address: optional(
        fc.record(
          {
            city: fc.constantFrom("Paris", "paris", "Lyon"),
            zip: fc.constantFrom(75001, 69001),
            since: arbInstant.map(isoOf),
            geo: fc.record({ lat: fc.constantFrom(48.8, 45.7) }, { requiredKeys: [] }),
          },
          { requiredKeys: [] },
        ),
      ),
      DOB: optional(fc.constantFrom(...DOBS)),
      Email: optional(fc.constantFrom("ana@x.io", "bob@y.io")),
      Phone: optional(fc.constant("+33123456789")),
      Identity: optional(fc.constantFrom("u-1", "u-2")),
      Timezone: optional(fc.constantFrom("Europe/Paris", "UTC")),
      "MSG-email": optional(fc.boolean()),
      "MSG-dndEmail": optional(fc.boolean()),
      "MSG-sms": optional(fc.boolean()),
      "MSG-whatsapp": optional(fc.boolean()),
      "MSG-dndPhone": optional(fc.boolean()),
      "MSG-push": optional(fc.boolean()),
      Deleted: optional(fc.constant(true)),
    })
    .map((r) => {
      const props: Record<string, PropertyEntry> = {};
      const typeOf = (key: string, v: unknown): ValueType =>
        ARB_PROFILE_TYPES[key] ??
        (key === "DOB" ? "date" : typeof v === "boolean" ? "boolean" : typeof v === "number" ? "number" : "string");
      for (const [key, v] of Object.entries(r)) {
        if (v === undefined) continue;
        if (key === "Deleted")
          props.Plan ??= { ts: ARB_NOW }; // a tombstone: no value
        else props[key] = entry(v as PropertyEntry["v"], typeOf(key, v));
      }
      return props;
    });
}

const arbEventProps: Record<string, fc.Arbitrary<StoredEvent["properties"]>> = {
  Charged: fc.record(
    {
      Amount: fc.constantFrom(0, 10, 50, 100, 250),
      "Payment Mode": fc.constantFrom("card", "cash"),
      Items: fc.constant([{ Product: "Shoe", Price: 10 }]),
      When: arbInstant.map(isoOf),
    },
    { requiredKeys: [] },
  ),
  "Product Viewed": fc.record(
    {
      Product: fc.constantFrom("Shoe", "shoe", "Hat"),
      Price: fc.constantFrom(5, 10, 60),
      When: arbInstant.map(isoOf),
      Paid: fc.boolean(),
    },
    { requiredKeys: [] },
  ),
  "Added To Cart": fc.record(
    { Product: fc.constantFrom("Shoe", "Hat"), Price: fc.constantFrom(10, 60) },
    { requiredKeys: [] },
  ),
  "App Launched": fc.record({ Paid: fc.boolean() }, { requiredKeys: [] }),
};

function arbEvents(profileId: string): fc.Arbitrary<StoredEvent[]> {
  const one = fc
    .constantFrom("Charged", "Product Viewed", "Added To Cart", "App Launched")
    .chain((name) =>
      fc.tuple(fc.constant(name), arbInstant, arbEventProps[name] as fc.Arbitrary<StoredEvent["properties"]>),
    );
  return fc.array(one, { maxLength: 8 }).map((list) =>
    list.map(([name, ts, properties], i) => ({
      seq: i + 1,
      profileId,
      id: `e-${i}`,
      name,
      ts,
      properties,
      deviceId: null,
      platform: null,
    })),
  );
}

function arbDocuments(profileId: string): fc.Arbitrary<ProfileDocument[]> {
  const body = fc.record(
    {
      newsletter: fc.record({ subscribed: fc.boolean() }, { requiredKeys: [] }),
      score: fc.constantFrom(0, 5, 10, 100),
      tags: fc.uniqueArray(fc.constantFrom("x", "y", "z"), { maxLength: 2 }),
      // Arrays with no scalar element exist, as objects do, and hold no value (mediarithmics lists of objects).
      items: fc.constantFrom<JsonValue>([], [{ sku: "s1" }], [{ sku: "s1" }, "x"], [[1]]),
      name: fc.constantFrom("Ana", "ana", "Bo", "𝒫"),
      $creation_ts: arbInstant,
    },
    { requiredKeys: [] },
  );
  const doc = fc
    .tuple(fc.constantFrom("1606", "default", "2000"), fc.constantFrom("u-1", "u-2"), body)
    .map(([compartmentId, userAccountId, b]) => ({
      profileId,
      compartmentId,
      userAccountId,
      body: { $compartment_id: compartmentId, $user_account_id: userAccountId, ...b } as { [key: string]: JsonValue },
      createdAt: ARB_NOW - DAY,
      updatedAt: ARB_NOW - DAY,
    }));
  return fc.array(doc, { maxLength: 3 });
}

export interface ArbSubjectOptions {
  /** Also produce orphans and merge tombstones (never members); default false. */
  unmatchable?: boolean;
}

/** A random profile with properties of every type, DOB, flags, bucket, events, documents and devices. */
export function arbSubject(opts: ArbSubjectOptions = {}): fc.Arbitrary<Subject> {
  const id = "p".repeat(32);
  return fc
    .record({
      props: arbProps(),
      events: arbEvents(id),
      documents: arbDocuments(id),
      devices: fc.array(fc.record({ pushToken: fc.constantFrom(null, "tok-1", "tok-2") }), { maxLength: 2 }),
      createdAt: arbInstant,
      firstSeen: fc.option(arbInstant, { nil: null }),
      lastSeen: fc.option(arbInstant, { nil: null }),
      acquiredFrom: fc.constantFrom(null, "news", "google.com"),
      city: fc.constantFrom(null, "Paris", "Lyon"),
      country: fc.constantFrom(null, "FR", "DE"),
      bucket: fc.constantFrom(0, 1, 50, 99, 100, 500, 998, 999),
      test: fc.boolean(),
      controlGroupExcluded: fc.boolean(),
      fate: opts.unmatchable ? fc.constantFrom("live", "live", "orphan", "tombstone") : fc.constant("live"),
    })
    .map((r) => {
      const charged = r.events.filter((e) => e.name === "Charged");
      const identities: ProfileState["identities"] = {};
      for (const key of ["Identity", "Email", "Phone"] as const) {
        const v = r.props[key]?.v;
        if (typeof v === "string") identities[key] = [{ value: v, ts: ARB_NOW - DAY }];
      }
      const state: ProfileState = {
        id,
        props: r.props,
        identities,
        createdAt: r.createdAt,
        updatedAt: ARB_NOW,
        firstSeen: r.firstSeen,
        lastSeen: r.lastSeen,
        acquiredFrom: r.acquiredFrom,
        acquiredTs: r.acquiredFrom === null ? null : r.createdAt,
        acquiredKind: r.acquiredFrom === null ? null : r.acquiredFrom === "news" ? "utm" : "referrer",
        location: { city: r.city, region: null, country: r.country, lat: null, lon: null },
        timezoneFromContext: false,
        bucket: r.bucket,
        flags: { test: r.test, controlGroupExcluded: r.controlGroupExcluded },
        stats: {
          events: r.events.length,
          charged: charged.length,
          revenue: charged.reduce((s, e) => s + (typeof e.properties.Amount === "number" ? e.properties.Amount : 0), 0),
        },
        orphanOf: r.fate === "orphan" ? "o".repeat(32) : null,
        mergedInto: r.fate === "tombstone" ? "t".repeat(32) : null,
        journalMergeId: null,
      };
      return { state, events: r.events, documents: r.documents, devices: r.devices };
    });
}

/** An evaluation context at ARB_NOW in ARB_TIMEZONE; `segment` resolves ids through `resolve` (default: none). */
export function arbContext(
  resolve: (id: string) => ReturnType<EvaluateContext["segment"]> = () => undefined,
): EvaluateContext {
  return { now: ARB_NOW, timezone: ARB_TIMEZONE, segment: resolve };
}
