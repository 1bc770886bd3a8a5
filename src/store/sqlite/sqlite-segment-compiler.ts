/**
 * Segment conditions → SQLite (STYLE: each condition kind has its evaluator in engine/segment/evaluate.ts and its SQL
 * here; postgres-segment-compiler.ts is the same file for PostgreSQL). The output is one boolean expression over the
 * profile row `p`, true exactly when `evaluate` (evaluate.ts) is true for that profile, never NULL (so that `NOT`
 * is boolean negation, as negative operators require: SEMANTICS §11).
 *
 * Where each kind reads:
 * - profile properties: `segment_values`, one row per atom a condition can see (engine/segment/index-values.ts),
 *   kept beside the profile at every write (sqlite-segments.ts). `Age` is computed from DOB's text at query time;
 *   dates of DOB are compared as text against bounds for the account timezone (engine/segment/bounds.ts);
 * - behaviour: the events table, through `events_by_name` (name, week, seq, profile_pk, ts) or the profile's timeline,
 *   one row per event, keyed by the profile that owns it: a profile's own events only, so an orphan's events (which
 *   stay on the orphan) never count for the person it points to (SEMANTICS §5), and merges, undos and deletions move
 *   or remove the rows the indexes read. Event properties are read from the event's JSON;
 * - system fields, flags, bucket and type: the profile row (its columns or its JSON state);
 * - compartment documents: the documents table, walked key by key with json_each;
 * - `inSegment`: the saved segment's condition, expanded in place.
 *
 * A leaf that reads a set ("profiles with an event like this", "with a value like that") has two forms, the same
 * test either way: `set`, an uncorrelated `p.pk IN (SELECT …)` that SQLite builds once per statement and probes per
 * profile (one pass over the set: right when many profiles are looked at), and `row`, a correlated sub-query on the
 * one profile (property rows by their primary key; events through the profile's timeline: right when few are).
 * `drivers` lists the sets every member must be in (positive conjuncts of the top-level `all`), so the query can start
 * from them instead of scanning the account; the planner (sqlite-segments.ts) picks the start and the forms.
 *
 * Every value, path and name travels as a named parameter (`@p0`…); the SQL text depends only on the tree's shape.
 * The only texts spliced in are this file's own constants (column names, JSON paths of system fields).
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

/** The SQL function (registered on every connection that runs segment SQL) giving `storedIsoMs` of a text. */
export const ISO_MS_FUNCTION = "portrait_iso_ms";

const TRUE = "1";
const FALSE = "0";

/** More parameters than this and the condition is refused (SQLite stops at 32,766 variables). */
export const MAX_PARAMETERS = 20_000;

/** A set of profile keys (`SELECT profile_pk …`), and how to count its raw rows cheaply (for choosing a driver). */
export interface ProfileSet {
  select: string;
  /** `SELECT 1 …` over the rows the set is made of: a count of these (capped) bounds the set's size. */
  rows: string;
}

/** A set every member belongs to: the top-level conjunct (its index) that is exactly "p is in this set". */
export interface Driver extends ProfileSet {
  conjunct: number;
}

export type LeafForm = "set" | "row";

/** Stored property rows: as a set, and as the correlated test of one profile. */
interface ValueRows extends ProfileSet {
  exists: string;
}

export interface CompileOptions {
  /** The form of property-value leaves. */
  values: LeafForm;
  /** The form of each behaviour leaf, by its number in `events` of a first compile. */
  events: (leaf: number) => LeafForm;
  /** Top-level conjuncts the starting set already guarantees: left out of `where`. */
  skip: ReadonlySet<number>;
}

export const SET_FORMS: CompileOptions = { values: "set", events: () => "set", skip: new Set() };

