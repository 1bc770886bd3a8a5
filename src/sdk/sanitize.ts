/**
 * Client-side cleaning of what a page hands the SDK, mirroring the server's rules (SEMANTICS §4) so that one sloppy
 * call loses one key with a console warning instead of the whole record being refused later, out of sight.
 * Pure functions: no window, no storage (unit-tested in Node, next to the server's own constants).
 */
import { log } from "./browser.js";

export const MAX_KEY_LENGTH = 120;
export const MAX_STRING_LENGTH = 512;
export const MAX_CUSTOM_KEYS = 256;
export const MAX_EVENT_PROPERTIES = 256;
export const MAX_MULTI_VALUES = 100;
export const MAX_NESTING_DEPTH = 3;
export const MAX_NESTED_KEYS = 100;
export const MAX_CHARGED_ITEMS = 100;
export const MAX_EVENT_NAME_LENGTH = 120;

export const RESERVED_EVENT_NAMES = ["Identity Set", "Identity Error", "Profile Merged", "Profile Demerged"];
export const IDENTITY_KEYS = ["Identity", "Email", "Phone", "FBID", "GPID"];
export const SYSTEM_PROPERTIES = [
  ...IDENTITY_KEYS,
  "Name",
  "Gender",
  "DOB",
  "Timezone",
  "Customer Type",
  "MSG-email",
  "MSG-push",
  "MSG-sms",
  "MSG-whatsapp",
  "MSG-dndEmail",
  "MSG-dndPhone",
];

// The same characters the server refuses in keys (SEMANTICS §4: the SDK strips them with a warning), plus
// control characters, which the server refuses too.
// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping control characters is the point
const STRIPPED = /[.:$'"\\\u0000-\u001f\u007f-\u009f]/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const OPERATIONS = ["$incr", "$decr", "$add", "$remove", "$set", "$setOnce", "$delete"];

export type Json = string | number | boolean | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

/** Length in code points, as the server counts (an emoji is one character). */
function charLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

function isDate(v: unknown): v is Date {
  return Object.prototype.toString.call(v) === "[object Date]";
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is what the server refuses
const UNSTORABLE = /[\u0000\uD800-\uDFFF]/;

/**
 * Text the server can store: NUL characters dropped and a UTF-16 surrogate without its pair replaced by U+FFFD
 * (the server refuses both, and with them the whole record). Written as a loop: older Safari has no lookbehind.
 */
export function storableText(s: string): string {
  if (!UNSTORABLE.test(s)) return s;
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) continue;
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += s[i]! + s[i + 1]!;
        i++;
        continue;
      }
      out += "\uFFFD";
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      out += "\uFFFD";
    } else {
      out += s[i];
    }
  }
  return out;
}

/** A usable key, the forbidden characters stripped (with a warning), or null (with a warning) when none is left. */
export function cleanKey(key: string, where: string): string | null {
  const cleaned = storableText(key).replace(STRIPPED, "");
  if (cleaned !== key)
    log.warn(`${where}: key "${key}" contained . : $ ' " \\ or control characters; sent as "${cleaned}"`);
  if (cleaned.trim() === "" || cleaned === "__proto__") {
    log.warn(`${where}: key "${key}" is not usable; dropped`);
    return null;
  }
  if (charLength(cleaned) > MAX_KEY_LENGTH) {
    log.warn(`${where}: key "${cleaned.slice(0, 40)}…" is longer than ${MAX_KEY_LENGTH} characters; dropped`);
    return null;
  }
  return cleaned;
}

/** A string cut to 512 characters (whole code points), with a warning when cut or when it held unstorable text. */
export function cleanString(raw: string, where: string): string {
  const s = storableText(raw);
  if (s !== raw) log.warn(`${where}: value held NUL characters or broken UTF-16; they were removed`);
  if (s.length <= MAX_STRING_LENGTH) return s;
  const points = Array.from(s);
  if (points.length <= MAX_STRING_LENGTH) return s;
  log.warn(`${where}: value longer than ${MAX_STRING_LENGTH} characters; truncated`);
  return points.slice(0, MAX_STRING_LENGTH).join("");
}

const pad = (n: number, width: number) => String(n).padStart(width, "0");

/** SEMANTICS §11 Dates: DOB from a JS Date is its local calendar date, "YYYY-MM-DD". */
export function localCalendarDate(d: Date): string {
  return `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1, 2)}-${pad(d.getDate(), 2)}`;
}

/** Any other Date travels as {"$date": ISO-8601} (the server keeps it to the second); null when unusable. */
function cleanDate(d: Date, where: string): JsonObject | null {
  const t = d.getTime();
  const year = d.getUTCFullYear();
  if (Number.isNaN(t) || year < 1 || year > 9999) {
    log.warn(`${where}: not a valid date (years 0001-9999); dropped`);
    return null;
  }
  return { $date: d.toISOString() };
}

