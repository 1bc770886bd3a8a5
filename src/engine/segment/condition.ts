/**
 * The typed tree of a segment condition (API.md "Segments", the grammar). `parseCondition` (parse.ts) turns the
 * untrusted JSON of a `where` into this tree after checking all of it; `conditionToJson` turns it back into the
 * grammar's JSON, so `parseCondition(conditionToJson(c))` equals `c`.
 *
 * Production by production:
 * - `{"all": […]}`, `{"any": […]}`, `{"not": …}` → `all`, `any`, `not`;
 * - Property (`property` with optional `compartment`, or `system`) → `property` with a `target`;
 * - Behaviour (`did`, `didNot`, `didAny` with count, inline WINDOW, where, firstTime, lastTime, sum, avg) →
 *   `behaviour` (`mode` says which of the three; `events` holds its one or more names);
 * - `type`, `test`, `controlGroupExcluded`, `reachableBy`, `bucket`, `inSegment` → nodes of the same names.
 *
 * Values are typed when parsed (`Literal`): whether `"2024-11-01"` is a string or a date is decided once, by the
 * operator and the key's registered type, and dates are resolved to epoch-ms bounds in the account timezone then.
 * Everything here is plain JSON-serialisable data.
 */

export const OPS = [
  "eq",
  "neq",
  "contains",
  "notContains",
  "startsWith",
  "gt",
  "gte",
  "lt",
  "lte",
  "between",
  "in",
  "notIn",
  "exists",
  "notExists",
  "before",
  "after",
  "withinLast",
] as const;
export type Op = (typeof OPS)[number];

/** The operators that are exactly `not` of a positive one (SEMANTICS §11: they hold when the value is absent). */
export const NEGATIVE_OPS = { neq: "eq", notIn: "in", notContains: "contains", notExists: "exists" } as const;
export type NegativeOp = keyof typeof NEGATIVE_OPS;
export type PositiveOp = Exclude<Op, NegativeOp>;

export const SYSTEM_FIELDS = [
  "createdAt",
  "firstSeen",
  "lastSeen",
  "acquiredFrom",
  "city",
  "country",
  "timezone",
] as const;
export type SystemField = (typeof SYSTEM_FIELDS)[number];

export const CHANNELS = ["email", "sms", "whatsapp", "push"] as const;
export type Channel = (typeof CHANNELS)[number];

export const PROFILE_TYPES = ["anonymous", "identified", "customer"] as const;

export const COUNT_OPS = ["eq", "gt", "gte", "lt", "lte"] as const;
export type CountOp = (typeof COUNT_OPS)[number];

export const AGGREGATE_OPS = ["eq", "gt", "gte", "lt", "lte", "between"] as const;
export type AggregateOp = (typeof AGGREGATE_OPS)[number];

export const BEHAVIOUR_MODES = ["did", "didNot", "didAny"] as const;
export type BehaviourMode = (typeof BEHAVIOUR_MODES)[number];

/**
 * A date literal: `text` as written (ISO-8601 or `$D_<epoch seconds>`), `start`/`end` the first and last epoch ms it
 * covers, both inclusive. A date-only text covers its whole day in the account timezone (`end` = the next day's
 * start − 1 ms); any other form is one instant (`start` = `end`).
 */
export interface DateLiteral {
  kind: "date";
  text: string;
  start: number;
  end: number;
  /** True for a `YYYY-MM-DD` text. */
  dateOnly: boolean;
}

export type Literal =
  | { kind: "string"; value: string }
  | { kind: "number"; value: number }
  | { kind: "boolean"; value: boolean }
  | DateLiteral;

/** `withinLast {days}` as an operator value or a window: `ts ≥ now − days × 86 400 000`. */
export interface Days {
  days: number;
}

/** The operator and its value; which value shape goes with which operator is fixed by the grammar. */
export type Test =
  | { op: "exists" | "notExists" }
  | {
      op: "eq" | "neq" | "contains" | "notContains" | "startsWith" | "gt" | "gte" | "lt" | "lte" | "before" | "after";
      value: Literal;
    }
  | { op: "between"; value: [Literal, Literal] }
  | { op: "in" | "notIn"; value: Literal[] }
  | { op: "withinLast"; value: Days };

/** What a property condition reads. `path` is the PATH split at its dots (`a.b.c` → `["a", "b", "c"]`). */
export type Target =
  | { source: "profile"; path: string[] }
  | { source: "document"; compartment: string; path: string[] }
  | { source: "system"; field: SystemField };

