/**
 * Untrusted ingest JSON → typed records (API.md Ingest). Every refusal names the field relative to the record;
 * the batch runner prefixes `records[i]`.
 */
import type { ClockSkew } from "./clock-skew.js";
import { PortraitError, show } from "./errors.js";
import { parseEventProperties, parseTimestamp, validateEventName } from "./properties/event-properties.js";
import { isPlainObject } from "./properties/keys.js";
import { parsePropertySet } from "./properties/parse.js";
import { isValidTimeZone, normaliseIdentityValue } from "./properties/values.js";
import type { EventRecord, Handle, IngestRecord, LoginRecord, ProfileRecord, TokenRecord } from "./records.js";
import { assertStorableText } from "./text.js";
import { type AccountSettings, IDENTITY_KEYS, type IdentityKey, type RecordContext } from "./types.js";

const RECORD_TYPES = ["login", "profile", "event", "token"] as const;
const MAX_ID_LENGTH = 256;
const MAX_DEVICE_ID_LENGTH = 256;

export interface ParseOptions {
  settings: AccountSettings;
  now: number;
  /**
   * The SDK endpoint, called with a public key: device handles only, and its records are marked `viaPublicKey`
   * (records.ts).
   */
  deviceHandlesOnly?: boolean;
  /** An SDK batch's clock skew (its sentAt): numeric ts are moved to the server's clock (clock-skew.ts). */
  clockSkew?: ClockSkew;
}

export { isPlainObject };

/**
 * §11 "Identity values": a junk or invalid identity value is INVALID_IDENTITY, but MISSING_IDENTITY when it was a
 * login's only one, so a login made only of placeholders reads as the missing identity it is. A malformed Email or
 * Phone keeps its own code (INVALID_EMAIL, INVALID_PHONE), as everywhere.
 */
function asMissingIdentity(error: unknown, properties: unknown, keys: IdentityKey[]): unknown {
  if (!(error instanceof PortraitError) || error.code !== "INVALID_IDENTITY" || !isPlainObject(properties))
    return error;
  const usable = keys.some((key) => {
    const value = properties[key];
    if (value === undefined || isPlainObject(value)) return false;
    try {
      normaliseIdentityValue(key, value, key);
      return true;
    } catch {
      return false;
    }
  });
  if (usable) return error;
  return new PortraitError(
    "MISSING_IDENTITY",
    `a login needs at least one usable identity value (${keys.join(", ")}): ${error.message}`,
    error.field,
  );
}

export function parseRecord(input: unknown, opts: ParseOptions): IngestRecord {
  if (!isPlainObject(input)) throw new PortraitError("INVALID_RECORD", "a record must be a JSON object");
  assertStorableText(input);
  const type = input.type;
  if (typeof type !== "string" || !(RECORD_TYPES as readonly string[]).includes(type)) {
    throw new PortraitError(
      "INVALID_RECORD",
      `type must be one of ${RECORD_TYPES.join(", ")}, got ${show(type)}`,
      "type",
    );
  }
  const handle = parseHandle(input, opts);
  if (type === "login" && handle.kind !== "device") {
    throw new PortraitError("INVALID_HANDLE", "a login record needs deviceId as its handle", "deviceId");
  }
  const tz = opts.settings.timezone;
  // §11 Dates: an offset-less date-time is wall-clock time in the account timezone, for a record ts too.
  const ts = parseTimestamp(input.ts, opts.now, "ts", tz, opts.clockSkew);
  const id = parseRecordId(input.id);
  const context = parseContext(input.context);

  switch (type) {
    case "login":
    case "profile": {
      if (input.properties === undefined && type === "profile") {
        throw new PortraitError("INVALID_RECORD", "a profile record needs properties", "properties");
      }
      const raw = input.properties ?? {};
      const properties = withField("properties", () => {
        try {
          return parsePropertySet(raw, { timezone: tz, now: opts.now });
        } catch (e) {
          throw type === "login" ? asMissingIdentity(e, raw, opts.settings.identityKeys) : e;
        }
      });
      return withBase({ type, handle, ts, properties } as LoginRecord | ProfileRecord, id, context, opts);
    }
    case "event": {
      const name = withField("name", () => validateEventName(input.name));
      const properties = withField("properties", () =>
        parseEventProperties(name, input.properties ?? {}, { timezone: tz }),
      );
      return withBase<EventRecord>({ type: "event", handle, ts, name, properties }, id, context, opts);
    }
    default: {
      if (handle.kind !== "device") {
        throw new PortraitError("INVALID_HANDLE", "a token record needs deviceId as its handle", "deviceId");
      }
      if (input.channel !== "push") {
        throw new PortraitError("INVALID_VALUE", `channel must be "push", got ${show(input.channel)}`, "channel");
      }
      const token = input.token;
      if (token !== null && (typeof token !== "string" || token.length === 0 || token.length > 4096)) {
        throw new PortraitError("INVALID_VALUE", "token must be a non-empty string (≤ 4096 chars) or null", "token");
      }
      return withBase<TokenRecord>({ type: "token", handle, ts, channel: "push", token }, id, context, opts);
    }
  }
}

/**
 * A record with its optional id and context, added field by field in one order: spreading them in made records of
 * several shapes that V8 kept migrating (≈ 13% of an ingested event's instructions, callgrind).
 */
