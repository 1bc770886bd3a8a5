/**
 * The reference evaluator: decides whether ONE profile, held in memory, matches a condition (SEMANTICS §6, §11
 * "Segments, exactly"; API.md "Segments", Meanings). It is the definition the SQL compilers are tested against, so
 * it is written for clarity, not speed, and every rule it applies is one a query can state.
 *
 * Values: an unknown property is absent. A property reads as one scalar, as a multi-value (any array: multi-value
 * properties, arrays in nested objects and documents) or as an object. Dates are profile properties of type `date`
 * (epoch ms; `DOB` is a `YYYY-MM-DD` calendar date, midnight of that day in the account timezone), the system fields
 * `createdAt`/`firstSeen`/`lastSeen`, strings in Portrait's stored ISO form (`2024-11-20T10:00:00.000Z`: event
 * properties and nested leaves that were sent as dates) and, inside compartment documents, numbers (epoch ms, like
 * `$creation_ts`).
 */
import { PortraitError } from "../errors.js";
import { ageFromDob, profileType } from "../profile.js";
import { own } from "../properties/keys.js";
import { parseIso8601 } from "../properties/values.js";
import { compareCodePoints } from "../text.js";
import type { ProfileDocument, ProfileState, StoredEvent } from "../types.js";
import {
  type Aggregate,
  type BehaviourCondition,
  type Channel,
  type Condition,
  type CountOp,
  type Literal,
  NEGATIVE_OPS,
  type Target,
  type Test,
  type Window,
} from "./condition.js";

/** Everything about one profile a condition can read. */
export interface Subject {
  state: ProfileState;
  /** Counted events only: the profile's own (never its orphans'), SEMANTICS §5. */
  events: StoredEvent[];
  documents: ProfileDocument[];
  devices: Array<{ pushToken: string | null }>;
}

export interface EvaluateContext {
  /** Epoch ms: rolling windows and `Age` are computed against it. */
  now: number;
  /** The account timezone (DOB's midnight, Age's calendar). */
  timezone: string;
  /** A saved segment's parsed condition, for `inSegment`; undefined when there is none. */
  segment: (id: string) => Condition | undefined;
}

/** `inSegment` chains longer than this are refused (the caller forbids cycles; this guards against a missed one). */
export const MAX_SEGMENT_NESTING = 32;

const DAY_MS = 86_400_000;

/** The raw tree's truth for one profile; see `isMember` for the membership rule around it. */
export function evaluate(cond: Condition, subject: Subject, ctx: EvaluateContext): boolean {
  return new Evaluator(subject, ctx).condition(cond, 0);
}

/** Segment membership: orphans and merge tombstones are never members (SEMANTICS §5), whatever the condition. */
export function isMember(cond: Condition, subject: Subject, ctx: EvaluateContext): boolean {
  if (subject.state.orphanOf !== null || subject.state.mergedInto !== null) return false;
  return evaluate(cond, subject, ctx);
}

// ---------------------------------------------------------------------------------------------------------------
// Values as conditions see them

type Atom =
  /** `date`: epoch ms when the string is in Portrait's stored ISO form. */
  | { t: "string"; v: string; date?: number }
  /** `date`: epoch ms when the number is a date (inside documents). */
  | { t: "number"; v: number; date?: number }
  | { t: "boolean"; v: boolean }
  | { t: "date"; ms: number };

type Value = { shape: "one"; atom: Atom } | { shape: "many"; atoms: Atom[] } | { shape: "object" };

const STORED_ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Epoch ms of a string in the ISO form Portrait stores dates in (`toIsoUtc`), else undefined. */
export function storedIsoMs(s: string): number | undefined {
  if (!STORED_ISO.test(s)) return undefined;
  const ms = Date.parse(s);
  return Number.isNaN(ms) ? undefined : ms;
}

function stringAtom(v: string): Atom {
  const date = storedIsoMs(v);
  return date === undefined ? { t: "string", v } : { t: "string", v, date };
}

/** A JSON value (nested leaf, document field, event property) as a condition reads it. */
function fromJson(v: unknown, numbersAreDates: boolean): Value | undefined {
  const atom = (x: unknown): Atom | undefined => {
    if (typeof x === "string") return stringAtom(x);
    if (typeof x === "number") return numbersAreDates ? { t: "number", v: x, date: x } : { t: "number", v: x };
    if (typeof x === "boolean") return { t: "boolean", v: x };
    return undefined;
  };
  if (v === undefined || v === null) return undefined;
  if (Array.isArray(v)) {
    const atoms = v.map(atom).filter((a) => a !== undefined);
    return atoms.length === 0 ? undefined : { shape: "many", atoms };
  }
  if (typeof v === "object") return { shape: "object" };
  const a = atom(v);
  return a === undefined ? undefined : { shape: "one", atom: a };
}

