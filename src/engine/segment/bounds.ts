/**
 * Condition values turned into the bounds the SQL compilers compare stored values with, computed once per query in
 * the account timezone. Pure arithmetic shared by both adapters, so they agree with each other and with evaluate.ts:
 *
 * - every date test (`eq`/`gt`/…/`between`/`before`/`after`/`withinLast` with a date) is an interval of instants
 *   (`instantRange`), because a date literal covers [start, end] and stored dates are instants;
 * - a calendar date (DOB, `YYYY-MM-DD`) is an instant only in a timezone (its midnight there). Midnight grows with the
 *   date, so "midnight(d) ≥ X" is "d ≥ the first date whose midnight is ≥ X" (`firstDayFrom`): the test becomes a
 *   text comparison, which an index serves and a timezone change never makes stale;
 * - `Age` (whole years from DOB to now's calendar date in the account timezone, SEMANTICS §2) is at least N exactly
 *   when the birth date is on or before (year − N, month, day) of today, compared as `YYYY-MM-DD` text (`ageRange`,
 *   `dobOnOrBeforeForAge`). This holds for every real calendar date, which is what a stored DOB is.
 */
import { calendarDate } from "../profile.js";
import { zonedWallClockToEpoch } from "../properties/values.js";
import type { Days, Literal, Test } from "./condition.js";

const DAY_MS = 86_400_000;

/** An interval of epoch ms; a null end is unbounded. */
export interface InstantRange {
  lo: number | null;
  loInclusive: boolean;
  hi: number | null;
  hiInclusive: boolean;
}

const ALL: InstantRange = { lo: null, loInclusive: true, hi: null, hiInclusive: true };

/**
 * The instants a date test accepts (`orderAtom`/`eqAtom`/`positive` of evaluate.ts), or null when the test cannot hold
 * on a date (a number or string literal, a test that is not about dates).
 */
export function instantRange(t: Test, now: number): InstantRange | null {
  const date = (l: Literal) => (l.kind === "date" ? l : null);
  switch (t.op) {
    case "eq": {
      const l = date(t.value);
      return l && { lo: l.start, loInclusive: true, hi: l.end, hiInclusive: true };
    }
    case "gt":
    case "after": {
      const l = date(t.value);
      return l && { ...ALL, lo: l.end, loInclusive: false };
    }
    case "gte": {
      const l = date(t.value);
      return l && { ...ALL, lo: l.start };
    }
    case "lt":
    case "before": {
      const l = date(t.value);
      return l && { ...ALL, hi: l.start, hiInclusive: false };
    }
    case "lte": {
      const l = date(t.value);
      return l && { ...ALL, hi: l.end };
    }
    case "between": {
      const lo = date(t.value[0]);
      const hi = date(t.value[1]);
      return lo && hi && { lo: lo.start, loInclusive: true, hi: hi.end, hiInclusive: true };
    }
    case "withinLast":
      return { ...ALL, lo: sinceOf(t.value, now) };
    default:
      return null;
  }
}

/** `withinLast {days}`: the first instant inside the window (`ts ≥ now − days × 86 400 000`). */
export function sinceOf(days: Days | number, now: number): number {
  return now - (typeof days === "number" ? days : days.days) * DAY_MS;
}

/** The same interval for integer instants only: [lo, hi] inclusive, null when unbounded. */
export function integerRange(r: InstantRange): { lo: number | null; hi: number | null } {
  const lo = r.lo === null ? null : r.loInclusive ? Math.ceil(r.lo) : Math.floor(r.lo) + 1;
  const hi = r.hi === null ? null : r.hiInclusive ? Math.floor(r.hi) : Math.ceil(r.hi) - 1;
  return { lo, hi };
}

/** Before the first and after the last `YYYY-MM-DD` text: the ends of calendar-date comparisons. */
export const BEFORE_ALL_DAYS = "0000-00-00";
export const AFTER_ALL_DAYS = "9999-99-99";
/**
 * 0001-01-01 and 9999-12-31 (UTC) with two days to spare for any timezone offset. Not `Date.UTC(1, 0, 1)`: that
 * reads year 1 as 1901, which made every bound up to 1900-12-30 "before all days" (DOB eq 1900-01-01 found nobody).
 */
