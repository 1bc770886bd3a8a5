/**
 * A profile property set (untrusted JSON) → typed operations (SEMANTICS §4). Every error's `field` is the JSON
 * path relative to the property set (`Email`, `address.city`, `tags[2]`); the caller prefixes it.
 */
import { fail, show } from "../errors.js";
import type { PropertyOp } from "../records.js";
import { IDENTITY_KEYS, type IdentityKey, type JsonValue, type StoredValue, type ValueType } from "../types.js";
import { charLength, isPlainObject, MAX_CUSTOM_KEYS, own, validateKey } from "./keys.js";
import {
  calendarDateIn,
  describeValue,
  isValidTimeZone,
  MAX_STRING_LENGTH,
  normaliseGender,
  normaliseIdentityValue,
  parseDateInput,
  parseIso8601,
  toIsoUtc,
} from "./values.js";

/** The system properties with built-in types (SEMANTICS §4); they do not count against MAX_CUSTOM_KEYS. */
export const SYSTEM_PROPERTY_TYPES: Readonly<Record<string, ValueType>> = Object.freeze({
  Name: "string",
  Email: "string",
  Phone: "string",
  Gender: "string",
  DOB: "date",
  Identity: "string",
  FBID: "string",
  GPID: "string",
  Timezone: "string",
  "Customer Type": "string",
  "MSG-email": "boolean",
  "MSG-push": "boolean",
  "MSG-sms": "boolean",
  "MSG-whatsapp": "boolean",
  "MSG-dndEmail": "boolean",
  "MSG-dndPhone": "boolean",
});

/**
 * SEMANTICS §9: marking a profile as a test profile sets this to "Yes", unmarking removes it. Only Portrait writes it
 * (PUT /v1/profiles/{id}/test, and merges of a test profile); every client path refuses it (parseEntry).
 */
export const TEST_USER_KEY = "is_test_user";

export function isSystemProperty(key: string): boolean {
  return Object.hasOwn(SYSTEM_PROPERTY_TYPES, key);
}

/** Most elements in a multi-value, an `$add`/`$remove`/`$set` list. */
export const MAX_MULTI_VALUES = 100;
/** Levels of objects in a nested value: `{"a": {"b": {"c": 1}}}` is 3 (the value of `a` is level 1). */
export const MAX_NESTING_DEPTH = 3;
/** Keys, at all levels together, in one nested value. */
export const MAX_NESTED_KEYS = 100;

export interface PropertySetOptions {
  /** The account timezone: offset-less and date-only dates are read in it, DOB's calendar date is taken in it. */
  timezone: string;
  /** Epoch ms; DOB must not be after today (in `timezone`). */
  now: number;
  /** JSON path of the set itself, used only when the set is not an object or has too many keys. */
  field?: string;
}

interface Ctx {
  timezone: string;
  now: number;
}

const IDENTITY_KEY_SET: ReadonlySet<string> = new Set(IDENTITY_KEYS);
const DOB_TEXT = /^\d{4}-\d{2}-\d{2}$/;

/** Parses a property set; see SEMANTICS §4 and docs/semantics.md for the exact rules. */
export function parsePropertySet(input: unknown, opts: PropertySetOptions): PropertyOp[] {
  if (!isPlainObject(input)) {
    fail("INVALID_RECORD", `Properties must be a JSON object of key: value, got ${describeValue(input)}`, opts.field);
  }
  const keys = Object.keys(input);
  const custom = keys.filter((k) => !isSystemProperty(k)).length;
  if (custom > MAX_CUSTOM_KEYS) {
    fail(
      "TOO_MANY_PROPERTIES",
      `A property set holds at most ${MAX_CUSTOM_KEYS} custom keys, got ${custom}`,
      opts.field,
    );
  }
  const ctx: Ctx = { timezone: opts.timezone, now: opts.now };
  const ops: PropertyOp[] = [];
  for (const key of keys) {
    ops.push(parseEntry(key, input[key], ctx));
  }
  return ops;
}