/**
 * A document's value as conditions read it: numbers are dates too, and an array with no scalar element (`[]`, a list
 * of objects, common in mediarithmics documents) is set, as an object is: it exists and holds no value. (A profile's
 * emptied multi-value has no key at all, SEMANTICS §4, and nested profile objects hold no arrays.)
 */
function documentValue(v: unknown): Value | undefined {
  return Array.isArray(v) ? (fromJson(v, true) ?? { shape: "object" }) : fromJson(v, true);
}

/** Follows `path` into nested objects; undefined when a step is missing or not an object. */
function walk(root: unknown, path: readonly string[]): unknown {
  let cur = root;
  for (const key of path) {
    if (typeof cur !== "object" || cur === null || Array.isArray(cur)) return undefined;
    cur = own(cur as Record<string, unknown>, key);
  }
  return cur;
}

function dateOf(a: Atom): number | undefined {
  if (a.t === "date") return a.ms;
  if (a.t === "boolean") return undefined;
  return a.date;
}

/** Midnight (account timezone) of a `YYYY-MM-DD` calendar date. */
function calendarMidnight(date: string, timezone: string): number | undefined {
  const parsed = /^\d{4}-\d{2}-\d{2}$/.test(date) ? parseIso8601(date, timezone) : null;
  return parsed?.ms;
}

// ---------------------------------------------------------------------------------------------------------------
// Operators

function eqAtom(a: Atom, l: Literal): boolean {
  switch (l.kind) {
    case "string":
      return a.t === "string" && a.v === l.value;
    case "number":
      return a.t === "number" && a.v === l.value;
    case "boolean":
      return a.t === "boolean" && a.v === l.value;
    case "date": {
      const d = dateOf(a);
      return d !== undefined && d >= l.start && d <= l.end;
    }
  }
}

/**
 * gt/gte/lt/lte: numbers with numbers, strings with strings by code point (SEMANTICS §11, as both stores compare text),
 * dates with dates (a date literal covers [start, end]).
 */
function orderAtom(a: Atom, op: "gt" | "gte" | "lt" | "lte", l: Literal): boolean {
  if (l.kind === "number") {
    if (a.t !== "number") return false;
    return op === "gt" ? a.v > l.value : op === "gte" ? a.v >= l.value : op === "lt" ? a.v < l.value : a.v <= l.value;
  }
  if (l.kind === "string") {
    if (a.t !== "string") return false;
    const c = compareCodePoints(a.v, l.value);
    return op === "gt" ? c > 0 : op === "gte" ? c >= 0 : op === "lt" ? c < 0 : c <= 0;
  }
  if (l.kind !== "date") return false;
  const d = dateOf(a);
  if (d === undefined) return false;
  return op === "gt" ? d > l.end : op === "gte" ? d >= l.start : op === "lt" ? d < l.start : d <= l.end;
}

/** Any atom of the value (one, or each element of a multi-value) passes. */
function anyAtom(v: Value, f: (a: Atom) => boolean): boolean {
  if (v.shape === "one") return f(v.atom);
  if (v.shape === "many") return v.atoms.some(f);
  return false;
}

/** Only a single value passes an ordering test; on a multi-value or an object ordering operators are false. */
function singleAtom(v: Value, f: (a: Atom) => boolean): boolean {
  return v.shape === "one" && f(v.atom);
}

/** A positive test on one value (absent → false, except that nothing else is absent-true). */
function positive(t: Test, v: Value | undefined, now: number): boolean {
  if (v === undefined) return false;
  switch (t.op) {
    case "exists":
      return true;
    case "eq":
      return anyAtom(v, (a) => eqAtom(a, t.value));
    case "in":
      return t.value.some((l) => anyAtom(v, (a) => eqAtom(a, l)));
    case "contains": {
      const s = t.value;
      return s.kind === "string" && anyAtom(v, (a) => a.t === "string" && a.v.includes(s.value));
    }
    case "startsWith": {
      const s = t.value;
      return s.kind === "string" && anyAtom(v, (a) => a.t === "string" && a.v.startsWith(s.value));
    }
    case "gt":
    case "gte":
    case "lt":
    case "lte": {
      const op = t.op;
      return singleAtom(v, (a) => orderAtom(a, op, t.value));
    }
    case "between": {
      const [lo, hi] = t.value;
      return singleAtom(v, (a) => orderAtom(a, "gte", lo) && orderAtom(a, "lte", hi));
    }
    case "before":
    case "after": {
      const l = t.value;
      if (l.kind !== "date") return false;
      return singleAtom(v, (a) => {
        const d = dateOf(a);
        return d !== undefined && (t.op === "before" ? d < l.start : d > l.end);
      });
    }
    case "withinLast": {
      const since = now - t.value.days * DAY_MS;
      return singleAtom(v, (a) => {
        const d = dateOf(a);
        return d !== undefined && d >= since;
      });
    }
    default:
      return false; // negative operators are handled by `holds`
  }
}

