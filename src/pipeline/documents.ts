/** Compartment profile documents (SEMANTICS §8): one per (compartmentId, userAccountId), owned by one person. */
import { PortraitError } from "../engine/errors.js";
import type { DocumentRecord } from "../engine/records.js";
import type { JsonValue, ProfileDocument, ProfileState } from "../engine/types.js";
import type { RecordScope } from "./record-scope.js";

export const MAX_DOCUMENT_BYTES = 64 * 1024;
type Doc = { [key: string]: JsonValue };

/** Portrait owns the timestamps; the ids are the client's to store as given, else the document's key. */
const OWNED = ["$creation_ts", "$last_modified_ts"];
/** The system fields a client may give (SEMANTICS §8: stored as given, independent of the line's identifier). */
const IDS = ["$compartment_id", "$user_account_id"];

export async function applyDocument(
  scope: RecordScope,
  profile: ProfileState,
  record: DocumentRecord,
): Promise<ProfileDocument | null> {
  const { uow } = scope;
  const ref = { compartmentId: record.compartmentId, userAccountId: record.userAccountId };
  const owner = await uow.tx.claimUserAccount(uow.accountId, ref, profile.id);
  if (owner !== profile.id) {
    throw new PortraitError(
      "IDENTITY_CONFLICT",
      `user account ${record.compartmentId}/${record.userAccountId} belongs to another profile`,
      "userAccountId",
    );
  }
  const existing = await uow.tx.getDocument(uow.accountId, ref);
  if (record.mode === "delete") {
    await uow.tx.deleteDocument(uow.accountId, ref);
    return null;
  }
  const incoming = withoutOwned(record.body);
  const base = existing?.body ?? {};
  const merged: Doc =
    record.mode === "put"
      ? incoming
      : record.mode === "shallow"
        ? { ...withoutOwned(base), ...incoming }
        : deepMerge(withoutOwned(base), incoming);
  // The client's document is what the limit measures: the ids and times Portrait adds would make the allowance move
  // with the ids' length, and a body under 64 KB be refused as over it.
  const size = Buffer.byteLength(JSON.stringify(merged));
  if (size > MAX_DOCUMENT_BYTES) {
    throw new PortraitError(
      "DOCUMENT_TOO_LARGE",
      `a profile document is at most ${MAX_DOCUMENT_BYTES} bytes of JSON (Portrait's own $ fields not counted)${
        record.mode === "put" ? "" : " once merged with the stored one"
      }, got ${size}`,
      record.bodyField ?? "user_profile",
    );
  }
  // The record's ts is when it came (the request, or the import batch): an undo's replay then writes the document
  // again as it was written, not at the undo's time (a document created once kept moving its $creation_ts with
  // every undo).
  const at = record.ts;
  const createdAt = existing?.createdAt ?? at;
  // §8: a replace (force_replace, PUT) keeps the system fields. The ids stay as stored, a client's own values
  // included, unless the new document gives them itself (stored as given); they used to be re-derived from the
  // line, losing what an earlier write had stored. (The merges keep them with the rest of the stored document.)
  const kept: Doc = {};
  if (record.mode === "put" && existing) {
    for (const id of IDS) {
      const stored = existing.body[id];
      if (stored !== undefined && !Object.hasOwn(incoming, id)) kept[id] = stored;
    }
  }
  const body: Doc = {
    $compartment_id: record.compartmentId,
    $user_account_id: record.userAccountId,
    ...kept,
    ...merged,
    $creation_ts: createdAt,
    $last_modified_ts: at,
  };
  const doc: ProfileDocument = { ...ref, profileId: profile.id, body, createdAt, updatedAt: at };
  await uow.tx.putDocument(uow.accountId, doc);
  return doc;
}

function withoutOwned(doc: Doc): Doc {
  const out: Doc = {};
  for (const [k, v] of Object.entries(doc)) if (!OWNED.includes(k)) out[k] = v;
  return out;
}

function isObject(v: JsonValue | undefined): v is Doc {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Nested objects merge key by key; anything else (arrays included) is replaced by the new value. */
export function deepMerge(base: Doc, incoming: Doc): Doc {
  const out: Doc = { ...base };
  for (const [k, v] of Object.entries(incoming)) {
    const b = out[k];
    out[k] = isObject(b) && isObject(v) ? deepMerge(b, v) : v;
  }
  return out;
}