function parseEntry(key: string, raw: unknown, ctx: Ctx): PropertyOp {
  validateKey(key, key);
  if (key === "Age") {
    fail("AGE_IS_DERIVED", `Property "Age" is derived from DOB and cannot be written; set DOB instead`, key);
  }
  if (key === TEST_USER_KEY) {
    // SEMANTICS §9: Portrait's mirror of the test flag. A client's write (a set, $delete, any operation) would make it
    // disagree with the flag, which segments and exports read as two different facts.
    fail(
      "INVALID_KEY",
      `Property "${TEST_USER_KEY}" is written by Portrait from the profile's test flag and cannot be written by a ` +
        "client; mark or unmark a test profile with PUT /v1/profiles/{id}/test",
      key,
    );
  }
  const op = operationOf(raw, key);
  if (op === null) {
    return { kind: "set", key, ...parseValueFor(key, raw, ctx) };
  }
  const [name, operand] = op;
  if (IDENTITY_KEY_SET.has(key) && name !== "$delete") {
    fail(
      "INVALID_OPERATION",
      `Property ${show(key)} is an identity: it takes a plain value or {"$delete": true}, got ${show(name)}`,
      key,
    );
  }
  switch (name) {
    case "$delete":
      if (operand !== true) {
        fail("INVALID_OPERATION", `"$delete" on ${show(key)} must be true, got ${describeValue(operand)}`, key);
      }
      return { kind: "delete", key };
    case "$incr":
    case "$decr": {
      requireCustomFor(key, name, "number");
      if (typeof operand !== "number" || !Number.isFinite(operand) || operand < 0) {
        fail(
          "INVALID_OPERATION",
          `${show(name)} on ${show(key)} needs a finite number >= 0, got ${describeValue(operand)}`,
          key,
        );
      }
      const n = operand === 0 ? 0 : operand; // never -0
      return { kind: "incr", key, by: name === "$incr" ? n : n === 0 ? 0 : -n };
    }
    case "$add":
    case "$remove": {
      requireCustomFor(key, name, "multi");
      const values = parseStringList(operand, key, `${show(name)} on ${show(key)}`, true);
      return { kind: name === "$add" ? "add" : "remove", key, values };
    }
    case "$set": {
      requireCustomFor(key, name, "multi");
      const values = parseStringList(operand, key, `"$set" on ${show(key)}`, true);
      return { kind: "setMulti", key, values };
    }
    case "$setOnce":
      return { kind: "setOnce", key, ...parseValueFor(key, operand, ctx) };
    default:
      return fail(
        "INVALID_OPERATION",
        `Unknown operation ${show(name)} on ${show(key)}; use $incr, $decr, $add, $remove, $set, $setOnce or $delete`,
        key,
      );
  }
}

/** `[name, operand]` when `raw` is an operation object, null for any other value. */
function operationOf(raw: unknown, key: string): [string, unknown] | null {
  if (!isPlainObject(raw) || Object.hasOwn(raw, "$date")) return null;
  const keys = Object.keys(raw);
  if (!keys.some((k) => k.startsWith("$"))) return null;
  if (keys.length !== 1) {
    fail(
      "INVALID_OPERATION",
      `An operation on ${show(key)} is an object with exactly one "$" key, got keys ${show(keys)}`,
      key,
    );
  }
  const name = keys[0]!;
  return [name, raw[name]];
}

/** System properties have fixed types: an operation that needs another type is a TYPE_MISMATCH. */
function requireCustomFor(key: string, op: string, needs: ValueType): void {
  const type = own(SYSTEM_PROPERTY_TYPES, key);
  if (type !== undefined && type !== needs) {
    fail("TYPE_MISMATCH", `Property ${show(key)} is a ${type}; ${show(op)} needs a ${needs}`, key);
  }
}

interface TypedValue {
  value: StoredValue;
  type: ValueType;
}

/** The value of a set or `$setOnce`, with the system property rules for system keys. */
function parseValueFor(key: string, raw: unknown, ctx: Ctx): TypedValue {
  if (raw === null || raw === undefined) {
    fail("TYPE_MISMATCH", `Property ${show(key)} cannot be null; to remove it send {"$delete": true}`, key);
  }
  if (IDENTITY_KEY_SET.has(key)) {
    return { value: normaliseIdentityValue(key as IdentityKey, raw, key), type: "string" };
  }
  switch (key) {
    case "Gender":
      return { value: normaliseGender(raw, key), type: "string" };
    case "DOB":
      return { value: parseDob(raw, ctx, key), type: "date" };
    case "Timezone":
      if (!isValidTimeZone(raw)) {
        fail(
          "INVALID_TIMEZONE",
          `Timezone must be an IANA time zone name such as "Europe/Paris", got ${describeValue(raw)}`,
          key,
        );
      }
      return { value: raw, type: "string" };
  }
  const parsed = parsePlainValue(raw, key, ctx);
  const expected = own(SYSTEM_PROPERTY_TYPES, key);
  if (expected !== undefined && parsed.type !== expected) {
    fail("TYPE_MISMATCH", `Property ${show(key)} must be a ${expected}, got ${describeValue(raw)}`, key);
  }
  return parsed;
}

/** DOB: `YYYY-MM-DD`, `$D_` or `{"$date"}`; stored as the calendar date in the account timezone; not after today. */
function parseDob(raw: unknown, ctx: Ctx, field: string): string {
  let date: string;
  if (typeof raw === "string" && DOB_TEXT.test(raw)) {
    if (parseIso8601(raw, "UTC") === null) {
      fail("INVALID_DATE", `DOB must be a real calendar date YYYY-MM-DD, got ${show(raw)}`, field);
    }
    date = raw;
  } else {
    const ms = parseDateInput(raw, ctx.timezone, field);
    if (ms === null) {
      fail(
        "INVALID_DATE",
        `DOB must be a date: "YYYY-MM-DD", "$D_<epoch seconds>" or {"$date": "<ISO-8601>"}, got ${describeValue(raw)}`,
        field,
      );
    }
    date = calendarDateIn(ms, ctx.timezone);
  }
  const today = calendarDateIn(ctx.now, ctx.timezone);
  if (date > today) {
    fail("INVALID_DATE", `DOB must not be in the future (today is ${today}), got ${date}`, field);
  }
  return date;
}