export interface CompiledCondition {
  /** Boolean over `p`, never NULL. */
  where: string;
  /** Sets every member belongs to: candidates to start the query from. */
  drivers: Driver[];
  /** Each behaviour leaf's event rows (name and window; `SELECT 1 …`), in compile order. */
  events: string[];
  params: Record<string, unknown>;
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

export function and(parts: readonly string[]): string {
  if (parts.includes(FALSE)) return FALSE;
  const kept = parts.filter((p) => p !== TRUE);
  if (kept.length === 0) return TRUE;
  return kept.length === 1 ? (kept[0] as string) : joined(kept, "AND");
}

export function or(parts: readonly string[]): string {
  if (parts.includes(TRUE)) return TRUE;
  const kept = parts.filter((p) => p !== FALSE);
  if (kept.length === 0) return FALSE;
  return kept.length === 1 ? (kept[0] as string) : joined(kept, "OR");
}

export function not(x: string): string {
  if (x === TRUE) return FALSE;
  if (x === FALSE) return TRUE;
  return `NOT (${x})`;
}

/** The positive form of a test (SEMANTICS §11: a negative operator is exactly `not` of its positive one). */
function positiveOf(t: Test): { test: Test; negated: boolean } {
  if (Object.hasOwn(NEGATIVE_OPS, t.op)) {
    return { test: { ...t, op: NEGATIVE_OPS[t.op as keyof typeof NEGATIVE_OPS] } as Test, negated: true };
  }
  return { test: t, negated: false };
}

/**
 * How SQL reads one atom of a value (a stored row, an event property, a document field, a system field):
 * expressions for its type tests and its value, any of them null when the atom can never be of that type.
 */
interface AtomSql {
  isString: string | null;
  str: string;
  isNumber: string | null;
  num: string;
  isBoolean: string | null;
  /** 1 for true, 0 for false (only read when isBoolean). */
  bool: string;
  /** Its epoch ms when it reads as a date, else NULL; null when it never does. */
  dateMs: string | null;
}

export class SqliteSegmentCompiler {
  readonly params: Record<string, unknown> = {};
  private n = 0;
  private readonly accountParam: string;
  private readonly events: string[] = [];

  constructor(
    accountId: string,
    private readonly ctx: EvaluateContext,
    private readonly options: CompileOptions = SET_FORMS,
  ) {
    this.accountParam = this.param(accountId);
  }

  param(value: unknown): string {
    const name = `p${this.n++}`;
    this.params[name] = typeof value === "boolean" ? (value ? 1 : 0) : value;
    return `@${name}`;
  }

  /** The whole condition, with the sets of its top-level `all` that can drive the query. */
  compile(c: Condition): CompiledCondition {
    const drivers: Driver[] = [];
    const parts = this.conjuncts(c, 0).map((x, conjunct) => {
      const compiled = this.node(x.c, x.nesting);
      if (compiled.set) drivers.push({ ...compiled.set, conjunct });
      return this.options.skip.has(conjunct) ? TRUE : compiled.sql;
    });
    if (this.n > MAX_PARAMETERS) {
      throw new PortraitError(
        "INVALID_SEGMENT",
        `This condition is too large to evaluate: it needs over ${MAX_PARAMETERS} values (inSegment conditions included); use in lists rather than many eq conditions`,
        "where",
      );
    }
    return { where: and(parts), drivers, events: this.events, params: this.params };
  }

