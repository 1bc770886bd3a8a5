/**
 * Events (SEMANTICS §3 "Event"): the name, the record timestamp and the event properties, which are scalars only
 * except `Charged.Items`. Error fields are relative to the properties object (`Amount`, `Items[2].Price`).
 */
import type { ClockSkew } from "../clock-skew.js";
import { fail, show } from "../errors.js";
import type { EventPropertyValue, ValueType } from "../types.js";
import { charLength, isPlainObject, validateKey } from "./keys.js";
import { DATE_TEXT_FORMS, describeValue, MAX_STRING_LENGTH, parseDateInput, readDateText, toIsoUtc } from "./values.js";

export const MAX_EVENT_NAME_LENGTH = 120;
export const MAX_EVENT_PROPERTIES = 256;
export const MAX_CHARGED_ITEMS = 100;
/** Keys of one `Charged.Items` element. */
export const MAX_ITEM_PROPERTIES = 256;
/** How far in the future a record's ts may be (SEMANTICS §3). */
export const MAX_FUTURE_MS = 86_400_000;

/** Written by Portrait itself; clients sending them get RESERVED_EVENT_NAME (SEMANTICS §3). */
export const RESERVED_EVENT_NAMES: ReadonlySet<string> = new Set([
  "Identity Set",
  "Identity Error",
  "Profile Merged",
  "Profile Demerged",
]);

export const CHARGED = "Charged";

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/** The types SEMANTICS §3 fixes for Charged's own properties: an import reads an untyped cell of a fresh account by them. */
export const CHARGED_PROPERTY_TYPES: Readonly<Record<string, ValueType>> = Object.freeze({ Amount: "number" });

/**
 * A client-sent event name: a string of 1-120 characters once trimmed, not reserved. Errors carry no field.
 * The name is trimmed of white space at both ends first, on every path (/v1/ingest, the SDK batch, imports), before
 * the reserved names and Charged are recognised: " Identity Set" slipped past the reserved names, and " Charged "
 * was another event that fed no revenue. Returns the trimmed name.
 */
export function validateEventName(raw: unknown): string {
  if (typeof raw !== "string") {
    fail("INVALID_EVENT_NAME", `Event name must be a string, got ${describeValue(raw)}`);
  }
  const name = raw.trim();
  const n = name.length <= MAX_EVENT_NAME_LENGTH ? name.length : charLength(name);
  if (n < 1 || n > MAX_EVENT_NAME_LENGTH) {
    fail(
      "INVALID_EVENT_NAME",
      `Event name must be 1-${MAX_EVENT_NAME_LENGTH} characters and not blank, got ${show(raw)}`,
    );
  }
  if (CONTROL.test(name)) {
    fail("INVALID_EVENT_NAME", `Event name must not contain control characters, got ${show(name)}`);
  }
  if (RESERVED_EVENT_NAMES.has(name)) {
    fail("RESERVED_EVENT_NAME", `Event name ${show(name)} is reserved for events Portrait writes itself`);
  }
  return name;
}

/** Epoch seconds with a fraction, as text: the whole seconds as date text reads them, the fraction to the ms. */
const EPOCH_FRACTION_TEXT = /^[1-9]\d{8,11}\.\d+$/;

/**
 * A record's ts: epoch seconds as a number (fractions kept to the millisecond), or text read as every date text is
 * (readDateText: ISO-8601, offset-less and date-only in `timezone`; the compact date `YYYYMMDD`; epoch seconds of 9
 * to 12 digits, here with an optional fraction). Absent → `now`. Must be > 0 and at most one day after `now`.
 * With `skew` (an SDK batch's sentAt, clock-skew.ts), a number is first moved to the server's clock; one that lands
 * out of range then is out of range relative to sentAt, and the refusal says so, naming both. Returns epoch ms.
 */
export function parseTimestamp(v: unknown, now: number, field: string, timezone = "UTC", skew?: ClockSkew): number {
  if (v === undefined) return now;
  let ms: number | null = null;
  if (typeof v === "number" && Number.isFinite(v)) {
    ms = Math.round(v * 1000);
    if (skew !== undefined) {
      ms += skew.ms;
      checkAgainstSentAt(v, ms, now, field, skew);
    }
  } else if (typeof v === "string") {
    const text = v.trim();
    ms = EPOCH_FRACTION_TEXT.test(text) ? Math.round(Number(text) * 1000) : (readDateText(text, timezone)?.ms ?? null);
  }
  if (ms === null) {
    fail(
      "INVALID_TIMESTAMP",
      `${field} must be epoch seconds or an ISO-8601 date-time such as "2024-11-20T10:00:00Z" (as text: ${DATE_TEXT_FORMS}), got ${describeValue(v)}`,
      field,
    );
  }
  if (ms <= 0) {
    fail("INVALID_TIMESTAMP", `${field} must be after 1970-01-01T00:00:00Z, got ${show(v)}`, field);
  }
  if (ms > now + MAX_FUTURE_MS) {
    fail(
      "INVALID_TIMESTAMP",
      `${field} must be at most one day in the future (epoch seconds, not milliseconds), got ${show(v)}`,
      field,
    );
  }
  return ms;
}

/**
 * A numeric ts moved by its batch's skew lands where the other range checks would refuse it only when it is far from
 * sentAt: more than a day after it (a record made after its batch was sent), or so long before it that the server's
 * clock puts it before 1970. That is the pair's fault, not the ts's alone: say so, naming both.
 */
