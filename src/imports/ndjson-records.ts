/**
 * NDJSON lines → records: ingest records for profiles and events imports, mediarithmics profile-document lines for
 * documents imports (SEMANTICS §8). Lines are parsed here only as far as routing needs; the record parser and the
 * engine do the rest, as for the live API.
 */
import { PortraitError, show } from "../engine/errors.js";
import { isPlainObject } from "../engine/parse-record.js";
import { assertStorableText } from "../engine/text.js";
import type { JsonValue } from "../engine/types.js";
import type { DocumentLine } from "../pipeline/document-lines.js";
import { MAX_DOCUMENT_BYTES } from "../pipeline/documents.js";
import type { ImportHandle } from "../store/import-store.js";
import { handleOf, type MappedRow } from "./csv-records.js";
import { refusingWith } from "./row-refusal.js";

/**
 * Most object members (keys at any depth) one NDJSON line may hold: above what any valid record holds (256
 * properties; a Charged of 100 items × 256 properties is about 26k; a 64 KB document fewer). A 1 MB line of 96k
 * keys became a 10 MB object, and 1,000 of them a batch of gigabytes: such a line is refused before it is parsed.
 */
export const MAX_LINE_KEYS = 32 * 1024;

/**
 * The keys of a JSON text (its `:` outside strings) when they are more than `limit`, else null, counted without
 * parsing it. A line too short to hold more than `limit` keys (each takes at least 4 characters, `"":0,`) is not
 * scanned.
 */
export function jsonKeysOver(line: string, limit: number): number | null {
  if (line.length <= 4 * limit) return null;
  let keys = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 0x22) {
      // Skips the string: to its closing quote, past escaped characters.
      for (i++; i < line.length; i++) {
        const d = line.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
    } else if (c === 0x3a) keys++;
  }
  return keys > limit ? keys : null;
}