  /** The conditions of a top-level `all` (nested `all`s and `inSegment`s flattened). */
  private conjuncts(c: Condition, nesting: number): Array<{ c: Condition; nesting: number }> {
    if (c.kind === "all") return c.all.flatMap((x) => this.conjuncts(x, nesting));
    if (c.kind === "inSegment") {
      const target = this.resolve(c.inSegment, nesting);
      return target === undefined ? [{ c, nesting }] : this.conjuncts(target, nesting + 1);
    }
    return [{ c, nesting }];
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

  /** "p has a stored row like this", in the form the options ask for; `set` for the planner. */
  private hasRow(set: ValueRows): { sql: string; set: ProfileSet } {
    return { sql: this.options.values === "set" ? `p.pk IN (${set.select})` : set.exists, set };
  }

  /** One condition; `set` when it is exactly "p is in this set". */
  private node(c: Condition, nesting: number): { sql: string; set?: ProfileSet } {
    switch (c.kind) {
      case "all":
        return { sql: and(c.all.map((x) => this.node(x, nesting).sql)) };
      case "any":
        return { sql: or(c.any.map((x) => this.node(x, nesting).sql)) };
      case "not":
        return { sql: not(this.node(c.not, nesting).sql) };
      case "property":
        return this.property(c);
      case "behaviour":
        return this.behaviour(c);
      case "type":
        return { sql: this.type(c.type) };
      case "test":
        return { sql: `coalesce(json_type(p.state, '$.flags.test') = ${c.test ? "'true'" : "'false'"}, 0)` };
      case "controlGroupExcluded":
        return { sql: `p.control_group_excluded = ${c.controlGroupExcluded ? 1 : 0}` };
      case "reachableBy":
        return { sql: this.reachable(c.reachableBy) };
      case "bucket":
        return {
          sql: `coalesce(json_extract(p.state, '$.bucket') BETWEEN ${this.param(c.from)} AND ${this.param(c.to)}, 0)`,
        };
      case "inSegment": {
        const target = this.resolve(c.inSegment, nesting);
        return target === undefined ? { sql: FALSE } : this.node(target, nesting + 1);
      }
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Property conditions

  private property(c: PropertyCondition): { sql: string; set?: ProfileSet } {
    const { test, negated } = positiveOf(c);
    const positive = this.positiveProperty(c, test);
    return negated ? { sql: not(positive.sql) } : positive;
  }

  private positiveProperty(c: PropertyCondition, t: Test): { sql: string; set?: ProfileSet } {
    const target = c.target;
    switch (target.source) {
      case "system":
        return { sql: this.system(target.field, t) };
      case "document":
        return { sql: this.document(target.compartment, target.path, t) };
      case "profile": {
        const path = target.path.join(".");
        const stored = this.valueSet(path, t);
        if (path !== "Age") return stored === FALSE ? { sql: FALSE } : this.hasRow(stored);
        // Age is derived from DOB unless a stored Age exists (evaluate.ts `candidates`).
        const derived = this.ageFromDob(t);
        const storedAge = stored === FALSE ? FALSE : this.hasRow(stored).sql;
        const noStoredAge = not(this.hasRow(this.rowsOf(this.paramPath("Age"), TRUE)).sql);
        return { sql: or([storedAge, derived === FALSE ? FALSE : and([noStoredAge, this.hasRow(derived).sql])]) };
      }
    }
  }

  private paramPath(path: string): string {
    return this.param(path);
  }

  /**
   * Rows of one path passing `rowTest` (over the columns kind, many, str, num). Rows name their path by id
   * (`segment_paths`): the sub-query runs once per statement, and a path the account never stored is NULL, no row.
   */
  private rowsOf(pathParam: string, rowTest: string): ValueRows {
    const pathId = `(SELECT id FROM segment_paths WHERE account_id = ${this.accountParam} AND path = ${pathParam})`;
    const from = `FROM segment_values WHERE path_id = ${pathId}`;
    const where = rowTest === TRUE ? "" : ` AND (${rowTest})`;
    return {
      select: `SELECT profile_pk ${from}${where}`,
      rows: `SELECT 1 ${from}${where}`,
      // The primary key (profile_pk, path_id, ord) finds the profile's rows of the path. Named, because with the path
      // id a sub-query the planner took a value index instead (path_id, kind, value range), reading every row of the
      // range for each profile: the looser B6 segment went from 10 to 270 ms.
      exists: `EXISTS (SELECT 1 FROM segment_values INDEXED BY ${BY_PROFILE}
        WHERE profile_pk = p.pk AND path_id = ${pathId}${where})`,
    };
  }

  /** Profiles with a stored atom at `path` passing the positive test, or FALSE when no atom can. */
  private valueSet(path: string, t: Test): ValueRows | typeof FALSE {
    const test = this.atomTest(t, ROW_ATOM, "many = 0", (r) => this.calendarRows(r));
    return test === FALSE ? FALSE : this.rowsOf(this.paramPath(path), test);
  }

  /** Rows holding a calendar date (kind `D`) within an instant range, compared as text (bounds.ts). */
  private calendarRows(r: InstantRange): string {
    const days = dayRange(r, this.ctx.timezone);
    if (days === null) return FALSE;
    return `kind = 'D' AND str >= ${this.param(days.from)} AND str < ${this.param(days.until)}`;
  }

  /** Age from DOB (a `D` row at DOB): whole years at now in the account timezone (bounds.ts). */
  private ageFromDob(t: Test): ValueRows | typeof FALSE {
    const years = (lo: number, hi: number | null): string => {
      const parts: string[] = [];
      if (lo >= 1) {
        const bound = dobOnOrBeforeForAge(lo, this.ctx.now, this.ctx.timezone);
        if (bound === null) return FALSE;
        parts.push(`str <= ${this.param(bound)}`);
      }
      if (hi !== null) {
        const bound = dobOnOrBeforeForAge(hi + 1, this.ctx.now, this.ctx.timezone);
        if (bound !== null) parts.push(`str > ${this.param(bound)}`);
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
    return this.rowsOf(this.paramPath("DOB"), and(["kind = 'D'", "many = 0", test]));
  }

  /**
   * A positive test on one atom (evaluate.ts `positive`): `single` restricts ordering operators to single values
   * (`many = 0` for stored rows); `calendar` handles calendar-date atoms (stored DOB rows) where there are any.
   */
  private atomTest(t: Test, a: AtomSql, single: string, calendar: ((r: InstantRange) => string) | null): string {
    const dates = (r: InstantRange | null): string => {
      if (r === null) return FALSE;
      const parts: string[] = [];
      if (a.dateMs !== null) parts.push(this.inRange(a.dateMs, r));
      if (calendar) parts.push(calendar(r));
      return or(parts);
    };
    switch (t.op) {
      case "exists":
        return a === ROW_ATOM ? "kind <> 'x'" : TRUE;
      case "eq":
        return this.eqAtom(a, t.value, dates);
      case "in": {
        // Strings and numbers travel as one JSON array each, however many there are.
        const strings = t.value.flatMap((l) => (l.kind === "string" ? [l.value] : []));
        const numbers = t.value.flatMap((l) => (l.kind === "number" ? [l.value] : []));
        const list = (values: unknown[]) => `(SELECT value FROM json_each(${this.param(JSON.stringify(values))}))`;
        return or([
          strings.length === 0 || a.isString === null ? FALSE : and([a.isString, `${a.str} IN ${list(strings)}`]),
          numbers.length === 0 || a.isNumber === null ? FALSE : and([a.isNumber, `${a.num} IN ${list(numbers)}`]),
          ...t.value.filter((l) => l.kind !== "string" && l.kind !== "number").map((l) => this.eqAtom(a, l, dates)),
        ]);
      }
      case "contains": {
        if (t.value.kind !== "string" || a.isString === null) return FALSE;
        return and([a.isString, `instr(${a.str}, ${this.param(t.value.value)}) > 0`]);
      }
      case "startsWith": {
        if (t.value.kind !== "string" || a.isString === null) return FALSE;
        const s = t.value.value;
        const p = this.param(s);
        const end = prefixEnd(s);
        return and([
          a.isString,
          `${a.str} >= ${p}`,
          end === null ? TRUE : `${a.str} < ${this.param(end)}`,
          `substr(${a.str}, 1, length(${p})) = ${p}`,
        ]);
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
              ? `${a.num} BETWEEN ${this.param((t.value[0] as { value: number }).value)} AND ${this.param((t.value[1] as { value: number }).value)}`
              : `${a.num} ${SQL_OP[t.op]} ${this.param(l.value)}`;
          return and([single, a.isNumber, cmp]);
        }
        if (l.kind === "string") {
          // Code point order: TEXT compares as UTF-8 bytes under BINARY, the only collation these columns and JSON
          // values have; stored rows meet the (path_id, kind, str) index as a range.
          if (a.isString === null) return FALSE;
          const bounds =
            t.op === "between"
              ? [
                  `${a.str} >= ${this.param((t.value[0] as { value: string }).value)}`,
                  `${a.str} <= ${this.param((t.value[1] as { value: string }).value)}`,
                ]
              : [`${a.str} ${SQL_OP[t.op]} ${this.param(l.value)}`];
          return and([single, a.isString, ...bounds]);
        }
        return and([single, dates(instantRange(t, this.ctx.now))]);
      }
      case "before":
      case "after":
      case "withinLast":
        return and([single, dates(instantRange(t, this.ctx.now))]);
      default:
        return FALSE;
    }
  }

  private eqAtom(a: AtomSql, l: Literal, dates: (r: InstantRange | null) => string): string {
    switch (l.kind) {
      case "string":
        return a.isString === null ? FALSE : and([a.isString, `${a.str} = ${this.param(l.value)}`]);
      case "number":
        return a.isNumber === null ? FALSE : and([a.isNumber, `${a.num} = ${this.param(l.value)}`]);
      case "boolean":
        return a.isBoolean === null ? FALSE : and([a.isBoolean, `${a.bool} = ${l.value ? 1 : 0}`]);
      case "date":
        return dates({ lo: l.start, loInclusive: true, hi: l.end, hiInclusive: true });
    }
  }

  private inRange(x: string, r: InstantRange): string {
    const parts = [`${x} IS NOT NULL`];
    if (r.lo !== null) parts.push(`${x} ${r.loInclusive ? ">=" : ">"} ${this.param(r.lo)}`);
    if (r.hi !== null) parts.push(`${x} ${r.hiInclusive ? "<=" : "<"} ${this.param(r.hi)}`);
    return and(parts);
  }

  // -------------------------------------------------------------------------------------------------------------
  // System fields, flags, type, reachability

  private system(field: SystemField, t: Test): string {
    if (field === "timezone") {
      // The Timezone property when it is a string (evaluate.ts `system`).
      const test = this.atomTest(t, ROW_ATOM, TRUE, null);
      if (test === FALSE) return FALSE;
      return this.hasRow(this.rowsOf(this.paramPath("Timezone"), and(["kind = 's'", "many = 0", test]))).sql;
    }
    if (field === "createdAt") {
      return `coalesce(${this.atomTest(t, { ...NO_ATOM, dateMs: "p.created_at" }, TRUE, null)}, 0)`;
    }
    if (field === "firstSeen" || field === "lastSeen") {
      // They live in the profile's activity row (store/activity-columns.ts), read once per profile; a profile without
      // one has neither. The columns are typed (STRICT REAL), so no type test.
      const x = field === "firstSeen" ? "pa.first_seen" : "pa.last_seen";
      const test = and([`${x} IS NOT NULL`, this.atomTest(t, { ...NO_ATOM, dateMs: x }, TRUE, null)]);
      return `coalesce((SELECT ${test} FROM profile_activity pa WHERE pa.pk = p.pk), 0)`;
    }
    const jsonPath = field === "acquiredFrom" ? "$.acquiredFrom" : `$.location.${field}`;
    const x = `json_extract(p.state, '${jsonPath}')`;
    const isText = `json_type(p.state, '${jsonPath}') = 'text'`;
    const atom: AtomSql = { ...NO_ATOM, isString: isText, str: x, dateMs: `${ISO_MS_FUNCTION}(${x})` };
    return `coalesce(${and([isText, this.atomTest(t, atom, TRUE, null)])}, 0)`;
  }

  /** Profiles with any stored row at a top-level key: the key is set (`props[key].v !== undefined`). */
  private isSet(key: string): string {
    return this.hasRow(this.rowsOf(this.paramPath(key), TRUE)).sql;
  }

  /** Profiles whose top-level key holds exactly this boolean. */
  private isBoolean(key: string, value: boolean): string {
    return this.hasRow(this.rowsOf(this.paramPath(key), `kind = 'b' AND many = 0 AND num = ${value ? 1 : 0}`)).sql;
  }

  /** SEMANTICS §2 Type: customer (a counted Charged), else identified (an identity, or Email or Phone), else anonymous. */
  private type(type: "anonymous" | "identified" | "customer"): string {
    const customer = `coalesce(json_extract(p.state, '$.stats.charged') > 0, 0)`;
    if (type === "customer") return customer;
    const identified = or([
      `EXISTS (SELECT 1 FROM json_each(p.state, '$.identities') i
        WHERE i.type = 'array' AND json_array_length(i.value) > 0)`,
      this.isSet("Email"),
      this.isSet("Phone"),
    ]);
    return and([not(customer), type === "identified" ? identified : not(identified)]);
  }

  /** SEMANTICS §9 reachability. */
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

  /**
   * Profiles with a document of the compartment whose value at `path` passes (evaluate.ts: one candidate per
   * document; numbers in documents are dates too). The path is walked one object key at a time with json_each, so
   * any key works, whatever characters it holds.
   */
  private document(compartment: string, path: readonly string[], t: Test): string {
    const joins: string[] = [];
    const conds: string[] = [`d.account_id = ${this.accountParam}`, `d.compartment_id = ${this.param(compartment)}`];
    let parent = "d.body";
    path.forEach((key, i) => {
      const j = `j${i}`;
      joins.push(`json_each(${parent}) ${j}`);
      if (i > 0) conds.push(`j${i - 1}.type = 'object'`);
      conds.push(`${j}.key = ${this.param(key)}`);
      parent = `${j}.value`;
    });
    const leaf = `j${path.length - 1}`;
    const scalar = (x: string, single: boolean): string => {
      const atom: AtomSql = {
        isString: `${x}.type = 'text'`,
        str: `${x}.atom`,
        isNumber: `${x}.type IN ('integer', 'real')`,
        num: `${x}.atom`,
        isBoolean: `${x}.type IN ('true', 'false')`,
        bool: `${x}.atom`,
        dateMs: `(CASE WHEN ${x}.type IN ('integer', 'real') THEN ${x}.atom WHEN ${x}.type = 'text' THEN ${ISO_MS_FUNCTION}(${x}.atom) END)`,
      };
      return and([
        `${x}.type IN ('text', 'integer', 'real', 'true', 'false')`,
        this.atomTest(t, atom, single ? TRUE : FALSE, null),
      ]);
    };
    const leafTest =
      t.op === "exists"
        ? or([`${leaf}.type IN ('object', 'array')`, scalar(leaf, true)])
        : or([scalar(leaf, true), this.anyElement(leaf, scalar("e", false))]);
    if (leafTest === FALSE) return FALSE;
    conds.push(leafTest);
    return `p.id IN (SELECT d.profile_id FROM documents d, ${joins.join(", ")} WHERE ${and(conds)})`;
  }

  /** An array at `leaf` with an element (aliased `e`) passing `test`. */
  private anyElement(leaf: string, test: string): string {
    if (test === FALSE) return FALSE;
    return `${leaf}.type = 'array' AND EXISTS (SELECT 1 FROM json_each(${leaf}.value) e WHERE ${test})`;
  }

  // -------------------------------------------------------------------------------------------------------------
  // Behaviour

  /**
   * SEMANTICS §11: M = the profile's counted events with the name(s), inside the window, passing every `where`;
   * did = (count ? |M| op v : |M| ≥ 1) ∧ sum/avg over M ∧ firstTime/lastTime on the first/last matching event ever;
   * didNot = not did. A profile with no event in M is decided at compile time (`passesWithNoEvents`): either the
   * members are the profiles whose group passes, or everyone but the profiles whose group fails.
   */
  private behaviour(c: BehaviourCondition): { sql: string; set?: ProfileSet } {
    const names = c.events.map((n) => this.param(n));
    const where = and((c.where ?? []).map((w) => this.eventCondition(w)));
    if (where === FALSE) {
      // No event can match: M is empty for everyone.
      const did = passesWithNoEvents(c) && c.firstTime === undefined && c.lastTime === undefined;
      return { sql: c.mode === "didNot" ? (did ? FALSE : TRUE) : did ? TRUE : FALSE };
    }
    const leaf = this.events.length;
    const form = this.options.events(leaf);
    // Set form: the name index (sqlite-segments.ts: name, week, seq, profile_pk, ts), whose week bucket the window
    // also bounds. Row form: the profile's own events by its timeline index (`+e.name` keeps SQLite off the other).
    const weeks = c.window ? this.weeks(c.window) : TRUE;
    const window = c.window ? this.window("e.ts", c.window) : TRUE;
    this.events.push(`SELECT 1 FROM events e WHERE ${and([nameTest("e.name", names), weeks, window])}`);
    const scope = form === "set" ? nameTest("e.name", names) : and(["e.profile_pk = p.pk", nameTest("+e.name", names)]);
    // firstTime/lastTime look at every matching event, whatever the window (SEMANTICS §11).
    const matching = and([scope, where]);
    const inWindow = and([matching, form === "set" ? weeks : TRUE, window]);
    const count = "count(*)";
    const sum = (a: Aggregate) => `total(${this.eventNumber(a.path)})`;
    const countPasses = c.count ? `${count} ${SQL_OP[c.count.op]} ${this.param(c.count.value)}` : `${count} >= 1`;
    const parts: string[] = [];
    let set: ProfileSet | undefined;
    if (form === "row") {
      // One aggregate over the profile's events in M: over none, count is 0, total 0 and avg needs count > 0.
      const passes = and([
        countPasses,
        c.sum ? this.aggregate(c.sum, sum(c.sum)) : TRUE,
        c.avg ? and([`${count} > 0`, this.aggregate(c.avg, `(${sum(c.avg)} / ${count})`)]) : TRUE,
      ]);
      parts.push(
        passes === `${count} >= 1`
          ? `EXISTS (SELECT 1 FROM events e WHERE ${inWindow})`
          : `coalesce((SELECT ${passes} FROM events e WHERE ${inWindow}), 0)`,
      );
    } else {
      const groupPasses = and([
        countPasses,
        c.sum ? this.aggregate(c.sum, sum(c.sum)) : TRUE,
        c.avg ? this.aggregate(c.avg, `(${sum(c.avg)} / ${count})`) : TRUE,
      ]);
      if (passesWithNoEvents(c)) {
        parts.push(`p.pk NOT IN (${this.eventGroups(inWindow, not(groupPasses))})`);
      } else {
        set = {
          select: groupPasses === `${count} >= 1` ? this.eventKeys(inWindow) : this.eventGroups(inWindow, groupPasses),
          rows: `SELECT 1 FROM events e WHERE ${inWindow}`,
        };
        parts.push(`p.pk IN (${set.select})`);
      }
    }
    for (const [w, fn] of [
      [c.firstTime, "min"],
      [c.lastTime, "max"],
    ] as const) {
      if (w === undefined) continue;
      const first = this.window(`${fn}(e.ts)`, w);
      parts.push(
        form === "row"
          ? `coalesce((SELECT ${first} FROM events e WHERE ${matching}), 0)`
          : `p.pk IN (${this.eventGroups(matching, first)})`,
      );
      set = undefined;
    }
    const did = and(parts);
    if (c.mode === "didNot") return { sql: not(did) };
    return set !== undefined && parts.length === 1 ? { sql: did, set } : { sql: did };
  }

  private eventKeys(where: string): string {
    return `SELECT e.profile_pk FROM events e WHERE ${where}`;
  }

  private eventGroups(where: string, having: string): string {
    if (having === FALSE) return `SELECT NULL WHERE 0`;
    return `SELECT e.profile_pk FROM events e WHERE ${where} GROUP BY e.profile_pk${having === TRUE ? "" : ` HAVING ${having}`}`;
  }

  /** The week buckets of `events_by_name` a window covers (the exact window is tested as well). */
  private weeks(w: Window): string {
    const week = (ms: number) => this.param(Math.floor(ms / WEEK_MS));
    if (w.kind === "withinLast") return `${EVENT_WEEK} >= ${week(Math.ceil(sinceOf(w.days, this.ctx.now)))}`;
    const parts = [`${EVENT_WEEK} >= ${week(w.from.start)}`];
    if (w.to !== undefined) parts.push(`${EVENT_WEEK} <= ${week(w.to.end)}`);
    return and(parts);
  }

  private window(x: string, w: Window): string {
    if (w.kind === "withinLast") {
      return `${x} >= ${this.param(Math.ceil(sinceOf(w.days, this.ctx.now)))}`;
    }
    const parts = [`${x} >= ${this.param(w.from.start)}`];
    if (w.to !== undefined) parts.push(`${x} <= ${this.param(w.to.end)}`);
    return and(parts);
  }

  private aggregate(a: Aggregate, x: string): string {
    if (a.op === "between") return `${x} BETWEEN ${this.param(a.value[0])} AND ${this.param(a.value[1])}`;
    return `${x} ${SQL_OP[a.op]} ${this.param(a.value)}`;
  }

  /**
   * The JSON path of a one-key event property, or null when no stored event can have it: a PATH of several keys
   * (event properties are flat), or a key with `"` or `\`, which event property keys never hold (SEMANTICS §4) and
   * SQLite's path syntax could not name exactly.
   */
  private eventJsonPath(path: readonly string[]): string | null {
    if (path.length !== 1) return null;
    const key = path[0] as string;
    if (key.includes('"') || key.includes("\\")) return null;
    return this.param(`$."${key}"`);
  }

  /** The value summed by sum/avg: the property when it is a number, else 0 (evaluate.ts `sumOf`). */
  private eventNumber(path: readonly string[]): string {
    const jp = this.eventJsonPath(path);
    if (jp === null) return "0";
    return `(CASE WHEN json_type(e.properties, ${jp}) IN ('integer', 'real') THEN json_extract(e.properties, ${jp}) ELSE 0 END)`;
  }

  /** One `where` condition on one event (evaluate.ts `eventValue`: a scalar property of the event; arrays are absent). */
  private eventCondition(w: EventPropertyCondition): string {
    const { test, negated } = positiveOf(w);
    const jp = this.eventJsonPath(w.path);
    let positive: string;
    if (jp === null) {
      positive = FALSE;
    } else {
      const type = `json_type(e.properties, ${jp})`;
      const value = `json_extract(e.properties, ${jp})`;
      const atom: AtomSql = {
        isString: `${type} = 'text'`,
        str: value,
        isNumber: `${type} IN ('integer', 'real')`,
        num: value,
        isBoolean: `${type} IN ('true', 'false')`,
        bool: `(${type} = 'true')`,
        dateMs: `(CASE WHEN ${type} = 'text' THEN ${ISO_MS_FUNCTION}(${value}) END)`,
      };
      const defined = `${type} IN ('text', 'integer', 'real', 'true', 'false', 'object')`;
      const body = this.atomTest(test, atom, TRUE, null);
      positive = body === FALSE ? FALSE : `coalesce(${and([defined, body])}, 0)`;
    }
    return negated ? not(positive) : positive;
  }
}

/**
 * The week bucket of an event, exactly as `events_by_name` spells it (an expression index is used only for the same
 * expression). Events arrive roughly in time order, so new index entries land at the ends of a few (name, week)
 * ranges instead of all over the index, which keeps ingestion cheap even for back-dated events.
 */
export const WEEK_MS = 604_800_000;
const EVENT_WEEK = "e.ts / 604800000";

/** `x` is one of the event names (their parameters). */
function nameTest(x: string, names: readonly string[]): string {
  return names.length === 1 ? `${x} = ${names[0]}` : `${x} IN (${names.join(", ")})`;
}

/** The primary key of `segment_values` (WITHOUT ROWID: SQLite names it after the table). */
const BY_PROFILE = "sqlite_autoindex_segment_values_1";

/** A stored `segment_values` row as an atom (index-values.ts kinds). */
const ROW_ATOM: AtomSql = {
  isString: "kind = 's'",
  str: "str",
  isNumber: "kind = 'n'",
  num: "num",
  isBoolean: "kind = 'b'",
  bool: "num",
  // `s` rows carry the ms of an ISO text (else NULL), `d` rows a date property's ms; `D` rows go through text bounds.
  dateMs: "(CASE WHEN kind IN ('s', 'd') THEN num END)",
};

const NO_ATOM: AtomSql = {
  isString: null,
  str: "NULL",
  isNumber: null,
  num: "NULL",
  isBoolean: null,
  bool: "NULL",
  dateMs: null,
};

const SQL_OP: Readonly<Record<"eq" | "gt" | "gte" | "lt" | "lte", string>> = {
  eq: "=",
  gt: ">",
  gte: ">=",
  lt: "<",
  lte: "<=",
};