function withBase<R extends IngestRecord>(
  record: R,
  id: string | undefined,
  context: RecordContext | undefined,
  opts: ParseOptions,
): R {
  if (id !== undefined) record.id = id;
  if (context !== undefined) record.context = context;
  if (opts.deviceHandlesOnly) record.viaPublicKey = true;
  return record;
}

function withField<T>(field: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PortraitError) throw e.under(field);
    throw e;
  }
}

/** SEMANTICS §11 Handles: exactly one of deviceId, identity (one enabled key), profileId. */
export function parseHandle(input: Record<string, unknown>, opts: ParseOptions): Handle {
  const present = (["deviceId", "identity", "profileId"] as const).filter((k) => input[k] !== undefined);
  if (present.length === 0) {
    throw new PortraitError("MISSING_HANDLE", "a record needs one handle: deviceId, identity or profileId");
  }
  if (present.length > 1) {
    throw new PortraitError("MULTIPLE_HANDLES", `a record names one handle, got ${present.join(" and ")}`, present[1]);
  }
  const which = present[0];
  if (opts.deviceHandlesOnly && which !== "deviceId") {
    throw new PortraitError(
      "HANDLE_NOT_ALLOWED",
      `the SDK endpoint accepts deviceId handles only, got ${which}`,
      which,
    );
  }
  if (which === "deviceId") return { kind: "device", deviceId: parseDeviceId(input.deviceId, "deviceId") };
  if (which === "profileId") {
    const id = input.profileId;
    if (typeof id !== "string" || !/^[0-9a-f]{32}$/.test(id)) {
      throw new PortraitError("UNKNOWN_PROFILE", `profileId ${show(id)} is not a profile`, "profileId");
    }
    return { kind: "profile", profileId: id };
  }
  const identity = input.identity;
  if (!isPlainObject(identity) || Object.keys(identity).length !== 1) {
    throw new PortraitError(
      "INVALID_HANDLE",
      `identity must be an object with exactly one key from ${opts.settings.identityKeys.join(", ")}`,
      "identity",
    );
  }
  const [key, raw] = Object.entries(identity)[0] as [string, unknown];
  if (!(IDENTITY_KEYS as readonly string[]).includes(key) || !opts.settings.identityKeys.includes(key as IdentityKey)) {
    throw new PortraitError(
      "INVALID_HANDLE",
      `identity key ${show(key)} is not one of this account's identity keys (${opts.settings.identityKeys.join(", ")})`,
      `identity.${key}`,
    );
  }
  const value = normaliseIdentityValue(key as IdentityKey, raw, `identity.${key}`);
  return { kind: "identity", key: key as IdentityKey, value };
}

export function parseDeviceId(v: unknown, field: string): string {
  if (typeof v !== "string" || v.trim().length === 0 || v.length > MAX_DEVICE_ID_LENGTH) {
    throw new PortraitError(
      "INVALID_HANDLE",
      `deviceId must be a non-empty string of at most ${MAX_DEVICE_ID_LENGTH} characters`,
      field,
    );
  }
  return v;
}

function parseRecordId(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === "number" && Number.isFinite(v)) return String(v);
  if (typeof v !== "string" || v.length === 0 || v.length > MAX_ID_LENGTH) {
    throw new PortraitError(
      "INVALID_RECORD",
      `id must be a non-empty string of at most ${MAX_ID_LENGTH} characters`,
      "id",
    );
  }
  return v;
}

const CONTEXT_STRINGS = [
  "timezone",
  "locale",
  "url",
  "referrer",
  "utm_source",
  "utm_medium",
  "utm_campaign",
  "platform",
  "ip",
] as const;

function parseContext(v: unknown): RecordContext | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isPlainObject(v)) throw new PortraitError("INVALID_RECORD", "context must be an object", "context");
  const out: RecordContext = {};
  for (const key of CONTEXT_STRINGS) {
    const value = v[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== "string" || value.length > 2048) {
      throw new PortraitError(
        "INVALID_VALUE",
        `context.${key} must be a string of at most 2048 characters`,
        `context.${key}`,
      );
    }
    out[key] = value;
  }
  if (out.timezone !== undefined && !isTimeZone(out.timezone)) {
    throw new PortraitError(
      "INVALID_TIMEZONE",
      `context.timezone ${show(out.timezone)} is not an IANA zone`,
      "context.timezone",
    );
  }
  if (v.location !== undefined && v.location !== null) {
    const loc = v.location;
    if (!isPlainObject(loc))
      throw new PortraitError("INVALID_VALUE", "context.location must be an object", "context.location");
    const location: NonNullable<RecordContext["location"]> = {};
    for (const key of ["city", "region", "country"] as const) {
      const s = loc[key];
      if (s === undefined || s === null) continue;
      if (typeof s !== "string" || s.length > 512) {
        throw new PortraitError("INVALID_VALUE", `context.location.${key} must be a string`, `context.location.${key}`);
      }
      location[key] = s;
    }
    for (const [key, limit] of [
      ["lat", 90],
      ["lon", 180],
    ] as const) {
      const n = loc[key];
      if (n === undefined || n === null) continue;
      if (typeof n !== "number" || !Number.isFinite(n) || Math.abs(n) > limit) {
        throw new PortraitError(
          "INVALID_VALUE",
          `context.location.${key} must be a number within ±${limit}`,
          `context.location.${key}`,
        );
      }
      location[key] = n;
    }
    out.location = location;
  }
  return out;
}

/** IANA zone names only (offsets such as "+05:30" are not zones). */
export const isTimeZone = isValidTimeZone;