function parseLine(line: string): Record<string, unknown> {
  const keys = jsonKeysOver(line, MAX_LINE_KEYS);
  if (keys !== null) {
    throw new PortraitError(
      "INVALID_RECORD",
      `the line has ${keys} keys, more than ${MAX_LINE_KEYS}, the most one NDJSON line may hold: it is not read`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    throw new PortraitError("INVALID_JSON", `the line is not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(value)) throw new PortraitError("INVALID_RECORD", "each line must be a JSON object");
  return value;
}

const TYPES_OF: Record<"profiles" | "events", readonly string[]> = {
  profiles: ["profile", "login", "token"],
  events: ["event"],
};

/** A profiles or events NDJSON line: an ingest record (its `type` defaults to the import's kind). */
export function mapIngestLine(line: string, kind: "profiles" | "events"): MappedRow {
  const record = parseLine(line);
  const handles = recordHandles(record);
  return refusingWith(handles, () => {
    if (record.type === undefined) record.type = kind === "profiles" ? "profile" : "event";
    if (typeof record.type !== "string" || !TYPES_OF[kind].includes(record.type)) {
      throw new PortraitError(
        "INVALID_RECORD",
        `${kind === "events" ? "an" : "a"} ${kind} import takes records of type ${TYPES_OF[kind].join(", ")}, got ${show(record.type)}`,
        "type",
      );
    }
    return { record, handles };
  });
}

function recordHandles(record: Record<string, unknown>): ImportHandle[] {
  const out: ImportHandle[] = [];
  const add = (kind: string, v: unknown) => {
    if (typeof v === "string" && v.trim() !== "") out.push(handleOf(kind, v));
    else if (typeof v === "number") out.push(handleOf(kind, String(v)));
  };
  add("profileId", record.profileId);
  add("deviceId", record.deviceId);
  if (isPlainObject(record.identity)) for (const [k, v] of Object.entries(record.identity)) add(k, v);
  if (isPlainObject(record.properties)) {
    for (const key of ["Identity", "Email", "Phone", "FBID", "GPID"]) add(key, record.properties[key]);
  }
  return out;
}

const HEX64 = /^[0-9a-f]{64}$/;
const PROFILE_ID = /^[0-9a-f]{32}$/;

function idField(v: unknown, field: string): string {
  if (typeof v === "number" && Number.isSafeInteger(v)) return String(v);
  if (typeof v !== "string" || v.length === 0 || v.length > 256) {
    throw new PortraitError("INVALID_VALUE", `${field} must be a string of 1-256 characters, got ${show(v)}`, field);
  }
  return v;
}

/** A mediarithmics profile-document line (SEMANTICS §8, API.md Compartment documents). */
export function mapDocumentLine(line: string): { line: DocumentLine; handles: ImportHandle[] } {
  const input = parseLine(line);
  // Filled as the identifier is read: a line refused after that point is still found by its person's deletion.
  const handles: ImportHandle[] = [];
  return refusingWith(handles, () => ({ line: documentLine(input, handles), handles }));
}

function documentLine(input: Record<string, unknown>, handles: ImportHandle[]): DocumentLine {
  const operation = input.operation;
  if (operation !== "UPSERT" && operation !== "DELETE") {
    throw new PortraitError(
      "INVALID_VALUE",
      `operation must be "UPSERT" or "DELETE", got ${show(operation)}`,
      "operation",
    );
  }
  const compartmentId =
    input.compartment_id === undefined ? "default" : idField(input.compartment_id, "compartment_id");
  const given = (["user_account_id", "email_hash", "user_point_id"] as const).filter((k) => input[k] !== undefined);
  if (given.length === 0) {
    throw new PortraitError(
      "MISSING_HANDLE",
      "a line needs one identifier: user_account_id, email_hash or user_point_id",
    );
  }
  if (given.length > 1) {
    throw new PortraitError("MULTIPLE_HANDLES", `a line names one identifier, got ${given.join(" and ")}`, given[1]);
  }
  let identifier: DocumentLine["identifier"];
  if (given[0] === "user_account_id") {
    const userAccountId = idField(input.user_account_id, "user_account_id");
    identifier = { kind: "userAccount", userAccountId };
    handles.push({ kind: "userAccount", value: JSON.stringify([compartmentId, userAccountId]) });
  } else if (given[0] === "email_hash") {
    const hash = typeof input.email_hash === "string" ? input.email_hash.toLowerCase() : "";
    if (!HEX64.test(hash)) {
      throw new PortraitError(
        "INVALID_VALUE",
        "email_hash must be the hex SHA-256 of the normalised Email",
        "email_hash",
      );
    }
    identifier = { kind: "emailHash", hash };
    handles.push({ kind: "email_hash", value: hash });
  } else {
    const profileId = input.user_point_id;
    if (typeof profileId !== "string" || !PROFILE_ID.test(profileId)) {
      throw new PortraitError("UNKNOWN_PROFILE", `user_point_id ${show(profileId)} is not a profile`, "user_point_id");
    }
    identifier = { kind: "userPoint", profileId };
    handles.push({ kind: "profileId", value: profileId });
  }
  // Checked once the identifier is known, so that a line refused for its text is still tied to its person.
  assertStorableText(input);
  for (const flag of ["force_replace", "merge_objects"] as const) {
    if (input[flag] !== undefined && typeof input[flag] !== "boolean") {
      throw new PortraitError("INVALID_VALUE", `${flag} must be true or false, got ${show(input[flag])}`, flag);
    }
  }
  // An UPSERT carries its document: a missing or null one is an export's bug, refused like `[1,2]` rather than
  // creating a person with an empty document. A DELETE needs none.
  const body = operation === "UPSERT" ? input.user_profile : {};
  if (!isPlainObject(body)) {
    throw new PortraitError(
      "INVALID_DOCUMENT",
      `user_profile must be a JSON object, got ${body === undefined ? "none" : show(body)}`,
      "user_profile",
    );
  }
  const size = Buffer.byteLength(JSON.stringify(body));
  if (size > MAX_DOCUMENT_BYTES) {
    throw new PortraitError(
      "DOCUMENT_TOO_LARGE",
      `a profile document is at most ${MAX_DOCUMENT_BYTES} bytes of JSON (Portrait's own $ fields not counted), got ${size}`,
      "user_profile",
    );
  }
  const mode: DocumentLine["mode"] =
    operation === "DELETE"
      ? "delete"
      : input.force_replace === true
        ? "put"
        : input.merge_objects === true
          ? "deep"
          : "shallow";
  return { compartmentId, identifier, mode, body: body as { [key: string]: JsonValue } };
}
