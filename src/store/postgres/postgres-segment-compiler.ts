/**
 * Segment conditions → PostgreSQL: the same compiler as ../sqlite/sqlite-segment-compiler.ts (read its header for
 * where each condition kind reads and why the result is exact), with PostgreSQL's SQL:
 * - profiles are keyed (account_id, id): a property leaf, and an event leaf without count or aggregate, is a
 *   correlated `EXISTS` on the profile (PostgreSQL: a semi-join at the top level; inside `not`/`any` a hashed set or
 *   a per-profile probe, chosen by cost), event groups with a count or aggregate are `p.id IN (SELECT … GROUP BY …)`
 *   (a hashed subplan inside `not`/`any`; the adapter raises work_mem for it);
 * - JSON is jsonb: a value is read with `->` one key at a time (a text key never indexes into an array, as
 *   evaluate.ts `walk` never does), typed with jsonb_typeof, and cast only inside a CASE that checked its type
 *   (PostgreSQL does not promise to evaluate the operands of AND in order);
 * - text compares under COLLATE "C" (code point order, SEMANTICS §11), with strpos/left, never LIKE;
 * - `storedIsoMs` is the SQL function portrait_iso_ms (postgres-segments.ts migration).
 *
 * Every value, path and name is a parameter ($1…, with its type cast); the text depends only on the tree's shape.
 */
import { PortraitError } from "../../engine/errors.js";
import {
  ageRange,
  dayRange,
  dobOnOrBeforeForAge,
  type InstantRange,
  instantRange,
  sinceOf,
} from "../../engine/segment/bounds.js";
import {
  type Aggregate,
  type BehaviourCondition,
  type Channel,
  type Condition,
  type EventPropertyCondition,
  type Literal,
  NEGATIVE_OPS,
  type PropertyCondition,
  type SystemField,
  type Test,
  type Window,
} from "../../engine/segment/condition.js";
import { type EvaluateContext, MAX_SEGMENT_NESTING, passesWithNoEvents } from "../../engine/segment/evaluate.js";
import { prefixEnd } from "../prefix-end.js";

export const ISO_MS_FUNCTION = "portrait_iso_ms";

const TRUE = "true";
const FALSE = "false";

type SqlType = "text" | "float8" | "bigint" | "int" | "text[]" | "float8[]";

export interface CompiledCondition {
  /** Boolean over `p`, never NULL; its first parameter is the account id. */
  where: string;
  params: unknown[];
  /** The condition holds for nobody. */
  empty: boolean;
}

/**
 * `parts` joined by `op`, as a balanced tree of parentheses: a long list (a big `any`, many `in` values) nests
 * log₂(n) deep, not n (the SQL parser limits expression depth).
 */
function joined(parts: readonly string[], op: "AND" | "OR"): string {
  if (parts.length <= 4) return parts.map((p) => `(${p})`).join(` ${op} `);
  const half = parts.length >> 1;
  return `(${joined(parts.slice(0, half), op)}) ${op} (${joined(parts.slice(half), op)})`;
}

function and(parts: readonly string[]): string {
  if (parts.includes(FALSE)) return FALSE;
  const kept = parts.filter((p) => p !== TRUE);
  if (kept.length === 0) return TRUE;
  return kept.length === 1 ? (kept[0] as string) : joined(kept, "AND");
}

function or(parts: readonly string[]): string {
  if (parts.includes(TRUE)) return TRUE;
  const kept = parts.filter((p) => p !== FALSE);
  if (kept.length === 0) return FALSE;
  return kept.length === 1 ? (kept[0] as string) : joined(kept, "OR");
}

function not(x: string): string {
  if (x === TRUE) return FALSE;
  if (x === FALSE) return TRUE;
  return `NOT (${x})`;
}

/** NULL → false, for expressions that may be NULL. */
function definite(x: string): string {
  return x === TRUE || x === FALSE ? x : `coalesce(${x}, false)`;
}