const FIRST_DAY_MS = new Date(0).setUTCFullYear(1, 0, 1) - 2 * DAY_MS;
const LAST_DAY_MS = Date.UTC(9999, 11, 31) + 2 * DAY_MS;

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

function dayText(year: number, month: number, day: number): string {
  return `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}`;
}

/** The calendar day `offset` days after (year, month, day), proleptic Gregorian, years below 100 included. */
function addDays(year: number, month: number, day: number, offset: number): [number, number, number] {
  const t = new Date(0);
  t.setUTCFullYear(year, month - 1, day + offset);
  return [t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate()];
}

/** The first calendar day (as `YYYY-MM-DD`) whose midnight in `timezone` is at or after `ms` (an integer). */
export function firstDayFrom(ms: number, timezone: string): string {
  if (ms <= FIRST_DAY_MS) return BEFORE_ALL_DAYS;
  if (ms > LAST_DAY_MS) return AFTER_ALL_DAYS;
  const [year, month, day] = calendarDate(ms, timezone);
  // Midnight grows with the day; starting a day early and looking at most three ahead also covers zones whose
  // clocks jump at midnight (a midnight that does not exist resolves forward, SEMANTICS decisions on dates).
  for (let offset = -1; offset <= 2; offset++) {
    const [y, m, d] = addDays(year, month, day, offset);
    const midnight = zonedWallClockToEpoch({ year: y, month: m, day: d, hour: 0, minute: 0, second: 0 }, timezone);
    // A day past 9999-12-31 has no YYYY-MM-DD text ("10000-01-01" would sort before "2000-…").
    if (midnight >= ms) return y > 9999 ? AFTER_ALL_DAYS : dayText(y, m, d);
  }
  throw new Error(`firstDayFrom: no midnight at or after ${ms} in ${timezone}`);
}

/**
 * A date test on calendar dates as text bounds: `d` passes iff `from ≤ d < until` (both `YYYY-MM-DD`-comparable),
 * or null when no day can pass.
 */
export function dayRange(r: InstantRange, timezone: string): { from: string; until: string } | null {
  const { lo, hi } = integerRange(r);
  const from = lo === null ? BEFORE_ALL_DAYS : firstDayFrom(lo, timezone);
  const until = hi === null ? AFTER_ALL_DAYS : firstDayFrom(hi + 1, timezone);
  return from < until ? { from, until } : null;
}

/**
 * The whole years an Age test accepts, as [lo, hi] (hi null = unbounded), or null when none can pass (a non-integer
 * `eq`, an empty interval, a non-number literal). Age compares as whole years (API.md Meanings).
 */
export function ageRange(t: Test): { lo: number; hi: number | null } | null {
  const num = (l: Literal) => (l.kind === "number" ? l.value : null);
  let lo = 0;
  let hi: number | null = null;
  switch (t.op) {
    case "eq": {
      const n = num(t.value);
      if (n === null || !Number.isInteger(n)) return null;
      lo = n;
      hi = n;
      break;
    }
    case "gt": {
      const n = num(t.value);
      if (n === null) return null;
      lo = Math.floor(n) + 1;
      break;
    }
    case "gte": {
      const n = num(t.value);
      if (n === null) return null;
      lo = Math.ceil(n);
      break;
    }
    case "lt": {
      const n = num(t.value);
      if (n === null) return null;
      hi = Math.ceil(n) - 1;
      break;
    }
    case "lte": {
      const n = num(t.value);
      if (n === null) return null;
      hi = Math.floor(n);
      break;
    }
    case "between": {
      const a = num(t.value[0]);
      const b = num(t.value[1]);
      if (a === null || b === null) return null;
      lo = Math.ceil(a);
      hi = Math.floor(b);
      break;
    }
    default:
      return null;
  }
  lo = Math.max(lo, 0); // years are never negative (a future DOB is Age 0)
  if (hi !== null && hi < lo) return null;
  return { lo, hi };
}

/**
 * Age ≥ years exactly when DOB ≤ the returned `YYYY-MM-DD` text (today's month and day, `years` earlier, in the
 * account timezone); null when no birth date is that old (before year 0). Only meaningful for years ≥ 1 (every
 * DOB is Age ≥ 0).
 */
export function dobOnOrBeforeForAge(years: number, now: number, timezone: string): string | null {
  const [y, m, d] = calendarDate(now, timezone);
  const year = y - years;
  if (year < 0) return null;
  return dayText(year, m, d);
}
