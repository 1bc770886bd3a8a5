/**
 * Untrusted `where` JSON → a checked condition tree (API.md "Segments", the grammar). Nothing else sees a condition
 * before this has checked all of it: anything outside the grammar is INVALID_SEGMENT with a sentence naming the
 * problem and `field`, the JSON path of the fault (`where.all[2].value`).
 */
import { PortraitError, show } from "../errors.js";
import { charLength, isPlainObject, own } from "../properties/keys.js";
import { SYSTEM_PROPERTY_TYPES } from "../properties/parse.js";
import { describeValue, parseDateInput, parseIso8601, zonedWallClockToEpoch } from "../properties/values.js";
import { compareCodePoints } from "../text.js";
import type { ValueType } from "../types.js";
import {
  AGGREGATE_OPS,
  type Aggregate,
  type AggregateOp,
  type BehaviourCondition,
  type BehaviourMode,
  CHANNELS,
  COUNT_OPS,
  type Condition,
  type CountOp,
  type DateLiteral,
  type Days,
  type EventPropertyCondition,
  type Literal,
  NEGATIVE_OPS,
  OPS,
  type Op,
  PROFILE_TYPES,
  SYSTEM_FIELDS,
  type SystemField,
  type Target,
  type Test,
  type Window,
} from "./condition.js";

/** Children of one `all`/`any` (also: elements of a `where`, names of a `didAny`). */
export const MAX_CHILDREN = 100;
/** Levels of conditions: a lone condition is 1, each `all`/`any`/`not` around it adds one. */
export const MAX_DEPTH = 10;
/** Elements of an `in`/`notIn` list. */
export const MAX_IN_VALUES = 1000;
/** `withinLast` at most this many days (100 years). */
export const MAX_DAYS = 36_500;
export const MAX_PATH_SEGMENT_LENGTH = 120;
/** Segments of one PATH (`a.b.c` is 3); profile objects nest 3 deep, documents deeper. */
export const MAX_PATH_SEGMENTS = 32;
export const MAX_EVENT_NAME_LENGTH = 120;
/** Longest `compartment` and `inSegment` id. */
export const MAX_ID_LENGTH = 256;

export interface ParseConditionOptions {
  /** The account timezone: date-only values are whole days in it, offset-less date-times are wall-clock times in it. */
  timezone: string;
  /**
   * The caller's clock (epoch ms). Parsing does not depend on it: rolling windows (`withinLast`) and `Age` are
   * computed when the condition is evaluated, so a parsed condition stays valid and can be cached.
   */
  now?: number;
  /** The account's registered profile property types by path (`Points`, `address.city`). */
  types?: (path: string) => ValueType | undefined;
  /** The registered types of event properties, per event name. */
  eventTypes?: (event: string, path: string) => ValueType | undefined;
  /** JSON path of the condition itself, the prefix of every error's `field`; default `where`. */
  root?: string;
}

/** Types Portrait knows without a registry: the system properties (SEMANTICS §4) and the derived `Age`. */
const BUILT_IN_TYPES: Readonly<Record<string, ValueType>> = { ...SYSTEM_PROPERTY_TYPES, Age: "number" };

const SYSTEM_FIELD_TYPES: Readonly<Record<SystemField, ValueType>> = {
  createdAt: "date",
  firstSeen: "date",
  lastSeen: "date",
  acquiredFrom: "string",
  city: "string",
  country: "string",
  timezone: "string",
};

const DISCRIMINATORS = [
  "all",
  "any",
  "not",
  "property",
  "system",
  "did",
  "didNot",
  "didAny",
  "type",
  "test",
  "controlGroupExcluded",
  "reachableBy",
  "bucket",
  "inSegment",
] as const;

const BEHAVIOUR_KEYS = ["count", "withinLast", "from", "to", "where", "firstTime", "lastTime", "sum", "avg"] as const;

/** Parses and checks a whole condition tree; see API.md "Segments" and docs/semantics.md. */
export function parseCondition(input: unknown, opts: ParseConditionOptions): Condition {
  return new ConditionParser(opts).condition(input, opts.root ?? "where", 1);
}

function bad(message: string, field: string): never {
  throw new PortraitError("INVALID_SEGMENT", message, field);
}

function child(at: string, key: string): string {
  return at === "" ? key : `${at}.${key}`;
}