function positiveOf(t: Test): { test: Test; negated: boolean } {
  if (Object.hasOwn(NEGATIVE_OPS, t.op)) {
    return { test: { ...t, op: NEGATIVE_OPS[t.op as keyof typeof NEGATIVE_OPS] } as Test, negated: true };
  }
  return { test: t, negated: false };
}

/** How SQL reads one atom (see the SQLite compiler); values are NULL unless the atom is of that type. */
interface AtomSql {
  isString: string | null;
  str: string;
  isNumber: string | null;
  num: string;
  isBoolean: string | null;
  bool: string;
  dateMs: string | null;
  /** Ordering operators need a single value (stored rows: `NOT many`). */
  single: string;
  /** Calendar-date rows (stored DOB) and their text bounds, where there are any. */
  calendar: ((r: InstantRange) => string) | null;
  /** A stored `segment_values` row: `exists` excludes `x` rows, startsWith can use the index. */
  stored: boolean;
}

/** A jsonb value `x` as an atom; `numbersAreDates` for documents. */
function jsonAtom(x: string, numbersAreDates: boolean, single: string): AtomSql {
  const str = `(CASE WHEN jsonb_typeof(${x}) = 'string' THEN ${x} #>> '{}' END)`;
  const num = `(CASE WHEN jsonb_typeof(${x}) = 'number' THEN (${x})::float8 END)`;
  return {
    isString: `jsonb_typeof(${x}) = 'string'`,
    str,
    isNumber: `jsonb_typeof(${x}) = 'number'`,
    num,
    isBoolean: `jsonb_typeof(${x}) = 'boolean'`,
    bool: `(CASE WHEN jsonb_typeof(${x}) = 'boolean' THEN (${x})::boolean END)`,
    dateMs: numbersAreDates ? `coalesce(${num}, ${ISO_MS_FUNCTION}(${str}))` : `${ISO_MS_FUNCTION}(${str})`,
    single,
    calendar: null,
    stored: false,
  };
}

const SCALAR = "('string', 'number', 'boolean')";

/** More parameters than this and the condition is refused (PostgreSQL's protocol stops at 65,535). */
export const MAX_PARAMETERS = 20_000;

function tooLarge(): PortraitError {
  return new PortraitError(
    "INVALID_SEGMENT",
    `This condition is too large to evaluate: it needs over ${MAX_PARAMETERS} values (inSegment conditions included); use in lists rather than many eq conditions`,
    "where",
  );
}

/** How much of a path and of a text value the property index holds (postgres-segments.ts). */
const PATH_PREFIX = 120;
const STR_PREFIX = 256;

/** `s` is shorter than `n` characters (code points, as PostgreSQL's `left` counts), so `left(x, n) op s` is exact. */
function fitsPrefix(s: string, n: number): boolean {
  if (s.length < n) return true;
  let points = 0;
  for (const _ of s) {
    if (++points >= n) return false;
  }
  return true;
}

/** The week bucket of an event, exactly as `events_by_name` spells it (postgres-segments.ts). */
const WEEK_MS = 604_800_000;
const EVENT_WEEK = "(e.ts / 604800000)";

export class PostgresSegmentCompiler {
  readonly params: unknown[] = [];
  private readonly accountParam: string;

  constructor(
    accountId: string,
    private readonly ctx: EvaluateContext,
  ) {
    this.accountParam = this.param(accountId, "text");
  }

  param(value: unknown, type: SqlType): string {
    this.params.push(value);
    return `$${this.params.length}::${type}`;
  }

  /** The account's live profiles (never orphans or tombstones, SEMANTICS §5) for which the condition holds. */
  compile(c: Condition): CompiledCondition {
    const condition = this.node(c, 0);
    const live = `p.account_id = ${this.accountParam} AND p.merged_into IS NULL AND p.orphan_of IS NULL`;
    if (this.params.length > MAX_PARAMETERS) throw tooLarge();
    return { ...renumber(`${live} AND (${condition})`, this.params), empty: condition === FALSE };
  }

