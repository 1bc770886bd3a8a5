/**
 * A profile's properties as segment conditions read them, flattened into rows for the stores' property index
 * (`segment_values` in both adapters). Each row is one candidate atom of one PATH, exactly as the reference evaluator
 * (evaluate.ts, `candidates`/`fromJson`) sees it, so the SQL compilers can decide every property condition from
 * these rows alone, never from the JSON state:
 *
 * - `s` a string (`str`); `num` is its epoch ms when it is in Portrait's stored ISO form (`storedIsoMs`), else null;
 * - `n` a number, `b` a boolean (`num` 1 or 0), `d` a date property held as epoch ms (`num`);
 * - `D` a calendar date (`str` = `YYYY-MM-DD`): a `date` property stored as a calendar date (DOB). Its instant is
 *   midnight in the account timezone, which may change, so the compilers compare it as text against bounds they
 *   compute for the timezone at query time (bounds.ts);
 * - `o` an object (only `exists` holds on it);
 * - `x` a top-level value that is set but reads as absent (an array with no scalar element, a `date` that is not one):
 *   it exists for the rules that ask whether a key is set at all (type, reachability), never for a condition.
 *
 * `many` marks the elements of an array (a multi-value, or an array inside a nested object): `eq`/`in`/`contains`/
 * `startsWith` hold if any element does, ordering operators never hold on them. Nested objects contribute one row set
 * per inner path (`address.city`), walking objects only, as `walk` does.
 *
 * Keys cannot contain `.` (SEMANTICS §4), so a joined path names one place.
 */
import { own } from "../properties/keys.js";
import { parseIso8601 } from "../properties/values.js";
import type { PropertyEntry } from "../types.js";
import { storedIsoMs } from "./evaluate.js";

export type IndexKind = "s" | "n" | "b" | "d" | "D" | "o" | "x";

export interface IndexValue {
  path: string;
  kind: IndexKind;
  many: boolean;
  str: string | null;
  num: number | null;
}

const CALENDAR_DATE = /^\d{4}-\d{2}-\d{2}$/;

/** True for a `YYYY-MM-DD` text that is a real calendar date (what `calendarMidnight` accepts). */
export function isCalendarDate(s: string): boolean {
  return CALENDAR_DATE.test(s) && parseIso8601(s, "UTC") !== null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** One scalar as an atom row, or undefined for what `fromJson` drops (null, objects, arrays inside arrays). */
function atom(path: string, x: unknown, many: boolean): IndexValue | undefined {
  if (typeof x === "string") {
    return { path, kind: "s", many, str: x, num: storedIsoMs(x) ?? null };
  }
  if (typeof x === "number") return { path, kind: "n", many, str: null, num: x === 0 ? 0 : x };
  if (typeof x === "boolean") return { path, kind: "b", many, str: null, num: x ? 1 : 0 };
  return undefined;
}

/** `fromJson(v, false)` as rows: one atom, the scalar elements of an array, or an object marker. */
function pushJson(out: IndexValue[], path: string, v: unknown): void {
  if (v === undefined || v === null) return;
  if (Array.isArray(v)) {
    for (const x of v) {
      const a = atom(path, x, true);
      if (a) out.push(a);
    }
    return;
  }
  if (isObject(v)) {
    out.push({ path, kind: "o", many: false, str: null, num: null });
    return;
  }
  const a = atom(path, v, false);
  if (a) out.push(a);
}

/** The inner paths of a nested object, depth first (`walk` follows objects only, never arrays). */
function pushNested(out: IndexValue[], prefix: string, obj: Record<string, unknown>): void {
  for (const key of Object.keys(obj)) {
    const v = own(obj, key);
    const path = `${prefix}.${key}`;
    pushJson(out, path, v);
    if (isObject(v)) pushNested(out, path, v);
  }
}

/** Every row of a profile's properties (keys without a value, `$delete` tombstones, have none). */
export function indexValues(props: Readonly<Record<string, PropertyEntry>>): IndexValue[] {
  const out: IndexValue[] = [];
  for (const key of Object.keys(props)) {
    const entry = own(props, key);
    if (entry?.v === undefined) continue;
    const before = out.length;
    const v: unknown = entry.v;
    if (entry.t === "date") {
      if (typeof v === "number") out.push({ path: key, kind: "d", many: false, str: null, num: v === 0 ? 0 : v });
      else if (isCalendarDate(String(v))) out.push({ path: key, kind: "D", many: false, str: String(v), num: null });
    } else {
      pushJson(out, key, v);
    }
    if (out.length === before) out.push({ path: key, kind: "x", many: false, str: null, num: null });
    if (isObject(v)) pushNested(out, key, v);
  }
  return out;
}

/** Each row's position among the rows of its path before it: the `ord` that, with the path, keys a stored row. */
export function ordsOf(rows: readonly IndexValue[]): number[] {
  const seen = new Map<string, number>();
  return rows.map((r) => {
    const n = seen.get(r.path) ?? 0;
    seen.set(r.path, n + 1);
    return n;
  });
}

/** The rows of each path, in order. */
export function byPath(rows: readonly IndexValue[]): Map<string, IndexValue[]> {
  const out = new Map<string, IndexValue[]>();
  for (const r of rows) {
    const list = out.get(r.path);
    if (list) list.push(r);
    else out.set(r.path, [r]);
  }
  return out;
}
