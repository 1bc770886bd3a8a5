/**
 * Value normalisation shared by property sets, event properties and identity handles: date forms, Email, Phone,
 * Gender, identity values (SEMANTICS §2, §4, §11 "Identity values" and "Dates").
 */
import { fail, show } from "../errors.js";
import type { IdentityKey } from "../types.js";
import { charLength, isPlainObject } from "./keys.js";

/** Longest string value, multi-value element or identity value, in code points. */
export const MAX_STRING_LENGTH = 512;
/** RFC 5321 limits. */
export const MAX_EMAIL_LENGTH = 254;
const MAX_EMAIL_LOCAL_LENGTH = 64;

/** Dates are limited to years 0001-9999 so that every one of them has a plain ISO-8601 form. */
export const MIN_DATE_MS = -62_135_596_800_000; // 0001-01-01T00:00:00Z
export const MAX_DATE_MS = 253_402_300_799_000; // 9999-12-31T23:59:59Z

/** A short description of a value for error sentences: `string "abc"`, `number 5`, `null`, `array [1]`. */
export function describeValue(v: unknown): string {
  if (v === null) return "null";
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return `array ${show(v)}`;
  if (typeof v === "number" && !Number.isFinite(v)) return `number ${String(v)}`;
  return `${typeof v} ${show(v)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Time zones

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timezone: string): Intl.DateTimeFormat {
  let f = formatters.get(timezone);
  if (f === undefined) {
    try {
      f = new Intl.DateTimeFormat("en-US", {
        timeZone: timezone,
        hourCycle: "h23",
        era: "short",
        year: "numeric",
        month: "numeric",
        day: "numeric",
        hour: "numeric",
        minute: "numeric",
        second: "numeric",
      });
    } catch {
      fail("INVALID_TIMEZONE", `Timezone must be an IANA time zone name such as "Europe/Paris", got ${show(timezone)}`);
    }
    formatters.set(timezone, f);
  }
  return f;
}

// IANA names are letters, digits and `/_+-`; this also keeps out offsets such as "+05:30" that newer engines accept.
const IANA_NAME = /^[A-Za-z][A-Za-z0-9_+\-/]*$/;

/** True for an IANA time zone name the runtime knows (`UTC`, `Europe/Paris`, `America/Argentina/Salta`). */
export function isValidTimeZone(timezone: unknown): timezone is string {
  if (typeof timezone !== "string" || timezone.length > 64 || !IANA_NAME.test(timezone)) return false;
  try {
    formatterFor(timezone);
    return true;
  } catch {
    return false;
  }
}

/** Epoch ms of a UTC wall-clock time; works for years 0-99 too (Date.UTC maps those to 19xx). */
function utcMs(year: number, month: number, day: number, hour: number, minute: number, second: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, 0);
  return d.getTime();
}

interface WallClock {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** The wall clock in `timezone` at an instant, straight from ICU (slow: tens of microseconds). */
function icuWallClockAt(epochMs: number, timezone: string): WallClock {
  const parts = formatterFor(timezone).formatToParts(new Date(epochMs));
  const out: WallClock = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
  let bc = false;
  for (const p of parts) {
    if (p.type === "era") bc = p.value === "BC" || p.value === "B";
    else if (p.type in out) out[p.type as keyof WallClock] = Number(p.value);
  }
  if (bc) out.year = 1 - out.year;
  return out;
}

function icuOffsetMs(epochMs: number, timezone: string): number {
  const w = icuWallClockAt(epochMs, timezone);
  return utcMs(w.year, w.month, w.day, w.hour, w.minute, w.second) - Math.floor(epochMs / 1000) * 1000;
}

const DAY_MS = 86_400_000;
const MAX_CACHED_DAYS = 20_000;
/** `tz|utc-day` → the zone's offset during that whole UTC day, or null when it changes during the day. */
const dayOffsets = new Map<string, number | null>();

/**
 * The zone's offset from UTC at an instant, in ms (east positive). Cached per UTC day: when the offsets at the
 * first and last second of a day agree, the day has no transition (tzdb never shifts and shifts back within a
 * day), so imports and batches full of nearby dates ask ICU about twice per day instead of on every value.
 */
export function timeZoneOffsetMs(epochMs: number, timezone: string): number {
  if (timezone === "UTC") return 0;
  const day = Math.floor(epochMs / DAY_MS);
  const cacheKey = `${timezone}|${day}`;
  let cached = dayOffsets.get(cacheKey);
  if (cached === undefined) {
    const first = icuOffsetMs(day * DAY_MS, timezone);
    const last = icuOffsetMs(day * DAY_MS + DAY_MS - 1000, timezone);
    cached = first === last ? first : null;
    if (dayOffsets.size >= MAX_CACHED_DAYS) dayOffsets.clear();
    dayOffsets.set(cacheKey, cached);
  }
  return cached ?? icuOffsetMs(epochMs, timezone);
}

/** The wall clock in `timezone` at an instant (to the second). */
export function wallClockAt(epochMs: number, timezone: string): WallClock {
  const d = new Date(Math.floor(epochMs / 1000) * 1000 + timeZoneOffsetMs(epochMs, timezone));
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
  };
}

/**
 * The instant of a wall-clock time in `timezone`. Like Temporal's "compatible" disambiguation: a time repeated by
 * a backward shift takes its earlier instant; a time skipped by a forward shift is moved forward by the gap
 * (02:30 on a spring-forward night becomes 03:30).
 */
export function zonedWallClockToEpoch(w: WallClock, timezone: string): number {
  const wall = utcMs(w.year, w.month, w.day, w.hour, w.minute, w.second);
  const before = timeZoneOffsetMs(wall - DAY_MS, timezone);
  const after = timeZoneOffsetMs(wall + DAY_MS, timezone);
  const candidates: number[] = [];
  for (const off of before === after ? [before] : [before, after]) {
    const instant = wall - off;
    if (timeZoneOffsetMs(instant, timezone) === off) candidates.push(instant);
  }
  if (candidates.length > 0) return Math.min(...candidates);
  // In a gap: read the wall clock with the offset in force before the shift, which lands after the gap.
  return wall - before;
}

/** `YYYY-MM-DD` of an instant in `timezone`. */
export function calendarDateIn(epochMs: number, timezone: string): string {
  const w = wallClockAt(epochMs, timezone);
  return `${pad(w.year, 4)}-${pad(w.month, 2)}-${pad(w.day, 2)}`;
}

// ISO-8601 UTC with milliseconds, sortable as a string within years 0001-9999.
export { toIsoUtc } from "../iso-utc.js";

function pad(n: number, width: number): string {
  return String(n).padStart(width, "0");
}

// ---------------------------------------------------------------------------------------------------------------
// Dates

function daysInMonth(year: number, month: number): number {
  return new Date(utcMs(year, month + 1, 0, 0, 0, 0)).getUTCDate();
}

// Extended ISO-8601 calendar forms: a date, or a date and time to the minute or second with an optional fraction
// and an optional `Z` / `±HH` / `±HHMM` / `±HH:MM`. A space may stand for `T`.
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(Z|z|[+-]\d{2}(?::?\d{2})?)?)?$/;

export interface ParsedIso {
  /** Epoch ms, with the fraction of a second kept to the millisecond. */
  ms: number;
  /** True when the text was a date without a time. */
  dateOnly: boolean;
}

/**
 * Parses ISO-8601 text; a date-only value is the start of that day in `timezone`, an offset-less date-time is a
 * wall-clock time in `timezone` (SEMANTICS §11 "Dates"). Null when the text is not a valid ISO-8601 date.
 */
export function parseIso8601(text: string, timezone: string): ParsedIso | null {
  const m = ISO.exec(text.trim());
  if (!m) return null;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const dateOnly = m[4] === undefined;
  const hour = Number(m[4] ?? 0);
  const minute = Number(m[5] ?? 0);
  const second = Number(m[6] ?? 0);
  const millis = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, "0"));
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 59) return null;
  const zone = m[8];
  let ms: number;
  if (zone === undefined) {
    ms = zonedWallClockToEpoch({ year, month, day, hour, minute, second }, timezone);
  } else {
    let offset = 0;
    if (zone !== "Z" && zone !== "z") {
      const digits = zone.slice(1).replace(":", "");
      const oh = Number(digits.slice(0, 2));
      const om = Number(digits.slice(2) || "0");
      if (oh > 23 || om > 59) return null;
      offset = (zone[0] === "-" ? -1 : 1) * (oh * 60 + om) * 60_000;
    }
    ms = utcMs(year, month, day, hour, minute, second) - offset;
  }
  return { ms: ms + millis, dateOnly };
}

/**
 * Epoch seconds written as text: a whole number of 9 to 12 digits (1973-03-03 on; beyond the year 9999 the date
 * range refuses it). Shorter numbers, signs and fractions are no date: `0` is an empty value written as a number,
 * and an 8-digit number is far more likely a compact date than a second of 1970-72.
 */
const EPOCH_SECONDS_TEXT = /^[1-9]\d{8,11}$/;
/** ISO-8601's basic calendar date, `YYYYMMDD`, the usual compact date of exports. */
const COMPACT_DATE = /^(\d{4})(\d{2})(\d{2})$/;

/** The forms readDateText reads, for refusals. */
export const DATE_TEXT_FORMS = "YYYY-MM-DD, YYYYMMDD, an ISO-8601 date-time or epoch seconds (9 to 12 digits)";

export type DateText =
  | { kind: "epoch"; ms: number }
  /** `iso` is the text in ISO-8601's extended form (a compact date written `YYYY-MM-DD`). */
  | { kind: "iso"; iso: string; ms: number; dateOnly: boolean };

/**
 * Date text, read one way wherever text names an instant: an import's `<date>` cell, an events CSV's `ts` and a
 * record's `ts` string. ISO-8601 (offset-less and date-only in `timezone`), the compact date `YYYYMMDD` (a day in
 * `timezone`), or epoch seconds of 9 to 12 digits; null for anything else. `20241120` is 2024-11-20, never the
 * 1970-08-23 that reading it as seconds gave.
 */
export function readDateText(raw: string, timezone: string): DateText | null {
  const text = raw.trim();
  if (EPOCH_SECONDS_TEXT.test(text)) return { kind: "epoch", ms: Number(text) * 1000 };
  const compact = COMPACT_DATE.exec(text);
  const iso = compact ? `${compact[1]}-${compact[2]}-${compact[3]}` : text;
  const parsed = parseIso8601(iso, timezone);
  return parsed === null ? null : { kind: "iso", iso, ...parsed };
}

const DOLLAR_D = /^-?\d{1,15}(?:\.\d+)?$/;

/**
 * Reads a date form (SEMANTICS §4): `"$D_<epoch seconds>"` or `{"$date": "<ISO-8601>"}`. Returns epoch ms truncated
 * to the second, or null when `v` is not a date form at all; a malformed date form is INVALID_DATE.
 */
export function parseDateInput(v: unknown, timezone: string, field?: string): number | null {
  let ms: number;
  if (typeof v === "string") {
    if (!v.startsWith("$D_")) return null;
    const digits = v.slice(3);
    if (!DOLLAR_D.test(digits)) {
      fail("INVALID_DATE", `A "$D_" date must be "$D_" then epoch seconds, got ${show(v)}`, field);
    }
    ms = Number(digits) * 1000;
  } else if (isPlainObject(v) && Object.hasOwn(v, "$date")) {
    const keys = Object.keys(v);
    if (keys.length !== 1) {
      fail("INVALID_DATE", `A {"$date": ...} value must have no other key, got keys ${show(keys)}`, field);
    }
    const text = v.$date;
    const parsed = typeof text === "string" ? parseIso8601(text, timezone) : null;
    if (parsed === null) {
      fail("INVALID_DATE", `"$date" must be an ISO-8601 date such as "2024-11-20T10:00:00Z", got ${show(text)}`, field);
    }
    ms = parsed.ms;
  } else {
    return null;
  }
  const truncated = Math.floor(ms / 1000) * 1000;
  if (!(truncated >= MIN_DATE_MS && truncated <= MAX_DATE_MS)) {
    fail("INVALID_DATE", `Date must be between years 0001 and 9999, got ${show(v)}`, field);
  }
  return truncated === 0 ? 0 : truncated; // never -0
}

// ---------------------------------------------------------------------------------------------------------------
// Email, Phone, Gender

// One @, a non-empty local part, a domain of at least two non-empty dot-separated labels, no whitespace.
const EMAIL = /^[^\s@]+@[^\s@.]+(?:\.[^\s@.]+)+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

/** A reasonable address check; not RFC 5322 (quoted local parts are refused), which no sender relies on. */
export function isValidEmail(s: string): boolean {
  if (s.length > MAX_EMAIL_LENGTH || !EMAIL.test(s) || CONTROL.test(s)) return false;
  return s.indexOf("@") <= MAX_EMAIL_LOCAL_LENGTH;
}

/** Trims and lower-cases an address, then checks it (INVALID_EMAIL). */
export function normaliseEmail(raw: string, field: string): string {
  const email = raw.trim().toLowerCase();
  if (!isValidEmail(email)) {
    fail("INVALID_EMAIL", `Email must be a valid address such as "ana@example.com", got ${show(raw)}`, field);
  }
  return email;
}

const PHONE_NOISE = /[\s\-().]/g;
const E164 = /^\+\d{8,15}$/;

/** Strips spaces and `-().`, then requires E.164: `+` then 8-15 digits (INVALID_PHONE). */
export function normalisePhone(raw: string, field: string): string {
  const phone = raw.replace(PHONE_NOISE, "");
  if (!E164.test(phone)) {
    fail("INVALID_PHONE", `Phone must be E.164 (+ then 8-15 digits), got ${show(raw)}`, field);
  }
  return phone;
}

export type Gender = "M" | "F" | "O" | "U";

const GENDERS: Readonly<Record<string, Gender>> = {
  m: "M",
  male: "M",
  man: "M",
  f: "F",
  female: "F",
  woman: "F",
  o: "O",
  other: "O",
  u: "U",
  unknown: "U",
};

/** `M`, `F`, `O`, `U`, or a word that means one of them, case-insensitive (INVALID_GENDER otherwise). */
export function normaliseGender(raw: unknown, field: string): Gender {
  const word = typeof raw === "string" ? raw.trim().toLowerCase() : "";
  const g = Object.hasOwn(GENDERS, word) ? GENDERS[word] : undefined;
  if (g === undefined) {
    fail(
      "INVALID_GENDER",
      `Gender must be one of M, F, O, U (or male, female, man, woman, other, unknown), got ${describeValue(raw)}`,
      field,
    );
  }
  return g;
}

// ---------------------------------------------------------------------------------------------------------------
// Identity values

const JUNK = new Set(["", "0", "-1", "null", "undefined", "anonymous", "[object object]", "nan"]);

/** Values that a broken client sends for everyone; refused as identities (SEMANTICS §2). */
export function isJunkIdentity(v: string): boolean {
  return JUNK.has(v.trim().toLowerCase());
}

/**
 * The normalised form of an identity value (SEMANTICS §2, §11): Identity/FBID/GPID a trimmed string (a safe integer
 * becomes its decimal string), Email trimmed + lower-cased + valid, Phone E.164. Junk values and wrong types are
 * INVALID_IDENTITY; a malformed Email or Phone keeps INVALID_EMAIL / INVALID_PHONE.
 */
export function normaliseIdentityValue(key: IdentityKey, raw: unknown, field: string): string {
  let text: string;
  if (typeof raw === "string") {
    text = raw.trim();
  } else if (typeof raw === "number" && (key === "Identity" || key === "FBID" || key === "GPID")) {
    // A number beyond 2^53 has already lost digits in JSON parsing and would silently name someone else.
    if (!Number.isSafeInteger(raw)) {
      fail(
        "INVALID_IDENTITY",
        `${key} must be a string or a whole number up to 2^53, got ${describeValue(raw)}; send large ids as strings`,
        field,
      );
    }
    text = String(raw);
  } else {
    const expected = key === "Email" || key === "Phone" ? "a string" : "a string or a number";
    fail("INVALID_IDENTITY", `${key} must be ${expected}, got ${describeValue(raw)}`, field);
  }
  if (isJunkIdentity(text)) {
    fail("INVALID_IDENTITY", `${key} value ${show(raw)} is not a usable identity (empty or a placeholder)`, field);
  }
  if (key === "Email") return normaliseEmail(text, field);
  if (key === "Phone") return normalisePhone(text, field);
  if (text.length > MAX_STRING_LENGTH && charLength(text) > MAX_STRING_LENGTH) {
    fail("INVALID_IDENTITY", `${key} must be at most ${MAX_STRING_LENGTH} characters, got ${charLength(text)}`, field);
  }
  return text;
}
