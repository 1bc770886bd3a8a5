/**
 * Ingest records after parsing: precise types the engine can trust (STYLE: parse once at the edge).
 * `parse/` turns untrusted JSON into these; the pipeline applies them.
 */
import type { EventPropertyValue, IdentityKey, JsonValue, RecordContext, StoredValue, ValueType } from "./types.js";

export type Handle =
  | { kind: "device"; deviceId: string }
  | { kind: "identity"; key: IdentityKey; value: string }
  | { kind: "profile"; profileId: string };

/** One operation of a property set (SEMANTICS §4). A plain value is `set`. */
export type PropertyOp =
  | { kind: "set"; key: string; value: StoredValue; type: ValueType }
  | { kind: "setOnce"; key: string; value: StoredValue; type: ValueType }
  | { kind: "incr"; key: string; by: number }
  | { kind: "add"; key: string; values: string[] }
  | { kind: "remove"; key: string; values: string[] }
  | { kind: "setMulti"; key: string; values: string[] }
  | { kind: "delete"; key: string };

interface RecordBase {
  /** Client id for idempotency (SEMANTICS §11). */
  id?: string;
  /** Record time, epoch ms: the one sent, else the receive time. */
  ts: number;
  handle: Handle;
  context?: RecordContext;
  /**
   * Sent with a public key (`/v1/sdk/batch`), which any web page may hold. Such a record never merges two people (an
   * identity conflict is refused as under `mergePolicy: reject`), and its `id` is remembered apart from the ids of
   * secret-key records, so that a page cannot claim a backend's ids in advance (docs/sdk.md).
   */
  viaPublicKey?: true;
}

/**
 * The key under which a record's id is remembered for idempotency: public-key ids apart (RecordBase.viaPublicKey),
 * behind a prefix of control characters no real client id starts with.
 */
export function recordIdKey(record: { id?: string; viaPublicKey?: true }): string | undefined {
  if (record.id === undefined) return undefined;
  return record.viaPublicKey ? `\u0001pk\u0001${record.id}` : record.id;
}

export interface LoginRecord extends RecordBase {
  type: "login";
  properties: PropertyOp[];
  /**
   * Written into merge journals only: the profile the login took its device from (Cur in login cases 2 and 4), so
   * that undoing the merge hands the device back before the login is replayed (pipeline/demerge.ts).
   */
  deviceFrom?: string;
}

export interface ProfileRecord extends RecordBase {
  type: "profile";
  properties: PropertyOp[];
}

export interface EventRecord extends RecordBase {
  type: "event";
  name: string;
  properties: Record<string, EventPropertyValue>;
  /**
   * Only in a merge's journal: the id Portrait gave the stored event when the record came without one, so that an
   * undo's replay stores it under the same id (SEMANTICS §7). Never an idempotency key: `id` is.
   */
  storedId?: string;
}

export interface TokenRecord extends RecordBase {
  type: "token";
  channel: "push";
  /** null unregisters the device's token. */
  token: string | null;
}

/** Writes that come from the profile API rather than ingest; journalled like any record so demerge replays them. */
export interface FlagsRecord extends RecordBase {
  type: "flags";
  test?: boolean;
  controlGroupExcluded?: boolean;
}

export interface DocumentRecord extends RecordBase {
  type: "document";
  compartmentId: string;
  userAccountId: string;
  /** `put` replaces the document (keeping system fields), `shallow`/`deep` merge into it, `delete` removes it. */
  mode: "put" | "shallow" | "deep" | "delete";
  body: { [key: string]: JsonValue };
  /** Where the client wrote `body`, for errors about it: the request body through the API; unset: an import line's `user_profile`. */
  bodyField?: string;
  /**
   * An import line's identifier (SEMANTICS §8), kept so that undoing a merge routes the record again by it (§7): the
   * `handle` is only the profile it was resolved to. Unset for `PUT/DELETE /v1/profiles/{id}/documents/…`, whose
   * handle is the path's id.
   */
  line?: DocumentLineHandle;
}

/**
 * How a document import line named its person. A line named by email hash or user point keys its document by the
 * person's profile id (docs/semantics.md "Imports"), so that id follows the person the line is routed to.
 */
export type DocumentLineHandle =
  /** The record's own (compartmentId, userAccountId). */
  | { kind: "userAccount" }
  /** `email` is the Email of that hash the person held when the line was applied. */
  | { kind: "emailHash"; hash: string; email: string }
  /** The line's `user_point_id` as given: a tombstone's id names the former source again after an undo. */
  | { kind: "userPoint"; profileId: string };

export type IngestRecord = LoginRecord | ProfileRecord | EventRecord | TokenRecord;
export type AnyRecord = IngestRecord | FlagsRecord | DocumentRecord;

export type Outcome = "identified" | "switched" | "appended" | "created" | "updated" | "stored" | "duplicate";

export interface Unapplied {
  key: string;
  code: "IDENTITY_CONFLICT" | "INVALID_IDENTITY" | "IDENTITY_KEY_NOT_ENABLED";
}

export interface RecordResult {
  /** null only for a `duplicate` whose handle names nobody now (the repeat came through another device, say). */
  profileId: string | null;
  outcome: Outcome;
  unapplied?: Unapplied[];
}