function item(at: string, i: number): string {
  return `${at}[${i}]`;
}

function oneOf<T extends string>(list: readonly T[], v: unknown): v is T {
  return typeof v === "string" && (list as readonly string[]).includes(v);
}

function listText(list: readonly string[]): string {
  return list.join(", ");
}

/** The object at `at`, with every key checked against `allowed` (the first unknown one is named). */
function objectWith(v: unknown, at: string, what: string, allowed: readonly string[]): Record<string, unknown> {
  if (!isPlainObject(v)) bad(`${what} must be a JSON object, got ${describeValue(v)}`, at);
  for (const key of Object.keys(v)) {
    if (!allowed.includes(key)) {
      bad(`Unknown key ${show(key)} in ${what}; allowed keys are ${listText(allowed)}`, child(at, key));
    }
  }
  return v;
}

function requireKey(obj: Record<string, unknown>, key: string, at: string, what: string): unknown {
  const v = own(obj, key);
  if (v === undefined) bad(`${what} needs ${show(key)}`, child(at, key));
  return v;
}

/** PATH: a key or `a.b.c`, each segment 1-120 characters. */
export function parsePath(v: unknown, at: string): string[] {
  if (typeof v !== "string")
    bad(`A property path must be a string such as "Plan" or "address.city", got ${describeValue(v)}`, at);
  const segments = v.split(".");
  if (segments.length > MAX_PATH_SEGMENTS) {
    bad(`A property path has at most ${MAX_PATH_SEGMENTS} segments, got ${segments.length}`, at);
  }
  for (const s of segments) {
    const n = s.length <= MAX_PATH_SEGMENT_LENGTH ? s.length : charLength(s);
    if (n < 1 || n > MAX_PATH_SEGMENT_LENGTH) {
      bad(
        `Each segment of property path ${show(v)} must be 1-${MAX_PATH_SEGMENT_LENGTH} characters (${v === "" ? "the path is empty" : "check for an empty or overlong segment"})`,
        at,
      );
    }
  }
  return segments;
}

function parseEventName(v: unknown, at: string): string {
  if (typeof v !== "string") bad(`An event name must be a string, got ${describeValue(v)}`, at);
  const n = v.length <= MAX_EVENT_NAME_LENGTH ? v.length : charLength(v);
  if (n < 1 || n > MAX_EVENT_NAME_LENGTH || v.trim() === "") {
    bad(`An event name must be 1-${MAX_EVENT_NAME_LENGTH} characters and not blank, got ${show(v)}`, at);
  }
  return v;
}

function parseId(v: unknown, at: string, what: string): string {
  if (typeof v !== "string" || v.length < 1 || v.length > MAX_ID_LENGTH) {
    bad(`${what} must be a string of 1-${MAX_ID_LENGTH} characters, got ${describeValue(v)}`, at);
  }
  return v;
}

/** A `between` pair out of order: low after high (numbers, code points, or the instants a date covers). */
function orderedAbove(lo: Literal, hi: Literal): boolean {
  if (lo.kind === "date" && hi.kind === "date") return lo.start > hi.end;
  if (lo.kind === "string" && hi.kind === "string") return compareCodePoints(lo.value, hi.value) > 0;
  if (lo.kind === "number" && hi.kind === "number") return lo.value > hi.value;
  return false;
}

function finiteNumber(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v);
}

/** `{"days": n}`, 0 ≤ n ≤ 36 500 (0: from now on, which events up to a day ahead can be). */
function parseDays(v: unknown, at: string): Days {
  const obj = objectWith(v, at, `withinLast`, ["days"]);
  const days = requireKey(obj, "days", at, `withinLast`);
  if (!finiteNumber(days) || days < 0 || days > MAX_DAYS) {
    bad(`withinLast days must be a number from 0 to ${MAX_DAYS}, got ${describeValue(days)}`, child(at, "days"));
  }
  return { days };
}

/** The kind of value a key holds, for checking condition values: a registered type, or unknown. */
type KeyType = ValueType | undefined;

/** How an operator reads its value (and so which literal a string is). */
type ValueRole = "equality" | "text" | "order" | "date";