export type PropertyCondition = { kind: "property"; target: Target } & Test;

/** A condition on one event's properties, inside a behaviour's `where`. */
export type EventPropertyCondition = { path: string[] } & Test;

export type Window = { kind: "withinLast"; days: number } | { kind: "range"; from: DateLiteral; to?: DateLiteral };

export type Aggregate =
  | { path: string[]; op: Exclude<AggregateOp, "between">; value: number }
  | { path: string[]; op: "between"; value: [number, number] };

export interface BehaviourCondition {
  kind: "behaviour";
  mode: BehaviourMode;
  /** The event names: exactly one for `did`/`didNot`, one or more for `didAny` (pooled). */
  events: string[];
  count?: { op: CountOp; value: number };
  window?: Window;
  where?: EventPropertyCondition[];
  firstTime?: Window;
  lastTime?: Window;
  sum?: Aggregate;
  avg?: Aggregate;
}

export type Condition =
  | { kind: "all"; all: Condition[] }
  | { kind: "any"; any: Condition[] }
  | { kind: "not"; not: Condition }
  | PropertyCondition
  | BehaviourCondition
  | { kind: "type"; type: (typeof PROFILE_TYPES)[number] }
  | { kind: "test"; test: boolean }
  | { kind: "controlGroupExcluded"; controlGroupExcluded: boolean }
  | { kind: "reachableBy"; reachableBy: Channel }
  | { kind: "bucket"; from: number; to: number }
  | { kind: "inSegment"; inSegment: string };

/** JSON as `JSON.parse` makes it. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

// ---------------------------------------------------------------------------------------------------------------
// Back to the grammar's JSON

export function literalToJson(l: Literal): string | number | boolean {
  return l.kind === "date" ? l.text : l.value;
}

function testToJson(t: Test): { op: Op; value?: Json } {
  switch (t.op) {
    case "exists":
    case "notExists":
      return { op: t.op };
    case "between":
      return { op: t.op, value: [literalToJson(t.value[0]), literalToJson(t.value[1])] };
    case "in":
    case "notIn":
      return { op: t.op, value: t.value.map(literalToJson) };
    case "withinLast":
      return { op: t.op, value: { days: t.value.days } };
    default:
      return { op: t.op, value: literalToJson(t.value) };
  }
}

function windowToJson(w: Window): { [key: string]: Json } {
  if (w.kind === "withinLast") return { withinLast: { days: w.days } };
  return w.to === undefined ? { from: w.from.text } : { from: w.from.text, to: w.to.text };
}

function aggregateToJson(a: Aggregate): Json {
  return { property: a.path.join("."), op: a.op, value: a.op === "between" ? [...a.value] : a.value };
}

/** The grammar's JSON for a condition (what a client would send to get this tree). */
export function conditionToJson(c: Condition): { [key: string]: Json } {
  switch (c.kind) {
    case "all":
      return { all: c.all.map(conditionToJson) };
    case "any":
      return { any: c.any.map(conditionToJson) };
    case "not":
      return { not: conditionToJson(c.not) };
    case "property": {
      const t = c.target;
      const head: { [key: string]: Json } =
        t.source === "system"
          ? { system: t.field }
          : t.source === "document"
            ? { property: t.path.join("."), compartment: t.compartment }
            : { property: t.path.join(".") };
      return { ...head, ...testToJson(c) };
    }
    case "behaviour": {
      const out: { [key: string]: Json } = { [c.mode]: c.mode === "didAny" ? [...c.events] : (c.events[0] ?? "") };
      if (c.count) out.count = { op: c.count.op, value: c.count.value };
      if (c.window) Object.assign(out, windowToJson(c.window));
      if (c.where) out.where = c.where.map((w) => ({ property: w.path.join("."), ...testToJson(w) }));
      if (c.firstTime) out.firstTime = windowToJson(c.firstTime);
      if (c.lastTime) out.lastTime = windowToJson(c.lastTime);
      if (c.sum) out.sum = aggregateToJson(c.sum);
      if (c.avg) out.avg = aggregateToJson(c.avg);
      return out;
    }
    case "type":
      return { type: c.type };
    case "test":
      return { test: c.test };
    case "controlGroupExcluded":
      return { controlGroupExcluded: c.controlGroupExcluded };
    case "reachableBy":
      return { reachableBy: c.reachableBy };
    case "bucket":
      return { bucket: { from: c.from, to: c.to } };
    case "inSegment":
      return { inSegment: c.inSegment };
  }
}