  private resolve(id: string, nesting: number): Condition | undefined {
    if (nesting >= MAX_SEGMENT_NESTING) {
      throw new PortraitError(
        "INVALID_SEGMENT",
        `inSegment nests more than ${MAX_SEGMENT_NESTING} segments deep (is there a cycle through ${JSON.stringify(id)}?)`,
      );
    }
    return this.ctx.segment(id);
  }

  private node(c: Condition, nesting: number): string {
    switch (c.kind) {
      case "all":
        return and(c.all.map((x) => this.node(x, nesting)));
      case "any":
        return or(c.any.map((x) => this.node(x, nesting)));
      case "not":
        return not(this.node(c.not, nesting));
      case "property":
        return this.property(c);
      case "behaviour":
        return this.behaviour(c);
      case "type":
        return this.type(c.type);
      case "test":
        return `coalesce(p.state #> '{flags,test}' = '${c.test}'::jsonb, false)`;
      case "controlGroupExcluded":
        return c.controlGroupExcluded ? "p.control_group_excluded" : "NOT p.control_group_excluded";
      case "reachableBy":
        return this.reachable(c.reachableBy);
      case "bucket": {
        const bucket = jsonAtom("p.state -> 'bucket'", false, TRUE).num;
        return definite(`${bucket} BETWEEN ${this.param(c.from, "float8")} AND ${this.param(c.to, "float8")}`);
      }
      case "inSegment": {
        const target = this.resolve(c.inSegment, nesting);
        return target === undefined ? FALSE : this.node(target, nesting + 1);
      }
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Property conditions

  private property(c: PropertyCondition): string {
    const { test, negated } = positiveOf(c);
    const positive = this.positiveProperty(c, test);
    return negated ? not(positive) : positive;
  }

  private positiveProperty(c: PropertyCondition, t: Test): string {
    const target = c.target;
    switch (target.source) {
      case "system":
        return this.system(target.field, t);
      case "document":
        return this.document(target.compartment, target.path, t);
      case "profile": {
        const path = target.path.join(".");
        const stored = this.valueSet(path, t);
        if (path !== "Age") return stored;
        // Age is derived from DOB unless a stored Age exists (evaluate.ts `candidates`).
        const noStoredAge = not(this.rowsOf("Age", TRUE));
        return or([stored, and([noStoredAge, this.ageFromDob(t)])]);
      }
    }
  }

  /**
   * Profiles with a stored row at `path` passing `rowTest` (over kind, many, str, num), as a correlated EXISTS: at the
   * top level PostgreSQL makes it a semi-join (hash or nested loop), inside `not`/`any` it chooses by cost between a
   * hashed set and a probe of the profile's rows by primary key, so a few candidates never build a large set.
   */
  private rowsOf(path: string, rowTest: string): string {
    if (rowTest === FALSE) return FALSE;
    const where = rowTest === TRUE ? "" : ` AND (${rowTest})`;
    const p = this.param(path, "text");
    // The index holds path_key = left(path, 120) (postgres-segments.ts, migration 5); a shorter path is equal to its
    // prefix exactly, so it needs no second test (which would also keep the set from being read from the index
    // alone, and make PostgreSQL count its selectivity twice).
    const pathTest = fitsPrefix(path, PATH_PREFIX)
      ? `path_key = ${p}`
      : `path_key = left(${p}, ${PATH_PREFIX}) AND path = ${p}`;
    return `EXISTS (SELECT 1 FROM segment_values WHERE account_id = ${this.accountParam} AND profile_id = p.id
      AND ${pathTest}${where})`;
  }

  /**
   * A comparison of a stored row's text with a parameter, on `str_key` = `left(str, 256)`, which the index holds (see
   * postgres-segments.ts). For a value shorter than 256 characters that comparison is already exact in code point
   * order (a longer text differs from it within its first 256 characters, or has it as a proper prefix); a longer
   * value is compared on the prefix first, then on the whole text.
   */
  private strCompare(op: "=" | TextOp, value: string): string {
    const p = this.param(value, "text");
    if (fitsPrefix(value, STR_PREFIX)) return `str_key ${op} ${p}`;
    const indexed = op === ">" ? ">=" : op === "<" ? "<=" : op;
    return `str_key ${indexed} left(${p}, ${STR_PREFIX}) AND str ${op} ${p}`;
  }

  private valueSet(path: string, t: Test): string {
    const atom: AtomSql = { ...ROW_ATOM, calendar: (r) => this.calendarRows(r) };
    return this.rowsOf(path, this.atomTest(t, atom));
  }

  private calendarRows(r: InstantRange): string {
    const days = dayRange(r, this.ctx.timezone);
    if (days === null) return FALSE;
    return `kind = 'D' AND ${this.strCompare(">=", days.from)} AND ${this.strCompare("<", days.until)}`;
  }

  private ageFromDob(t: Test): string {
    const years = (lo: number, hi: number | null): string => {
      const parts: string[] = [];
      if (lo >= 1) {
        const bound = dobOnOrBeforeForAge(lo, this.ctx.now, this.ctx.timezone);
        if (bound === null) return FALSE;
        parts.push(this.strCompare("<=", bound));
      }
      if (hi !== null) {
        const bound = dobOnOrBeforeForAge(hi + 1, this.ctx.now, this.ctx.timezone);
        if (bound !== null) parts.push(this.strCompare(">", bound));
      }
      return and(parts);
    };
    let test: string;
    if (t.op === "exists") {
      test = TRUE;
    } else if (t.op === "in") {
      test = or(
        t.value.map((l) => {
          const r = ageRange({ op: "eq", value: l });
          return r === null ? FALSE : years(r.lo, r.hi);
        }),
      );
    } else {
      const r = ageRange(t);
      test = r === null ? FALSE : years(r.lo, r.hi);
    }
    if (test === FALSE) return FALSE;
    return this.rowsOf("DOB", and(["kind = 'D'", "NOT many", test]));
  }

  /** A positive test on one atom (evaluate.ts `positive`). */
  private atomTest(t: Test, a: AtomSql): string {
    const dates = (r: InstantRange | null): string => {
      if (r === null) return FALSE;
      const parts: string[] = [];
      if (a.dateMs !== null) parts.push(this.inRange(a.dateMs, r));
      if (a.calendar) parts.push(a.calendar(r));
      return or(parts);
    };
    switch (t.op) {
      case "exists":
        return a.stored ? "kind <> 'x'" : TRUE;
      case "eq":
        return this.eqAtom(a, t.value, dates);
      case "in": {
        // Strings and numbers travel as one array parameter each, however many there are.
        const strings = t.value.flatMap((l) => (l.kind === "string" ? [l.value] : []));
        const numbers = t.value.flatMap((l) => (l.kind === "number" ? [l.value] : []));
        return or([
          strings.length === 0 || a.isString === null
            ? FALSE
            : and([
                a.isString,
                // Stored rows: the indexed prefix, which is exact when every value is shorter (see strCompare).
                a.stored
                  ? `str_key = ANY(${this.param(
                      strings.map((v) => Array.from(v).slice(0, STR_PREFIX).join("")),
                      "text[]",
                    )})`
                  : TRUE,
                a.stored && strings.every((v) => fitsPrefix(v, STR_PREFIX))
                  ? TRUE
                  : `${a.str} = ANY(${this.param(strings, "text[]")})`,
              ]),
          numbers.length === 0 || a.isNumber === null
            ? FALSE
            : and([a.isNumber, `${a.num} = ANY(${this.param(numbers, "float8[]")})`]),
          ...t.value.filter((l) => l.kind !== "string" && l.kind !== "number").map((l) => this.eqAtom(a, l, dates)),
        ]);
      }
      case "contains": {
        if (t.value.kind !== "string" || a.isString === null) return FALSE;
        return and([a.isString, `strpos(${a.str}, ${this.param(t.value.value, "text")}) > 0`]);
      }
      case "startsWith": {
        if (t.value.kind !== "string" || a.isString === null) return FALSE;
        const s = t.value.value;
        const parts = [a.isString];
        if (a.stored) {
          // Stored rows: a range on the C-collated index, [s, the first text after every text starting with s), which
          // is exactly "starts with s" in code point order; with no second test, PostgreSQL sizes it from the index's
          // statistics (an extra prefix test would be guessed at 0.5% and turn a big answer into nested loops).
          parts.push(this.strCompare(">=", s));
          const end = prefixEnd(s);
          if (end !== null) parts.push(this.strCompare("<", end));
          if (!fitsPrefix(s, STR_PREFIX))
            parts.push(`left(${a.str}, char_length(${this.param(s, "text")})) = ${this.param(s, "text")}`);
        } else {
          const p = this.param(s, "text");
          parts.push(`left(${a.str}, char_length(${p})) = ${p}`);
        }
        return and(parts);
      }
      case "gt":
      case "gte":
      case "lt":
      case "lte":
      case "between": {
        const l = t.op === "between" ? t.value[0] : t.value;
        if (l.kind === "number") {
          if (a.isNumber === null) return FALSE;
          const cmp =
            t.op === "between"
              ? `${a.num} BETWEEN ${this.param((t.value[0] as { value: number }).value, "float8")} AND ${this.param((t.value[1] as { value: number }).value, "float8")}`
              : `${a.num} ${SQL_OP[t.op]} ${this.param(l.value, "float8")}`;
          return and([a.single, a.isNumber, cmp]);
        }
        if (l.kind === "string") {
          if (a.isString === null) return FALSE;
          const bounds: Array<[TextOp, string]> =
            t.op === "between"
              ? [
                  [">=", (t.value[0] as { value: string }).value],
                  ["<=", (t.value[1] as { value: string }).value],
                ]
              : [[TEXT_OP[t.op], l.value]];
          // Code point order is COLLATE "C" on a UTF8 database: stored rows have it on their columns (and an index
          // for the range); a jsonb text takes the database's default collation, which may order by locale.
          const compare = ([op, value]: [TextOp, string]) =>
            a.stored ? this.strCompare(op, value) : `${a.str} COLLATE "C" ${op} ${this.param(value, "text")}`;
          return and([a.single, a.isString, ...bounds.map(compare)]);
        }
        return and([a.single, dates(instantRange(t, this.ctx.now))]);
      }
      case "before":
      case "after":
      case "withinLast":
        return and([a.single, dates(instantRange(t, this.ctx.now))]);
      default:
        return FALSE;
    }
  }

  private eqAtom(a: AtomSql, l: Literal, dates: (r: InstantRange | null) => string): string {
    switch (l.kind) {
      case "string":
        if (a.isString === null) return FALSE;
        return and([
          a.isString,
          a.stored ? this.strCompare("=", l.value) : `${a.str} = ${this.param(l.value, "text")}`,
        ]);
      case "number":
        return a.isNumber === null ? FALSE : and([a.isNumber, `${a.num} = ${this.param(l.value, "float8")}`]);
      case "boolean":
        return a.isBoolean === null ? FALSE : and([a.isBoolean, `${a.bool} = ${l.value}`]);
      case "date":
        return dates({ lo: l.start, loInclusive: true, hi: l.end, hiInclusive: true });
    }
  }

  private inRange(x: string, r: InstantRange): string {
    const parts = [`${x} IS NOT NULL`];
    if (r.lo !== null) parts.push(`${x} ${r.loInclusive ? ">=" : ">"} ${this.param(r.lo, "float8")}`);
    if (r.hi !== null) parts.push(`${x} ${r.hiInclusive ? "<=" : "<"} ${this.param(r.hi, "float8")}`);
    return and(parts);
  }

  // -------------------------------------------------------------------------------------------------------------
  // System fields, flags, type, reachability

  private system(field: SystemField, t: Test): string {
    if (field === "timezone") {
      const test = this.atomTest(t, { ...ROW_ATOM, single: TRUE });
      if (test === FALSE) return FALSE;
      return this.rowsOf("Timezone", and(["kind = 's'", "NOT many", test]));
    }
    if (field === "createdAt" || field === "firstSeen" || field === "lastSeen") {
      // firstSeen and lastSeen live in the activity columns (store/activity-columns.ts), not in the state document.
      const x = field === "createdAt" ? "p.created_at::float8" : field === "firstSeen" ? "p.first_seen" : "p.last_seen";
      const atom: AtomSql = { ...NO_ATOM, dateMs: x };
      return definite(and([`${x} IS NOT NULL`, this.atomTest(t, atom)]));
    }
    const x = field === "acquiredFrom" ? "p.state -> 'acquiredFrom'" : `p.state #> '{location,${field}}'`;
    const atom = jsonAtom(x, false, TRUE);
    const text: AtomSql = { ...NO_ATOM, isString: atom.isString, str: atom.str, dateMs: atom.dateMs };
    return definite(and([`jsonb_typeof(${x}) = 'string'`, this.atomTest(t, text)]));
  }

  private isSet(key: string): string {
    return this.rowsOf(key, TRUE);
  }

  private isBoolean(key: string, value: boolean): string {
    return this.rowsOf(key, `kind = 'b' AND NOT many AND num = ${value ? 1 : 0}`);
  }

  private type(type: "anonymous" | "identified" | "customer"): string {
    const charged = jsonAtom("p.state #> '{stats,charged}'", false, TRUE).num;
    const customer = definite(`${charged} > 0`);
    if (type === "customer") return customer;
    const identified = or([
      `EXISTS (SELECT 1 FROM jsonb_each(p.state -> 'identities') i
        WHERE jsonb_typeof(i.value) = 'array' AND jsonb_array_length(i.value) > 0)`,
      this.isSet("Email"),
      this.isSet("Phone"),
    ]);
    return and([not(customer), type === "identified" ? identified : not(identified)]);
  }

  private reachable(channel: Channel): string {
    switch (channel) {
      case "email":
        return and([
          this.isSet("Email"),
          not(this.isBoolean("MSG-email", false)),
          not(this.isBoolean("MSG-dndEmail", true)),
        ]);
      case "sms":
        return and([
          this.isSet("Phone"),
          not(this.isBoolean("MSG-sms", false)),
          not(this.isBoolean("MSG-dndPhone", true)),
        ]);
      case "whatsapp":
        return and([
          this.isSet("Phone"),
          not(this.isBoolean("MSG-whatsapp", false)),
          not(this.isBoolean("MSG-dndPhone", true)),
        ]);
      case "push":
        return and([
          `p.id IN (SELECT profile_id FROM devices WHERE account_id = ${this.accountParam}
            AND push_token IS NOT NULL AND push_token <> '')`,
          not(this.isBoolean("MSG-push", false)),
        ]);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Compartment documents

  private document(compartment: string, path: readonly string[], t: Test): string {
    let leaf = "d.body";
    for (const key of path) leaf = `(${leaf} -> ${this.param(key, "text")})`;
    const scalar = (x: string, single: boolean) =>
      and([`jsonb_typeof(${x}) IN ${SCALAR}`, this.atomTest(t, jsonAtom(x, true, single ? TRUE : FALSE))]);
    // CASE, not AND: jsonb_array_elements fails on anything but an array, and AND does not order its operands.
    const element = (test: string) =>
      test === FALSE
        ? FALSE
        : `(CASE WHEN jsonb_typeof(${leaf}) = 'array'
            THEN EXISTS (SELECT 1 FROM jsonb_array_elements(${leaf}) e(v) WHERE ${test}) ELSE false END)`;
    const test =
      t.op === "exists"
        ? `jsonb_typeof(${leaf}) IN ('object', 'array', 'string', 'number', 'boolean')`
        : or([scalar(leaf, true), element(scalar("e.v", false))]);
    if (test === FALSE) return FALSE;
    return `p.id IN (SELECT d.profile_id FROM documents d WHERE d.account_id = ${this.accountParam}
      AND d.compartment_id = ${this.param(compartment, "text")} AND ${definite(test)})`;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Behaviour (SEMANTICS §11; see the SQLite compiler)

  private behaviour(c: BehaviourCondition): string {
    const matching = this.matchingEvents(c);
    if (matching === FALSE) {
      const did = passesWithNoEvents(c) && c.firstTime === undefined && c.lastTime === undefined;
      return c.mode === "didNot" ? (did ? FALSE : TRUE) : did ? TRUE : FALSE;
    }
    // The week bounds let the name index (account_id, name, week, seq) skip to the window; the exact window follows.
    const inWindow = and([matching, ...(c.window ? [this.weeks(c.window), this.window("e.ts", c.window)] : [])]);
    const count = "count(*)";
    // portrait_fsum: sum(float8) that overflows to Infinity instead of failing the query (schema version 10).
    const sum = (a: Aggregate) => `coalesce(portrait_fsum(${this.eventNumber(a.path)}), 0)`;
    const groupPasses = and([
      c.count ? `${count} ${SQL_OP[c.count.op]} ${this.param(c.count.value, "bigint")}` : `${count} >= 1`,
      c.sum ? this.aggregate(c.sum, sum(c.sum)) : TRUE,
      c.avg ? this.aggregate(c.avg, `(${sum(c.avg)} / ${count})`) : TRUE,
    ]);
    const parts: string[] = [];
    if (passesWithNoEvents(c)) {
      const failing = not(groupPasses);
      if (failing !== FALSE) parts.push(`p.id NOT IN (${this.eventGroups(inWindow, failing)})`);
    } else if (groupPasses === `${count} >= 1`) {
      // Correlated, like rowsOf: a semi-join at the top level, a hashed set or a probe of the profile's timeline
      // (the primary key) inside `not`/`any`, whichever PostgreSQL finds cheaper for the profiles it tests.
      parts.push(`EXISTS (SELECT 1 FROM events e WHERE ${inWindow} AND e.profile_id = p.id)`);
    } else {
      parts.push(`p.id IN (${this.eventGroups(inWindow, groupPasses)})`);
    }
    for (const [w, fn] of [
      [c.firstTime, "min"],
      [c.lastTime, "max"],
    ] as const) {
      if (w === undefined) continue;
      parts.push(`p.id IN (${this.eventGroups(matching, this.window(`${fn}(e.ts)`, w))})`);
    }
    const did = and(parts);
    return c.mode === "didNot" ? not(did) : did;
  }

  private eventGroups(where: string, having: string): string {
    return `SELECT e.profile_id FROM events e WHERE ${where} GROUP BY e.profile_id${having === TRUE ? "" : ` HAVING ${having}`}`;
  }

  private matchingEvents(c: BehaviourCondition): string {
    const base =
      c.events.length === 1
        ? `e.name = ${this.param(c.events[0], "text")}`
        : `e.name = ANY(${this.param(c.events, "text[]")})`;
    return and([`e.account_id = ${this.accountParam}`, base, ...(c.where ?? []).map((w) => this.eventCondition(w))]);
  }

  /** The week buckets of `events_by_name` a window covers (the same expression as the index's). */
  private weeks(w: Window): string {
    const week = (ms: number) => this.param(Math.floor(ms / WEEK_MS), "bigint");
    if (w.kind === "withinLast") return `${EVENT_WEEK} >= ${week(Math.ceil(sinceOf(w.days, this.ctx.now)))}`;
    const parts = [`${EVENT_WEEK} >= ${week(w.from.start)}`];
    if (w.to !== undefined) parts.push(`${EVENT_WEEK} <= ${week(w.to.end)}`);
    return and(parts);
  }

  private window(x: string, w: Window): string {
    if (w.kind === "withinLast") {
      return `${x} >= ${this.param(Math.ceil(sinceOf(w.days, this.ctx.now)), "bigint")}`;
    }
    const parts = [`${x} >= ${this.param(w.from.start, "bigint")}`];
    if (w.to !== undefined) parts.push(`${x} <= ${this.param(w.to.end, "bigint")}`);
    return and(parts);
  }

  private aggregate(a: Aggregate, x: string): string {
    if (a.op === "between") {
      return `${x} BETWEEN ${this.param(a.value[0], "float8")} AND ${this.param(a.value[1], "float8")}`;
    }
    return `${x} ${SQL_OP[a.op]} ${this.param(a.value, "float8")}`;
  }

  /** A one-key event property as jsonb, or null when events are flat and the PATH has several keys. */
  private eventValue(path: readonly string[]): string | null {
    if (path.length !== 1) return null;
    return `(e.properties -> ${this.param(path[0], "text")})`;
  }

  private eventNumber(path: readonly string[]): string {
    const x = this.eventValue(path);
    return x === null ? "0::float8" : `coalesce(${jsonAtom(x, false, TRUE).num}, 0)`;
  }

  private eventCondition(w: EventPropertyCondition): string {
    const { test, negated } = positiveOf(w);
    const x = this.eventValue(w.path);
    let positive: string;
    if (x === null) {
      positive = FALSE;
    } else {
      const body = this.atomTest(test, jsonAtom(x, false, TRUE));
      positive =
        body === FALSE
          ? FALSE
          : definite(and([`jsonb_typeof(${x}) IN ('string', 'number', 'boolean', 'object')`, body]));
    }
    return negated ? not(positive) : positive;
  }
}

/**
 * Parameters of branches that constant folding dropped never reach the SQL, and PostgreSQL refuses a parameter it
 * cannot see: the ones used are renumbered $1, $2, … in order of first use. `$n::` appears nowhere else in the text.
 */
function renumber(where: string, params: readonly unknown[]): { where: string; params: unknown[] } {
  const used = new Map<number, number>();
  const out: unknown[] = [];
  const text = where.replace(/\$(\d+)::/g, (_m, n: string) => {
    const old = Number(n);
    let now = used.get(old);
    if (now === undefined) {
      out.push(params[old - 1]);
      now = out.length;
      used.set(old, now);
    }
    return `$${now}::`;
  });
  return { where: text, params: out };
}

/** A stored `segment_values` row as an atom (index-values.ts kinds). */
const ROW_ATOM: AtomSql = {
  isString: "kind = 's'",
  str: "str",
  isNumber: "kind = 'n'",
  num: "num",
  isBoolean: "kind = 'b'",
  bool: "(num = 1)",
  dateMs: "(CASE WHEN kind IN ('s', 'd') THEN num END)",
  single: "NOT many",
  calendar: null,
  stored: true,
};

const NO_ATOM: AtomSql = {
  isString: null,
  str: "NULL",
  isNumber: null,
  num: "NULL",
  isBoolean: null,
  bool: "NULL",
  dateMs: null,
  single: TRUE,
  calendar: null,
  stored: false,
};

type TextOp = ">" | ">=" | "<" | "<=";

const TEXT_OP: Readonly<Record<"gt" | "gte" | "lt" | "lte", TextOp>> = { gt: ">", gte: ">=", lt: "<", lte: "<=" };

const SQL_OP: Readonly<Record<"eq" | "gt" | "gte" | "lt" | "lte", string>> = {
  eq: "=",
  gt: ">",
  gte: ">=",
  lt: "<",
  lte: "<=",
};