const ROLE: Readonly<Record<Op, ValueRole | "days" | "none">> = {
  eq: "equality",
  neq: "equality",
  in: "equality",
  notIn: "equality",
  contains: "text",
  notContains: "text",
  startsWith: "text",
  gt: "order",
  gte: "order",
  lt: "order",
  lte: "order",
  between: "order",
  before: "date",
  after: "date",
  withinLast: "days",
  exists: "none",
  notExists: "none",
};

class ConditionParser {
  constructor(private readonly opts: ParseConditionOptions) {}

  condition(v: unknown, at: string, depth: number): Condition {
    if (!isPlainObject(v)) bad(`A condition must be a JSON object, got ${describeValue(v)}`, at);
    if (depth > MAX_DEPTH) bad(`Conditions nest at most ${MAX_DEPTH} levels deep`, at);
    const keys = Object.keys(v);
    const present = DISCRIMINATORS.filter((k) => Object.hasOwn(v, k));
    const first = present[0];
    if (first === undefined) {
      const unknown = keys[0];
      const what = `a condition is one of ${listText(DISCRIMINATORS)}`;
      if (unknown === undefined) bad(`An empty object is not a condition: ${what}`, at);
      bad(`Unknown key ${show(unknown)}: ${what}`, child(at, unknown));
    }
    const second = present[1];
    if (second !== undefined) {
      bad(
        `${show(second)} cannot be combined with ${show(first)} in one condition; wrap them in "all" or "any"`,
        child(at, second),
      );
    }
    switch (first) {
      case "all":
      case "any":
        return this.group(v, first, at, depth);
      case "not": {
        objectWith(v, at, `a "not" condition`, ["not"]);
        return { kind: "not", not: this.condition(v.not, child(at, "not"), depth + 1) };
      }
      case "property":
      case "system":
        return this.property(v, at);
      case "did":
      case "didNot":
      case "didAny":
        return this.behaviour(v, first, at);
      case "type": {
        objectWith(v, at, `a "type" condition`, ["type"]);
        if (!oneOf(PROFILE_TYPES, v.type)) {
          bad(`"type" must be one of ${listText(PROFILE_TYPES)}, got ${describeValue(v.type)}`, child(at, "type"));
        }
        return { kind: "type", type: v.type };
      }
      case "test":
      case "controlGroupExcluded": {
        objectWith(v, at, `a ${show(first)} condition`, [first]);
        const flag = v[first];
        if (typeof flag !== "boolean")
          bad(`${show(first)} must be true or false, got ${describeValue(flag)}`, child(at, first));
        return first === "test"
          ? { kind: "test", test: flag }
          : { kind: "controlGroupExcluded", controlGroupExcluded: flag };
      }
      case "reachableBy": {
        objectWith(v, at, `a "reachableBy" condition`, ["reachableBy"]);
        if (!oneOf(CHANNELS, v.reachableBy)) {
          bad(
            `"reachableBy" must be one of ${listText(CHANNELS)}, got ${describeValue(v.reachableBy)}`,
            child(at, "reachableBy"),
          );
        }
        return { kind: "reachableBy", reachableBy: v.reachableBy };
      }
      case "bucket":
        return this.bucket(v, at);
      case "inSegment": {
        objectWith(v, at, `an "inSegment" condition`, ["inSegment"]);
        return {
          kind: "inSegment",
          inSegment: parseId(v.inSegment, child(at, "inSegment"), `"inSegment" (a segment id)`),
        };
      }
    }
  }

  private group(v: Record<string, unknown>, kind: "all" | "any", at: string, depth: number): Condition {
    objectWith(v, at, `an ${show(kind)} condition`, [kind]);
    const list = v[kind];
    const listAt = child(at, kind);
    if (!Array.isArray(list)) bad(`${show(kind)} must be an array of conditions, got ${describeValue(list)}`, listAt);
    if (list.length > MAX_CHILDREN) {
      bad(`${show(kind)} holds at most ${MAX_CHILDREN} conditions, got ${list.length}; nest groups for more`, listAt);
    }
    const children = list.map((c, i) => this.condition(c, item(listAt, i), depth + 1));
    return kind === "all" ? { kind: "all", all: children } : { kind: "any", any: children };
  }

