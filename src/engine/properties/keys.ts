/**
 * Property key rules (SEMANTICS §4): 1–120 characters, none of `. : $ ' " \`. The same rules hold for event
 * property keys and for the inner keys of nested objects.
 */
import { fail, show } from "../errors.js";

/** At most this many custom keys hold a value on one profile (system properties do not count). */
export const MAX_CUSTOM_KEYS = 256;
export const MAX_KEY_LENGTH = 120;

// `.` would make `a.b.c` paths ambiguous; `$` marks operations and date forms; the rest break quoting in
// templates, CSV headers and SQL identifiers.
const FORBIDDEN = /[.:$'"\\]/;
// Control characters (C0, DEL, C1) make keys invisible in the dashboard and break CSV headers.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** Length in Unicode code points, so an emoji counts as one character the way a user counts it. */
export function charLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Throws INVALID_KEY (naming the key, with `field` as the JSON path) unless `key` is a valid property key. */
export function validateKey(key: string, field: string): void {
  if (typeof key !== "string") {
    fail("INVALID_KEY", `Property key must be a string, got ${show(key)}`, field);
  }
  // UTF-16 length ≥ code points, so only a long key needs counting.
  const length = key.length <= MAX_KEY_LENGTH ? key.length : charLength(key);
  if (length < 1 || length > MAX_KEY_LENGTH) {
    fail("INVALID_KEY", `Property key ${show(key)} must be 1-${MAX_KEY_LENGTH} characters, got ${length}`, field);
  }
  if (key.trim() === "") {
    fail("INVALID_KEY", `Property key ${show(key)} must not be blank`, field);
  }
  const bad = FORBIDDEN.exec(key);
  if (bad) {
    fail(
      "INVALID_KEY",
      `Property key ${show(key)} must not contain any of . : $ ' " \\ (found ${show(bad[0])})`,
      field,
    );
  }
  if (CONTROL.test(key)) {
    fail("INVALID_KEY", `Property key ${show(key)} must not contain control characters`, field);
  }
  // Would replace an object's prototype instead of naming a key; never a useful property name.
  if (key === "__proto__") {
    fail("INVALID_KEY", `Property key ${show(key)} is not allowed`, field);
  }
}

/** Own-property lookup that never reaches `Object.prototype` (a key may be named `constructor` or `toString`). */
export function own<V>(record: Readonly<Record<string, V>>, key: string): V | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** A JSON object as JSON.parse makes it: not null, not an array, not a class instance. */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}