/**
 * A test over the candidate values of a target (one per profile property, one per matching document): a positive
 * operator holds when some candidate passes it; a negative one is exactly `not` of its positive operator.
 */
function holds(t: Test, candidates: ReadonlyArray<Value | undefined>, now: number): boolean {
  if (Object.hasOwn(NEGATIVE_OPS, t.op)) {
    const pos = { ...t, op: NEGATIVE_OPS[t.op as keyof typeof NEGATIVE_OPS] } as Test;
    return !candidates.some((v) => positive(pos, v, now));
  }
  return candidates.some((v) => positive(t, v, now));
}

function compare(x: number, op: CountOp, y: number): boolean {
  switch (op) {
    case "eq":
      return x === y;
    case "gt":
      return x > y;
    case "gte":
      return x >= y;
    case "lt":
      return x < y;
    case "lte":
      return x <= y;
  }
}

function aggregateHolds(a: Aggregate, x: number): boolean {
  return a.op === "between" ? x >= a.value[0] && x <= a.value[1] : compare(x, a.op, a.value);
}

/**
 * Whether a behaviour condition holds for a profile with no matching event, firstTime/lastTime apart (count 0, sum
 * 0, no avg): the SQL compilers decide from this whether profiles without events pass.
 */
export function passesWithNoEvents(c: BehaviourCondition): boolean {
  const countOk = c.count ? compare(0, c.count.op, c.count.value) : false;
  const sumOk = c.sum ? aggregateHolds(c.sum, 0) : true;
  return countOk && sumOk && c.avg === undefined;
}

function inWindow(ts: number, w: Window, now: number): boolean {
  if (w.kind === "withinLast") return ts >= now - w.days * DAY_MS;
  return ts >= w.from.start && (w.to === undefined || ts <= w.to.end);
}

// ---------------------------------------------------------------------------------------------------------------

class Evaluator {
  constructor(
    private readonly subject: Subject,
    private readonly ctx: EvaluateContext,
  ) {}

  condition(c: Condition, nesting: number): boolean {
    const { state } = this.subject;
    switch (c.kind) {
      case "all":
        return c.all.every((x) => this.condition(x, nesting));
      case "any":
        return c.any.some((x) => this.condition(x, nesting));
      case "not":
        return !this.condition(c.not, nesting);
      case "property":
        return holds(c, this.candidates(c.target), this.ctx.now);
      case "behaviour":
        return this.behaviour(c);
      case "type":
        return profileType(state) === c.type;
      case "test":
        return state.flags.test === c.test;
      case "controlGroupExcluded":
        return state.flags.controlGroupExcluded === c.controlGroupExcluded;
      case "reachableBy":
        return this.reachable(c.reachableBy);
      case "bucket":
        return state.bucket >= c.from && state.bucket <= c.to;
      case "inSegment": {
        if (nesting >= MAX_SEGMENT_NESTING) {
          throw new PortraitError(
            "INVALID_SEGMENT",
            `inSegment nests more than ${MAX_SEGMENT_NESTING} segments deep (is there a cycle through ${JSON.stringify(c.inSegment)}?)`,
          );
        }
        const target = this.ctx.segment(c.inSegment);
        return target !== undefined && this.condition(target, nesting + 1);
      }
    }
  }

  /** The values a property condition tests: the profile's one value, or one per document of the compartment. */
  private candidates(target: Target): Array<Value | undefined> {
    const { state, documents } = this.subject;
    switch (target.source) {
      case "system":
        return [this.system(target.field)];
      case "document":
        return documents
          .filter((d) => d.compartmentId === target.compartment)
          .map((d) => documentValue(walk(d.body, target.path)));
      case "profile": {
        const [key, ...rest] = target.path as [string, ...string[]];
        const entry = own(state.props, key);
        if (entry?.v === undefined) {
          if (key === "Age" && rest.length === 0) return [this.age()];
          return [undefined];
        }
        if (rest.length > 0) return [fromJson(walk(entry.v, rest), false)];
        if (entry.t === "date") {
          const ms = typeof entry.v === "number" ? entry.v : calendarMidnight(String(entry.v), this.ctx.timezone);
          return [ms === undefined ? undefined : { shape: "one", atom: { t: "date", ms } }];
        }
        return [fromJson(entry.v, false)];
      }
    }
  }