/** A scalar (string, finite number, boolean, Date) or null with a warning. */
function cleanScalar(v: unknown, where: string): Json | null {
  switch (typeof v) {
    case "string":
      return cleanString(v, where);
    case "number":
      if (Number.isFinite(v)) return v;
      log.warn(`${where}: ${v} is not a finite number; dropped`);
      return null;
    case "boolean":
      return v;
  }
  if (isDate(v)) return cleanDate(v, where);
  log.warn(
    `${where}: ${v === null || v === undefined ? String(v) : typeof v} is not a string, number, boolean or Date; dropped`,
  );
  return null;
}

/** Strings for a multi-value: numbers and booleans become strings, the rest is dropped; no duplicates; ≤ 100. */
export function cleanStringList(v: unknown, where: string): string[] | null {
  const items = Array.isArray(v) ? v : [v];
  const out: string[] = [];
  for (const item of items) {
    if (typeof item === "number" || typeof item === "boolean") {
      if (typeof item === "number" && !Number.isFinite(item)) continue;
      out.push(String(item));
    } else if (typeof item === "string") {
      out.push(cleanString(item, where));
    } else {
      log.warn(`${where}: multi-value elements must be strings; one dropped`);
    }
  }
  const unique = [...new Set(out)];
  if (unique.length > MAX_MULTI_VALUES) {
    log.warn(`${where}: a multi-value holds at most ${MAX_MULTI_VALUES} values; the rest dropped`);
    unique.length = MAX_MULTI_VALUES;
  }
  return unique.length > 0 ? unique : null;
}

/** A nested object value (≤ 3 levels, ≤ 100 keys in all, scalar leaves). */
function cleanObject(
  obj: Record<string, unknown>,
  where: string,
  depth: number,
  budget: { keys: number },
): JsonObject | null {
  if (depth > MAX_NESTING_DEPTH) {
    log.warn(`${where}: objects nest at most ${MAX_NESTING_DEPTH} levels; dropped`);
    return null;
  }
  const out: JsonObject = {};
  for (const [rawKey, v] of Object.entries(obj)) {
    if (++budget.keys > MAX_NESTED_KEYS) {
      log.warn(`${where}: an object value holds at most ${MAX_NESTED_KEYS} keys in all; the rest dropped`);
      break;
    }
    const key = cleanKey(rawKey, where);
    if (key === null) continue;
    const at = `${where}.${key}`;
    let value: Json | null;
    if (isPlainObject(v)) value = cleanObject(v, at, depth + 1, budget);
    else if (Array.isArray(v)) {
      log.warn(`${at}: arrays are allowed at the top level only; dropped`);
      value = null;
    } else value = cleanScalar(v, at);
    if (value !== null) out[key] = value;
  }
  // Emptied by the cleaning (everything in it was dropped): sending {} would store an object nobody wrote.
  if (Object.keys(out).length === 0 && Object.keys(obj).length > 0) return null;
  return out;
}

/** One profile property value: scalar, Date, multi-value, nested object or an operation object. */
function cleanProfileValue(key: string, v: unknown, where: string, now: Date): Json | null {
  if (key === "DOB" && isDate(v)) {
    if (Number.isNaN(v.getTime())) {
      log.warn(`${where}: DOB is an invalid Date; dropped`);
      return null;
    }
    const dob = localCalendarDate(v);
    if (dob > localCalendarDate(now)) {
      log.warn(`${where}: DOB ${dob} is in the future; dropped`);
      return null;
    }
    return dob;
  }
  if (Array.isArray(v)) return cleanStringList(v, where);
  if (isPlainObject(v)) {
    const keys = Object.keys(v);
    const op = keys[0];
    // {"$date": "<ISO-8601>"} is the wire form of a date; the server checks the text.
    if (keys.length === 1 && op === "$date" && typeof v.$date === "string") return { $date: v.$date };
    if (keys.length === 1 && op !== undefined && op.startsWith("$")) return cleanOperation(op, v[op], where, now, key);
    return cleanObject(v, where, 1, { keys: 0 });
  }
  return cleanScalar(v, where);
}

function cleanOperation(op: string, operand: unknown, where: string, now: Date, key: string): JsonObject | null {
  if (!OPERATIONS.includes(op)) {
    log.warn(`${where}: unknown operation ${op}; dropped`);
    return null;
  }
  if (IDENTITY_KEYS.includes(key) && op !== "$delete") {
    log.warn(`${where}: an identity takes a plain value or {$delete: true}; ${op} dropped`);
    return null;
  }
  switch (op) {
    case "$incr":
    case "$decr":
      if (typeof operand !== "number" || !Number.isFinite(operand) || operand < 0) {
        log.warn(`${where}: ${op} needs a finite number >= 0; dropped`);
        return null;
      }
      return { [op]: operand };
    case "$delete":
      return { $delete: true };
    case "$setOnce": {
      const value = cleanProfileValue(key, operand, where, now);
      return value === null ? null : { $setOnce: value };
    }
    default: {
      const values = cleanStringList(operand, where);
      return values === null ? null : { [op]: values };
    }
  }
}

