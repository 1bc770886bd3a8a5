/**
 * Document import lines (SEMANTICS §8): each line names its person by a user account (compartment + user account
 * id: an unknown one on UPSERT creates the person), an email hash or a user point (profile) id, and is applied as a
 * `document` record through the same pipeline step as `PUT /v1/profiles/{id}/documents/…`. Lines of a batch share
 * one transaction; each is atomic and claims its record id first, so a repeated line changes nothing.
 */
import { createHash } from "node:crypto";
import { PortraitError } from "../engine/errors.js";
import type { DocumentLineHandle, DocumentRecord, RecordResult } from "../engine/records.js";
import type { Account, JsonValue } from "../engine/types.js";
import { applyRecord } from "./apply-record.js";
import type { BatchFailure, Portrait } from "./portrait.js";
import { RecordScope } from "./record-scope.js";
import { createProfile } from "./resolve.js";
import type { UnitOfWork } from "./unit-of-work.js";

export interface DocumentLine {
  compartmentId: string;
  /** An `emailHash` line is applied with `profileId`: the holder the import runner found in the email-hash table. */
  identifier:
    | { kind: "userAccount"; userAccountId: string }
    | { kind: "emailHash"; hash: string; profileId?: string }
    | { kind: "userPoint"; profileId: string };
  mode: DocumentRecord["mode"];
  body: { [key: string]: JsonValue };
}

export interface DocumentLineOutcome {
  ok: Array<RecordResult & { index: number }>;
  refused: BatchFailure[];
}

/** The person a line's identifier names now, and the user account id its document is keyed by. */
interface NamedPerson {
  profileId: string;
  userAccountId: string;
}

/**
 * Whom `via` names at this moment, or null: the holder of the user account or of the Email, or the live profile a
 * user point id leads to (a tombstone's id leads to its target). Creates nobody.
 */
async function personNamedBy(
  uow: UnitOfWork,
  ref: { compartmentId: string; userAccountId: string },
  via: DocumentLineHandle,
): Promise<NamedPerson | null> {
  if (via.kind === "userAccount") {
    const owner = await uow.tx.findProfileByUserAccount(uow.accountId, ref);
    return owner === null ? null : { profileId: owner, userAccountId: ref.userAccountId };
  }
  // A person named by email hash or user point has one document per compartment, keyed by its profile id.
  const id =
    via.kind === "userPoint"
      ? ((await uow.loadLive(via.profileId))?.id ?? null)
      : await uow.tx.findProfileByIdentity(uow.accountId, "Email", via.email);
  return id === null ? null : { profileId: id, userAccountId: id };
}

/**
 * The line's identifier as journalled. An email hash is kept with the Email it stands for, so that an undo routes
 * the line to whoever holds that Email then; the email-hash table may be older than this transaction, so a holder it
 * names who no longer has an Email of that hash is nobody.
 */
async function lineHandle(uow: UnitOfWork, identifier: DocumentLine["identifier"]): Promise<DocumentLineHandle> {
  if (identifier.kind === "userAccount") return { kind: "userAccount" };
  if (identifier.kind === "userPoint") return { kind: "userPoint", profileId: identifier.profileId };
  if (identifier.profileId === undefined) throw new Error("applyDocumentLines: look email hashes up first");
  const holder = await uow.loadLive(identifier.profileId);
  const email = holder?.identities.Email?.find((v) => sha256(v.value) === identifier.hash)?.value;
  if (email === undefined) {
    throw new PortraitError("UNKNOWN_PROFILE", "no profile has an Email with this hash", "email_hash");
  }
  return { kind: "emailHash", hash: identifier.hash, email };
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

async function applyLine(scope: RecordScope, line: DocumentLine, id: string | undefined): Promise<RecordResult> {
  const { uow } = scope;
  if (id !== undefined && !(await uow.tx.claimRecordId(uow.accountId, id, scope.now))) {
    return { profileId: null, outcome: "duplicate" };
  }
  const via = await lineHandle(uow, line.identifier);
  const ref = {
    compartmentId: line.compartmentId,
    userAccountId: line.identifier.kind === "userAccount" ? line.identifier.userAccountId : "",
  };
  let person = await personNamedBy(uow, ref, via);
  let created = false;
  if (person === null) {
    if (line.identifier.kind === "userPoint") {
      throw new PortraitError(
        "UNKNOWN_PROFILE",
        `user_point_id ${line.identifier.profileId} is not a profile`,
        "user_point_id",
      );
    }
    if (line.mode === "delete") {
      throw new PortraitError(
        "UNKNOWN_DOCUMENT",
        `no document ${line.compartmentId}/${ref.userAccountId} to delete`,
        "user_account_id",
      );
    }
    // SEMANTICS §8: an unknown identifier on UPSERT creates the person.
    person = { profileId: (await createProfile(scope)).id, userAccountId: ref.userAccountId };
    created = true;
  }
  const { profileId, userAccountId } = person;
  if (line.mode === "delete") {
    const doc = await uow.tx.getDocument(uow.accountId, { compartmentId: line.compartmentId, userAccountId });
    if (!doc || doc.profileId !== profileId) {
      throw new PortraitError("UNKNOWN_DOCUMENT", `no document ${line.compartmentId}/${userAccountId} to delete`);
    }
  }
  const record: DocumentRecord = {
    type: "document",
    ts: scope.now,
    handle: { kind: "profile", profileId },
    compartmentId: line.compartmentId,
    userAccountId,
    mode: line.mode,
    body: line.body,
    line: via,
  };
  const result = await applyRecord(scope, record);
  return created ? { ...result, outcome: "created" } : result;
}

/**
 * A journalled import line, routed again by its identifier when a merge is undone (SEMANTICS §7): to whoever holds
 * the user account or the Email after the undo, or to the profile the user point id names then (the former source's
 * id names the source again). A line that names nobody then is refused, never applied to someone made up for it.
 */
export async function routeJournalledLine(uow: UnitOfWork, record: DocumentRecord): Promise<DocumentRecord> {
  if (record.line === undefined) return record;
  const person = await personNamedBy(uow, record, record.line);
  if (person === null) {
    throw new PortraitError("UNKNOWN_PROFILE", "the line's identifier names nobody after the undo", "mergeId");
  }
  return { ...record, handle: { kind: "profile", profileId: person.profileId }, userAccountId: person.userAccountId };
}

/** Applies lines in one transaction, each atomic; a refused line is reported, never thrown. */
export function applyDocumentLines(
  portrait: Portrait,
  account: Account,
  lines: Array<{ index: number; line: DocumentLine; id?: string }>,
): Promise<DocumentLineOutcome> {
  const now = portrait.clock.now();
  return portrait.transact(account, async (uow) => {
    const out: DocumentLineOutcome = { ok: [], refused: [] };
    for (const { index, line, id } of lines) {
      try {
        const result = await uow.atomically(() => applyLine(new RecordScope(uow, portrait.ids, now), line, id));
        out.ok.push({ index, ...result });
      } catch (e) {
        if (!(e instanceof PortraitError)) throw e;
        out.refused.push({ index, code: e.code, error: e.message, ...(e.field !== undefined && { field: e.field }) });
      }
    }
    return out;
  });
}