  /** Age: whole years from DOB at `now` in the account timezone (SEMANTICS §2). */
  private age(): Value | undefined {
    const dob = own(this.subject.state.props, "DOB")?.v;
    const age = typeof dob === "string" ? ageFromDob(dob, this.ctx.now, this.ctx.timezone) : null;
    return age === null ? undefined : { shape: "one", atom: { t: "number", v: age.years } };
  }

  private system(field: string): Value | undefined {
    const { state } = this.subject;
    const date = (ms: number | null): Value | undefined =>
      ms === null ? undefined : { shape: "one", atom: { t: "date", ms } };
    const text = (s: unknown): Value | undefined =>
      typeof s === "string" ? { shape: "one", atom: stringAtom(s) } : undefined;
    switch (field) {
      case "createdAt":
        return date(state.createdAt);
      case "firstSeen":
        return date(state.firstSeen);
      case "lastSeen":
        return date(state.lastSeen);
      case "acquiredFrom":
        return text(state.acquiredFrom);
      case "city":
        return text(state.location.city);
      case "country":
        return text(state.location.country);
      case "timezone":
        return text(own(state.props, "Timezone")?.v);
      default:
        return undefined;
    }
  }

  /** SEMANTICS §9 reachability. */
  private reachable(channel: Channel): boolean {
    const props = this.subject.state.props;
    const value = (key: string) => own(props, key)?.v;
    const set = (key: string) => value(key) !== undefined;
    switch (channel) {
      case "email":
        return set("Email") && value("MSG-email") !== false && value("MSG-dndEmail") !== true;
      case "sms":
        return set("Phone") && value("MSG-sms") !== false && value("MSG-dndPhone") !== true;
      case "whatsapp":
        return set("Phone") && value("MSG-whatsapp") !== false && value("MSG-dndPhone") !== true;
      case "push":
        return (
          this.subject.devices.some((d) => typeof d.pushToken === "string" && d.pushToken !== "") &&
          value("MSG-push") !== false
        );
    }
  }

  /**
   * Behaviour (SEMANTICS §11): M = counted events with the name(s), inside the window, passing every `where`;
   * did = (count ? |M| op v : |M| ≥ 1) ∧ sum/avg over M ∧ firstTime/lastTime on the first/last matching event ever.
   */
  private behaviour(c: BehaviourCondition): boolean {
    const { now } = this.ctx;
    const names = new Set(c.events);
    const where = c.where ?? [];
    const matching = this.subject.events.filter(
      (e) => names.has(e.name) && where.every((w) => holds(w, [eventValue(e, w.path)], now)),
    );
    const window = c.window;
    const m = window === undefined ? matching : matching.filter((e) => inWindow(e.ts, window, now));
    let did = c.count === undefined ? m.length >= 1 : compare(m.length, c.count.op, c.count.value);
    if (did && c.sum) did = aggregateHolds(c.sum, sumOf(m, c.sum.path));
    if (did && c.avg) did = m.length > 0 && aggregateHolds(c.avg, sumOf(m, c.avg.path) / m.length);
    if (did && c.firstTime) {
      const first = matching.reduce<number | undefined>(
        (min, e) => (min === undefined || e.ts < min ? e.ts : min),
        undefined,
      );
      did = first !== undefined && inWindow(first, c.firstTime, now);
    }
    if (did && c.lastTime) {
      const last = matching.reduce<number | undefined>(
        (max, e) => (max === undefined || e.ts > max ? e.ts : max),
        undefined,
      );
      did = last !== undefined && inWindow(last, c.lastTime, now);
    }
    return c.mode === "didNot" ? !did : did;
  }
}

/** An event property as a `where` reads it: scalars only (arrays such as `Charged.Items` are ignored). */
function eventValue(e: StoredEvent, path: readonly string[]): Value | undefined {
  if (path.length !== 1) return undefined;
  const v = own(e.properties, path[0] as string);
  return Array.isArray(v) ? undefined : fromJson(v, false);
}

/** Σ of a numeric event property over events; events without it (or with a non-number) count as 0. */
function sumOf(events: readonly StoredEvent[], path: readonly string[]): number {
  let sum = 0;
  for (const e of events) {
    const v = path.length === 1 ? own(e.properties, path[0] as string) : undefined;
    if (typeof v === "number") sum += v;
  }
  return sum;
}