function checkAgainstSentAt(v: number, ms: number, now: number, field: string, skew: ClockSkew): void {
  if (ms > 0 && ms <= now + MAX_FUTURE_MS) return;
  const apart = (Math.round(v * 1000) - Math.round(skew.sentAt * 1000)) / 1000;
  const sentAt = `the batch's sentAt (${show(skew.sentAt)}, the sender's clock when it sent the batch)`;
  fail(
    "INVALID_TIMESTAMP",
    ms > 0
      ? `${field} must be at most one day after ${sentAt}, got ${show(v)}, ${apart} s after it: a record's ts and ` +
          "sentAt must come from one clock"
      : `${field} is ${-apart} s before ${sentAt}, which puts it before 1970-01-01T00:00:00Z on the server's clock, ` +
          `got ${show(v)}: a record's ts and sentAt must come from one clock`,
    field,
  );
}

type Scalar = string | number | boolean;

/** An event's properties: at most 256 keys of scalars (dates become ISO-8601 UTC strings); `Charged` rules. */
export function parseEventProperties(
  name: string,
  input: unknown,
  opts: { timezone: string },
): Record<string, EventPropertyValue> {
  if (input === undefined) return {};
  if (!isPlainObject(input)) {
    fail("INVALID_RECORD", `Event properties must be a JSON object, got ${describeValue(input)}`);
  }
  const keys = Object.keys(input);
  if (keys.length > MAX_EVENT_PROPERTIES) {
    fail("TOO_MANY_PROPERTIES", `An event holds at most ${MAX_EVENT_PROPERTIES} properties, got ${keys.length}`);
  }
  const charged = name === CHARGED;
  const out: Record<string, EventPropertyValue> = {};
  for (const key of keys) {
    validateKey(key, key);
    const raw = input[key];
    if (charged && key === "Items") {
      out[key] = parseItems(raw, opts.timezone);
    } else if (charged && key === "Amount") {
      if (typeof raw !== "number" || !Number.isFinite(raw) || raw < 0) {
        fail("INVALID_VALUE", `Charged "Amount" must be a finite number >= 0, got ${describeValue(raw)}`, key);
      }
      out[key] = raw === 0 ? 0 : raw;
    } else if (charged && key === "Charged ID") {
      out[key] = parseChargedId(raw, key);
    } else {
      out[key] = parseEventScalar(raw, key, opts.timezone, charged ? ' (only Charged "Items" may be an array)' : "");
    }
  }
  return out;
}

/** `Charged ID`: a non-empty string or a whole number, stored as a string so `123` and `"123"` are one id. */
function parseChargedId(raw: unknown, field: string): string {
  if (typeof raw === "number" && Number.isSafeInteger(raw)) return String(raw);
  if (typeof raw === "string" && raw.trim() !== "" && charLength(raw) <= MAX_STRING_LENGTH) return raw;
  return fail(
    "INVALID_VALUE",
    `Charged "Charged ID" must be a non-empty string (at most ${MAX_STRING_LENGTH} characters) or a whole number, got ${describeValue(raw)}`,
    field,
  );
}

function parseItems(raw: unknown, timezone: string): Array<{ [key: string]: Scalar }> {
  if (!Array.isArray(raw)) {
    fail("TYPE_MISMATCH", `Charged "Items" must be an array of objects, got ${describeValue(raw)}`, "Items");
  }
  if (raw.length > MAX_CHARGED_ITEMS) {
    fail("TOO_MANY_VALUES", `Charged "Items" holds at most ${MAX_CHARGED_ITEMS} items, got ${raw.length}`, "Items");
  }
  return raw.map((item, i) => {
    const at = `Items[${i}]`;
    if (!isPlainObject(item)) {
      fail("TYPE_MISMATCH", `Charged "Items" element ${i} must be an object, got ${describeValue(item)}`, at);
    }
    const keys = Object.keys(item);
    if (keys.length > MAX_ITEM_PROPERTIES) {
      fail("TOO_MANY_PROPERTIES", `An item holds at most ${MAX_ITEM_PROPERTIES} keys, got ${keys.length}`, at);
    }
    const out: { [key: string]: Scalar } = {};
    for (const key of keys) {
      validateKey(key, `${at}.${key}`);
      out[key] = parseEventScalar(item[key], `${at}.${key}`, timezone, " (Items are flat objects of scalars)");
    }
    return out;
  });
}

function parseEventScalar(raw: unknown, path: string, timezone: string, hint: string): Scalar {
  const date = parseDateInput(raw, timezone, path);
  if (date !== null) return toIsoUtc(date);
  switch (typeof raw) {
    case "string": {
      const n = raw.length <= MAX_STRING_LENGTH ? raw.length : charLength(raw);
      if (n > MAX_STRING_LENGTH) {
        fail(
          "VALUE_TOO_LONG",
          `Event property ${show(path)} must be at most ${MAX_STRING_LENGTH} characters, got ${n}`,
          path,
        );
      }
      return raw;
    }
    case "number":
      if (!Number.isFinite(raw)) {
        fail("INVALID_VALUE", `Event property ${show(path)} must be a finite number, got ${describeValue(raw)}`, path);
      }
      return raw === 0 ? 0 : raw;
    case "boolean":
      return raw;
    default: {
      if (raw === null || raw === undefined) {
        fail("TYPE_MISMATCH", `Event property ${show(path)} cannot be null; leave the key out instead`, path);
      }
      return fail(
        "TYPE_MISMATCH",
        `Event property ${show(path)} must be a string, number, boolean or date${hint}, got ${describeValue(raw)}`,
        path,
      );
    }
  }
}
