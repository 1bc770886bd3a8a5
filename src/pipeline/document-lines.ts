/**
 * Document import lines (SEMANTICS §8): each line names its person by a user account (compartment + user account
 * id: an unknown one on UPSERT creates the person), an email hash or a user point (profile) id, and is applied as a
 * `document` record through the same pipeline step as `PUT /v1/profiles/{id}/documents/…`. Lines of a batch share
 * one transaction; each is atomic and claims its record id first, so a repeated line changes nothing.
 */
import { PortraitError } from "../engine/errors.js";
import type { DocumentRecord, RecordResult } from "../engine/records.js";
import type { Account, JsonValue } from "../engine/types.js";
import { applyRecord } from "./apply-record.js";
import type { BatchFailure, Portrait } from "./portrait.js";
import { RecordScope } from "./record-scope.js";
import { createProfile } from "./resolve.js";

export interface DocumentLine {
  compartmentId: string;
  /** `emailHash` is resolved to a profile id (`userPoint`) before the line is applied. */
  identifier:
    | { kind: "userAccount"; userAccountId: string }
    | { kind: "emailHash"; hash: string }
    | { kind: "userPoint"; profileId: string };
  mode: DocumentRecord["mode"];
  body: { [key: string]: JsonValue };
}

export interface DocumentLineOutcome {
  ok: Array<RecordResult & { index: number }>;
  refused: BatchFailure[];
}

async function applyLine(scope: RecordScope, line: DocumentLine, id: string | undefined): Promise<RecordResult> {
  const { uow } = scope;
  if (id !== undefined && !(await uow.tx.claimRecordId(uow.accountId, id, scope.now))) {
    return { profileId: null, outcome: "duplicate" };
  }
  let profileId: string;
  let userAccountId: string;
  let created = false;
  if (line.identifier.kind === "userAccount") {
    userAccountId = line.identifier.userAccountId;
    const ref = { compartmentId: line.compartmentId, userAccountId };
    const owner = await uow.tx.findProfileByUserAccount(uow.accountId, ref);
    if (owner !== null) {
      profileId = owner;
    } else if (line.mode === "delete") {
      throw new PortraitError(
        "UNKNOWN_DOCUMENT",
        `no document ${line.compartmentId}/${userAccountId} to delete`,
        "user_account_id",
      );
    } else {
      // SEMANTICS §8: an unknown identifier on UPSERT creates the person.
      profileId = (await createProfile(scope)).id;
      created = true;
    }
  } else if (line.identifier.kind === "userPoint") {
    const live = await uow.loadLive(line.identifier.profileId);
    if (!live) {
      throw new PortraitError(
        "UNKNOWN_PROFILE",
        `user_point_id ${line.identifier.profileId} is not a profile`,
        "user_point_id",
      );
    }
    profileId = live.id;
    // A person named by email hash or user point has one document per compartment, keyed by its profile id.
    userAccountId = live.id;
  } else {
    throw new Error("applyDocumentLines: resolve email hashes to user points first");
  }
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
  };
  const result = await applyRecord(scope, record);
  return created ? { ...result, outcome: "created" } : result;
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