/** Any plain value: string, number, boolean, date form, string array (multi) or nested object. */
function parsePlainValue(raw: unknown, path: string, ctx: Ctx): TypedValue {
  if (Array.isArray(raw)) {
    return { value: parseStringList(raw, path, `Property ${show(path)}`, false), type: "multi" };
  }
  if (isPlainObject(raw) && !Object.hasOwn(raw, "$date")) {
    return { value: parseObject(raw, path, 1, { keys: 0, root: path }, ctx), type: "object" };
  }
  const date = parseDateInput(raw, ctx.timezone, path);
  if (date !== null) return { value: date, type: "date" };
  return parseScalar(raw, path);
}

function parseScalar(raw: unknown, path: string): TypedValue {
  switch (typeof raw) {
    case "string":
      checkLength(raw, path);
      return { value: raw, type: "string" };
    case "number":
      if (!Number.isFinite(raw)) {
        fail("INVALID_VALUE", `Property ${show(path)} must be a finite number, got ${describeValue(raw)}`, path);
      }
      return { value: raw === 0 ? 0 : raw, type: "number" };
    case "boolean":
      return { value: raw, type: "boolean" };
    default:
      if (raw === null) {
        fail("TYPE_MISMATCH", `Property ${show(path)} cannot be null; to remove it send {"$delete": true}`, path);
      }
      return fail(
        "TYPE_MISMATCH",
        `Property ${show(path)} must be a string, number, boolean, date, array of strings or object, got ${describeValue(raw)}`,
        path,
      );
  }
}

function checkLength(s: string, path: string): void {
  if (s.length <= MAX_STRING_LENGTH) return; // UTF-16 length ≥ code points
  const n = charLength(s);
  if (n > MAX_STRING_LENGTH) {
    fail("VALUE_TOO_LONG", `Property ${show(path)} must be at most ${MAX_STRING_LENGTH} characters, got ${n}`, path);
  }
}

/**
 * A list of strings for a multi-value: each ≤ 512 characters, duplicates dropped keeping the first occurrence,
 * at most 100 after de-duplication. With `allowSingle`, one string stands for a one-element list.
 */
function parseStringList(raw: unknown, path: string, what: string, allowSingle: boolean): string[] {
  if (allowSingle && typeof raw === "string") {
    checkLength(raw, path);
    return [raw];
  }
  if (!Array.isArray(raw)) {
    fail(
      "TYPE_MISMATCH",
      `${what} needs ${allowSingle ? "a string or " : ""}an array of strings, got ${describeValue(raw)}`,
      path,
    );
  }
  const seen = new Set<string>();
  raw.forEach((item, i) => {
    const at = `${path}[${i}]`;
    if (typeof item !== "string") {
      fail("TYPE_MISMATCH", `${what}: element ${i} must be a string, got ${describeValue(item)}`, at);
    }
    checkLength(item, at);
    seen.add(item);
  });
  if (seen.size > MAX_MULTI_VALUES) {
    fail("TOO_MANY_VALUES", `${what} holds at most ${MAX_MULTI_VALUES} distinct values, got ${seen.size}`, path);
  }
  return [...seen];
}

interface Budget {
  keys: number;
  root: string;
}

/** A nested object value: ≤ 3 levels, ≤ 100 keys in all, scalar or date leaves (dates become ISO-8601 UTC). */
function parseObject(
  obj: Record<string, unknown>,
  path: string,
  depth: number,
  budget: Budget,
  ctx: Ctx,
): { [key: string]: JsonValue } {
  if (depth > MAX_NESTING_DEPTH) {
    fail(
      "NESTING_TOO_DEEP",
      `Property ${show(budget.root)} nests objects at most ${MAX_NESTING_DEPTH} levels deep; ${show(path)} is level ${depth}`,
      path,
    );
  }
  const out: { [key: string]: JsonValue } = {};
  for (const [k, v] of Object.entries(obj)) {
    budget.keys++;
    if (budget.keys > MAX_NESTED_KEYS) {
      fail(
        "TOO_MANY_PROPERTIES",
        `Property ${show(budget.root)} holds at most ${MAX_NESTED_KEYS} keys in all its levels`,
        budget.root,
      );
    }
    const at = `${path}.${k}`;
    validateKey(k, at);
    if (isPlainObject(v) && !Object.hasOwn(v, "$date")) {
      out[k] = parseObject(v, at, depth + 1, budget, ctx);
      continue;
    }
    if (Array.isArray(v)) {
      fail(
        "TYPE_MISMATCH",
        `Property ${show(at)} inside an object must be a string, number, boolean or date (arrays are top-level only), got ${describeValue(v)}`,
        at,
      );
    }
    const date = parseDateInput(v, ctx.timezone, at);
    out[k] = date !== null ? toIsoUtc(date) : (parseScalar(v, at).value as string | number | boolean);
  }
  return out;
}