/**
 * A property set for a login or profile push: keys cleaned, values cleaned, `Age` refused (derived from DOB) and
 * `is_test_user` too (Portrait's mirror of the test flag), at most 256 custom keys. Null (with warnings) when the input is not an object.
 */
export function cleanProfileProperties(input: unknown, where: string, now: Date): JsonObject | null {
  if (!isPlainObject(input)) {
    log.warn(`${where}: properties must be an object; nothing sent`);
    return null;
  }
  const out: JsonObject = {};
  let custom = 0;
  for (const [rawKey, v] of Object.entries(input)) {
    const key = cleanKey(rawKey, where);
    if (key === null) continue;
    if (key === "Age") {
      log.warn(`${where}: Age is derived from DOB and cannot be set; dropped`);
      continue;
    }
    if (key === "is_test_user") {
      // The server refuses the whole record for it (docs/semantics.md, Property values 20): it mirrors the test flag.
      log.warn(`${where}: is_test_user is set by Portrait for test profiles (PUT /v1/profiles/{id}/test); dropped`);
      continue;
    }
    if (!SYSTEM_PROPERTIES.includes(key) && ++custom > MAX_CUSTOM_KEYS) {
      log.warn(`${where}: at most ${MAX_CUSTOM_KEYS} custom keys per push; "${key}" dropped`);
      continue;
    }
    const value = cleanProfileValue(key, v, `${where} ${key}`, now);
    if (value !== null) out[key] = value;
  }
  return out;
}

/** An event name, or null (with a warning) when the server would refuse it. */
export function cleanEventName(raw: unknown): string | null {
  // Trimmed, as the server trims it before it recognises reserved names and Charged.
  const name = typeof raw === "string" ? storableText(raw).trim() : raw;
  if (typeof name !== "string" || name.trim() === "" || CONTROL.test(name)) {
    log.warn("event: the name must be a non-blank string without control characters; event dropped");
    return null;
  }
  if (charLength(name) > MAX_EVENT_NAME_LENGTH) {
    log.warn(`event: the name is longer than ${MAX_EVENT_NAME_LENGTH} characters; event dropped`);
    return null;
  }
  if (RESERVED_EVENT_NAMES.includes(name)) {
    log.warn(`event: "${name}" is written by Portrait itself; event dropped`);
    return null;
  }
  return name;
}

/** Event properties: scalars only (Dates as {"$date"}), except Charged "Items", an array of flat objects. */
export function cleanEventProperties(name: string, input: unknown): JsonObject {
  const where = `event "${name}"`;
  const out: JsonObject = {};
  if (input === undefined || input === null) return out;
  if (!isPlainObject(input)) {
    log.warn(`${where}: properties must be an object; sent without them`);
    return out;
  }
  let count = 0;
  for (const [rawKey, v] of Object.entries(input)) {
    const key = cleanKey(rawKey, where);
    if (key === null) continue;
    if (++count > MAX_EVENT_PROPERTIES) {
      log.warn(`${where}: at most ${MAX_EVENT_PROPERTIES} properties; the rest dropped`);
      break;
    }
    const at = `${where} ${key}`;
    let value: Json | null;
    if (name === "Charged" && key === "Items" && Array.isArray(v)) value = cleanItems(v, at);
    else if (Array.isArray(v) || isPlainObject(v)) {
      log.warn(`${at}: event properties are scalars (string, number, boolean, Date); dropped`);
      value = null;
    } else value = cleanScalar(v, at);
    if (value !== null) out[key] = value;
  }
  return out;
}

function cleanItems(items: unknown[], where: string): Json[] {
  if (items.length > MAX_CHARGED_ITEMS) log.warn(`${where}: at most ${MAX_CHARGED_ITEMS} items; the rest dropped`);
  const out: Json[] = [];
  for (const item of items.slice(0, MAX_CHARGED_ITEMS)) {
    if (!isPlainObject(item)) {
      log.warn(`${where}: each item must be an object; one dropped`);
      continue;
    }
    const flat: JsonObject = {};
    const entries = Object.entries(item);
    if (entries.length > MAX_EVENT_PROPERTIES) log.warn(`${where}: an item holds at most ${MAX_EVENT_PROPERTIES} keys`);
    for (const [rawKey, v] of entries.slice(0, MAX_EVENT_PROPERTIES)) {
      const key = cleanKey(rawKey, where);
      if (key === null) continue;
      const value = cleanScalar(v, `${where}.${key}`);
      if (value !== null) flat[key] = value;
    }
    out.push(flat);
  }
  return out;
}