  private bucket(v: Record<string, unknown>, at: string): Condition {
    objectWith(v, at, `a "bucket" condition`, ["bucket"]);
    const bAt = child(at, "bucket");
    const b = objectWith(v.bucket, bAt, `"bucket"`, ["from", "to"]);
    const bound = (key: "from" | "to"): number => {
      const n = requireKey(b, key, bAt, `"bucket"`);
      if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 999) {
        bad(`bucket ${key} must be a whole number from 0 to 999, got ${describeValue(n)}`, child(bAt, key));
      }
      return n;
    };
    const from = bound("from");
    const to = bound("to");
    if (from > to) bad(`bucket "from" (${from}) must not be above "to" (${to})`, child(bAt, "to"));
    return { kind: "bucket", from, to };
  }

  private property(v: Record<string, unknown>, at: string): Condition {
    let target: Target;
    let type: KeyType;
    let name: string;
    if (Object.hasOwn(v, "system")) {
      objectWith(v, at, `a "system" condition`, ["system", "op", "value"]);
      if (!oneOf(SYSTEM_FIELDS, v.system)) {
        bad(`"system" must be one of ${listText(SYSTEM_FIELDS)}, got ${describeValue(v.system)}`, child(at, "system"));
      }
      target = { source: "system", field: v.system };
      type = SYSTEM_FIELD_TYPES[v.system];
      name = `system field ${show(v.system)}`;
    } else {
      objectWith(v, at, `a property condition`, ["property", "compartment", "op", "value"]);
      const path = parsePath(v.property, child(at, "property"));
      const joined = path.join(".");
      name = `property ${show(joined)}`;
      if (Object.hasOwn(v, "compartment")) {
        const compartment = parseId(v.compartment, child(at, "compartment"), `"compartment"`);
        target = { source: "document", compartment, path };
        type = undefined; // documents are free JSON: no registry
        name = `document property ${show(joined)}`;
      } else {
        target = { source: "profile", path };
        type = own(BUILT_IN_TYPES, joined) ?? this.opts.types?.(joined);
      }
    }
    return { kind: "property", target, ...this.test(v, at, type, name) };
  }

  /** `op` and `value` of a property condition, checked against the key's type. */
  private test(v: Record<string, unknown>, at: string, type: KeyType, name: string): Test {
    const op = requireKey(v, "op", at, "A property condition");
    if (!oneOf(OPS, op)) bad(`"op" must be one of ${listText(OPS)}, got ${describeValue(op)}`, child(at, "op"));
    const role = ROLE[op];
    const vAt = child(at, "value");
    const raw = own(v, "value");
    if (role === "none") {
      if (Object.hasOwn(v, "value")) bad(`${op} takes no value; leave "value" out`, vAt);
      return { op: op as "exists" | "notExists" };
    }
    if (raw === undefined) bad(`${op} needs a "value"`, vAt);
    this.checkOpFits(op, role, type, name, child(at, "op"));
    switch (op) {
      case "withinLast":
        return { op, value: parseDays(raw, vAt) };
      case "in":
      case "notIn": {
        if (!Array.isArray(raw)) bad(`${op} needs an array of values, got ${describeValue(raw)}`, vAt);
        if (raw.length > MAX_IN_VALUES) bad(`${op} takes at most ${MAX_IN_VALUES} values, got ${raw.length}`, vAt);
        return { op, value: raw.map((x, i) => this.literal(x, op, "equality", type, name, item(vAt, i))) };
      }
      case "between": {
        if (!Array.isArray(raw) || raw.length !== 2) {
          bad(`between needs a [low, high] pair, got ${describeValue(raw)}`, vAt);
        }
        let lo = this.literal(raw[0], op, "order", type, name, item(vAt, 0));
        let hi = this.literal(raw[1], op, "order", type, name, item(vAt, 1));
        if (lo.kind !== hi.kind && typeof raw[0] === "string" && typeof raw[1] === "string") {
          // An unregistered key, where one text reads as a date and the other does not: a range of texts.
          lo = { kind: "string", value: raw[0] };
          hi = { kind: "string", value: raw[1] };
        }
        if (lo.kind !== hi.kind) {
          bad(`between needs two numbers, two strings or two dates, got ${describeValue(raw)}`, vAt);
        }
        if (orderedAbove(lo, hi)) bad(`between needs low ≤ high, got ${describeValue(raw)}`, vAt);
        return { op, value: [lo, hi] };
      }
      default:
        return { op, value: this.literal(raw, op, role as ValueRole, type, name, vAt) };
    }
  }

  /** Refuses an operator that cannot apply to the key's registered type. */
  private checkOpFits(op: Op, role: ValueRole | "days", type: KeyType, name: string, at: string): void {
    if (type === undefined) return;
    const fits =
      role === "equality"
        ? type !== "object"
        : role === "text"
          ? type === "string" || type === "multi"
          : role === "order"
            ? type === "number" || type === "date" || type === "string" || type === "multi"
            : type === "date" || type === "string" || type === "multi";
    if (!fits) bad(`${op} does not apply to ${name}, which is a ${type}`, at);
  }

  /** One condition value, typed by the operator's role and the key's type. */
  private literal(raw: unknown, op: Op, role: ValueRole, type: KeyType, name: string, at: string): Literal {
    const wrong = (needs: string): never =>
      bad(`${op} on ${name}${type ? ` (a ${type})` : ""} needs ${needs}, got ${describeValue(raw)}`, at);
    const dateNeeded = 'a date (ISO-8601 such as "2024-11-20" or "$D_<epoch seconds>")';
    const asDate = (): DateLiteral => {
      const d = typeof raw === "string" ? this.date(raw, at) : null;
      return d ?? wrong(dateNeeded);
    };
    if (role === "date") return asDate();
    if (role === "text") {
      return typeof raw === "string" ? { kind: "string", value: raw } : wrong("a string");
    }
    if (role === "order") {
      switch (type) {
        case "number":
          return finiteNumber(raw) ? { kind: "number", value: raw === 0 ? 0 : raw } : wrong("a number");
        case "date":
          return asDate();
        case "string":
        case "multi":
          // Text, even when it looks like a date: a string key orders by code point (SEMANTICS §11).
          return typeof raw === "string" ? this.text(raw, at) : wrong("a string");
        default: {
          // No registry to ask (an unregistered key, a document): a number, else a date, else text.
          if (finiteNumber(raw)) return { kind: "number", value: raw === 0 ? 0 : raw };
          if (typeof raw !== "string") return wrong(`a number, a string or ${dateNeeded}`);
          return this.date(raw, at) ?? { kind: "string", value: raw };
        }
      }
    }
    // equality
    switch (type) {
      case "date":
        return asDate();
      case "number":
        return finiteNumber(raw) ? { kind: "number", value: raw === 0 ? 0 : raw } : wrong("a number");
      case "boolean":
        return typeof raw === "boolean" ? { kind: "boolean", value: raw } : wrong("true or false");
      case "string":
      case "multi":
        return typeof raw === "string" ? this.text(raw, at) : wrong("a string");
      default:
        if (typeof raw === "string") return this.text(raw, at);
        if (finiteNumber(raw)) return { kind: "number", value: raw === 0 ? 0 : raw };
        if (typeof raw === "boolean") return { kind: "boolean", value: raw };
        return wrong("a string, a number or true/false");
    }
  }

  /**
   * A text value, but `$D_<epoch>` is a date whatever the key (SEMANTICS §4: that is how dates travel): an event
   * property or nested leaf sent as a date is stored as ISO text, and is compared with it as an instant, as
   * `before`/`after` do; text that is no date never passes. Compared as the text "$D_…", it sorted before every date.
   * An ISO-8601 literal stays text here: a string key may hold ISO-looking text sent as text, to be matched as sent.
   */
  private text(raw: string, at: string): Literal {
    return (raw.startsWith("$D_") ? this.date(raw, at) : null) ?? { kind: "string", value: raw };
  }

  /** A date text → its covered epoch-ms range, or null when it is not a date. */
  private date(text: string, at: string): DateLiteral | null {
    if (text.startsWith("$D_")) {
      let ms: number | null;
      try {
        ms = parseDateInput(text, this.opts.timezone, at);
      } catch (e) {
        if (e instanceof PortraitError) bad(e.message, at);
        throw e;
      }
      return ms === null ? null : { kind: "date", text, start: ms, end: ms, dateOnly: false };
    }
    const parsed = parseIso8601(text, this.opts.timezone);
    if (parsed === null) return null;
    if (!parsed.dateOnly) return { kind: "date", text, start: parsed.ms, end: parsed.ms, dateOnly: false };
    const [year, month, day] = text.trim().split("-").map(Number) as [number, number, number];
    const next = zonedWallClockToEpoch(
      { year, month, day: day + 1, hour: 0, minute: 0, second: 0 },
      this.opts.timezone,
    );
    return { kind: "date", text, start: parsed.ms, end: next - 1, dateOnly: true };
  }

  private behaviour(v: Record<string, unknown>, mode: BehaviourMode, at: string): BehaviourCondition {
    objectWith(v, at, `a ${show(mode)} condition`, [mode, ...BEHAVIOUR_KEYS]);
    const nAt = child(at, mode);
    let events: string[];
    if (mode === "didAny") {
      const names = v.didAny;
      if (!Array.isArray(names) || names.length === 0) {
        bad(`"didAny" needs a non-empty array of event names, got ${describeValue(names)}`, nAt);
      }
      if (names.length > MAX_CHILDREN)
        bad(`"didAny" takes at most ${MAX_CHILDREN} event names, got ${names.length}`, nAt);
      events = names.map((n, i) => parseEventName(n, item(nAt, i)));
    } else {
      events = [parseEventName(v[mode], nAt)];
    }
    const out: BehaviourCondition = { kind: "behaviour", mode, events };
    if (Object.hasOwn(v, "count")) out.count = this.count(v.count, child(at, "count"));
    const window = this.window(v, at, true);
    if (window) out.window = window;
    if (Object.hasOwn(v, "where")) out.where = this.where(v.where, child(at, "where"), events);
    for (const key of ["firstTime", "lastTime"] as const) {
      if (Object.hasOwn(v, key)) {
        const kAt = child(at, key);
        objectWith(v[key], kAt, show(key), ["withinLast", "from", "to"]);
        const w = this.window(v[key] as Record<string, unknown>, kAt, false);
        if (w) out[key] = w;
      }
    }
    for (const key of ["sum", "avg"] as const) {
      if (Object.hasOwn(v, key)) out[key] = this.aggregate(v[key], child(at, key), key);
    }
    return out;
  }

  private count(v: unknown, at: string): { op: CountOp; value: number } {
    const obj = objectWith(v, at, `"count"`, ["op", "value"]);
    const op = requireKey(obj, "op", at, `"count"`);
    if (!oneOf(COUNT_OPS, op))
      bad(`count op must be one of ${listText(COUNT_OPS)}, got ${describeValue(op)}`, child(at, "op"));
    const value = requireKey(obj, "value", at, `"count"`);
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
      bad(`count value must be a whole number ≥ 0, got ${describeValue(value)}`, child(at, "value"));
    }
    return { op, value: value === 0 ? 0 : value };
  }

  /** WINDOW: `withinLast {days}` or `from`/`to` dates; inline in a behaviour or the object of firstTime/lastTime. */
  private window(v: Record<string, unknown>, at: string, inline: boolean): Window | undefined {
    const has = (k: string) => Object.hasOwn(v, k);
    if (has("withinLast")) {
      const other = has("from") ? "from" : has("to") ? "to" : undefined;
      if (other) bad(`A window is either "withinLast" or "from"/"to", not both`, child(at, other));
      return { kind: "withinLast", days: parseDays(v.withinLast, child(at, "withinLast")).days };
    }
    if (has("to") && !has("from")) bad(`A window with "to" needs "from"`, child(at, "from"));
    if (!has("from")) {
      if (inline) return undefined;
      bad(`A window needs "withinLast" or "from"`, at);
    }
    const from = this.windowDate(v.from, child(at, "from"));
    if (!has("to")) return { kind: "range", from };
    const to = this.windowDate(v.to, child(at, "to"));
    if (to.end < from.start) bad(`Window "to" (${to.text}) must not be before "from" (${from.text})`, child(at, "to"));
    return { kind: "range", from, to };
  }

  private windowDate(raw: unknown, at: string): DateLiteral {
    const d = typeof raw === "string" ? this.date(raw, at) : null;
    if (d === null) {
      bad(
        `A window date must be ISO-8601 (such as "2024-11-20") or "$D_<epoch seconds>", got ${describeValue(raw)}`,
        at,
      );
    }
    return d;
  }

  private where(v: unknown, at: string, events: readonly string[]): EventPropertyCondition[] {
    if (!Array.isArray(v)) bad(`"where" must be an array of event property conditions, got ${describeValue(v)}`, at);
    if (v.length > MAX_CHILDREN) bad(`"where" holds at most ${MAX_CHILDREN} conditions, got ${v.length}`, at);
    return v.map((c, i) => this.eventCondition(c, item(at, i), events));
  }

  private eventCondition(v: unknown, at: string, events: readonly string[]): EventPropertyCondition {
    if (isPlainObject(v)) {
      for (const key of ["compartment", "system"]) {
        if (Object.hasOwn(v, key)) {
          bad(`${show(key)} is not allowed in "where": its conditions name a property of the event`, child(at, key));
        }
      }
    }
    const obj = objectWith(v, at, `an event property condition`, ["property", "op", "value"]);
    const path = parsePath(requireKey(obj, "property", at, "An event property condition"), child(at, "property"));
    const joined = path.join(".");
    const name = `event property ${show(joined)}`;
    const lookup = this.opts.eventTypes;
    const types = lookup ? [...new Set(events.map((e) => lookup(e, joined)))].filter((t) => t !== undefined) : [];
    if (types.length === 0) return { path, ...this.test(obj, at, undefined, name) };
    // didAny pools events whose registries may differ: the value must suit at least one of them.
    let firstError: unknown;
    for (const type of types) {
      try {
        return { path, ...this.test(obj, at, type, name) };
      } catch (e) {
        firstError ??= e;
      }
    }
    throw firstError;
  }

  private aggregate(v: unknown, at: string, key: "sum" | "avg"): Aggregate {
    const obj = objectWith(v, at, show(key), ["property", "op", "value"]);
    const path = parsePath(requireKey(obj, "property", at, show(key)), child(at, "property"));
    const op = requireKey(obj, "op", at, show(key));
    if (!oneOf<AggregateOp>(AGGREGATE_OPS, op)) {
      bad(`${key} op must be one of ${listText(AGGREGATE_OPS)}, got ${describeValue(op)}`, child(at, "op"));
    }
    const vAt = child(at, "value");
    const value = requireKey(obj, "value", at, show(key));
    if (op === "between") {
      if (!Array.isArray(value) || value.length !== 2 || !finiteNumber(value[0]) || !finiteNumber(value[1])) {
        bad(`${key} between needs a [low, high] pair of numbers, got ${describeValue(value)}`, vAt);
      }
      const lo = value[0] === 0 ? 0 : value[0];
      const hi = value[1] === 0 ? 0 : value[1];
      if (lo > hi) bad(`${key} between needs low ≤ high, got ${describeValue(value)}`, vAt);
      return { path, op, value: [lo, hi] };
    }
    if (!finiteNumber(value)) bad(`${key} ${op} needs a number, got ${describeValue(value)}`, vAt);
    return { path, op, value: value === 0 ? 0 : value };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Walking a parsed tree

/** The ids a condition's `inSegment` nodes name, each once, in order of appearance (for the caller's cycle check). */
export function referencedSegments(c: Condition): string[] {
  const out = new Set<string>();
  const walk = (n: Condition): void => {
    switch (n.kind) {
      case "all":
        n.all.forEach(walk);
        break;
      case "any":
        n.any.forEach(walk);
        break;
      case "not":
        walk(n.not);
        break;
      case "inSegment":
        out.add(n.inSegment);
        break;
    }
  };
  walk(c);
  return [...out];
}

/**
 * The same condition with its negative forms spelled as `not` of the positive ones (SEMANTICS §11): `didNot X …`
 * becomes `not(did X …)` with the same fields; `neq`/`notIn`/`notContains`/`notExists` property conditions become
 * `not` of `eq`/`in`/`contains`/`exists`. Conditions inside a behaviour's `where` are about one event and stay as
 * they are (their negative operators are `not` of the positive one for that event).
 */
export function normalise(c: Condition): Condition {
  switch (c.kind) {
    case "all":
      return { kind: "all", all: c.all.map(normalise) };
    case "any":
      return { kind: "any", any: c.any.map(normalise) };
    case "not":
      return { kind: "not", not: normalise(c.not) };
    case "behaviour":
      return c.mode === "didNot" ? { kind: "not", not: { ...c, mode: "did" } } : c;
    case "property":
      if (Object.hasOwn(NEGATIVE_OPS, c.op)) {
        const positive = NEGATIVE_OPS[c.op as keyof typeof NEGATIVE_OPS];
        return { kind: "not", not: { ...c, op: positive } as Condition };
      }
      return c;
    default:
      return c;
  }
}
