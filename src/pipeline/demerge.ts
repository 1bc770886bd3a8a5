/**
 * Undoing a merge (SEMANTICS §7 Demerge): both pre-merge snapshots come back, then every record applied to the
 * merged profile since is replayed and routed again by the handle it came through.
 */
import { PortraitError } from "../engine/errors.js";
import type { AnyRecord } from "../engine/records.js";
import type { IdentityKey } from "../engine/types.js";
import type { MergeRow, ProfileSnapshot } from "../store/store.js";
import { applyRecord } from "./apply-record.js";
import type { IdSource } from "./clock.js";
import { RecordScope } from "./record-scope.js";
import type { UnitOfWork } from "./unit-of-work.js";

export interface DemergeResult {
  targetId: string;
  sourceId: string;
  replayed: number;
  /** Journal records that could not be applied again (e.g. now conflicting), with their error codes. */
  skipped: Array<{ index: number; code: string }>;
}

export async function undoMerge(uow: UnitOfWork, ids: IdSource, now: number, mergeId: string): Promise<DemergeResult> {
  const { tx, accountId } = uow;
  const named = await tx.getMerge(accountId, mergeId);
  if (!named) throw new PortraitError("UNKNOWN_MERGE", `merge ${mergeId} does not exist`, "mergeId");
  // Both people locked first, as a merge and every write to them lock them: then no write, merge or other undo can
  // commit between the checks and the journal read below and this undo (each of those waits, or this one does).
  await uow.load(named.targetId);
  await uow.load(named.sourceId);
  const merge = await tx.getMerge(accountId, mergeId);
  if (!merge) throw new PortraitError("UNKNOWN_MERGE", `merge ${mergeId} does not exist`, "mergeId");
  if (merge.undoneAt !== null)
    throw new PortraitError("ALREADY_UNDONE", `merge ${mergeId} was already undone`, "mergeId");
  for (const profileId of [merge.targetId, merge.sourceId]) {
    const latest = (await tx.listMergesTouching(accountId, profileId)).find((m) => m.undoneAt === null);
    if (latest && latest.id !== merge.id) {
      throw new PortraitError(
        "MERGE_NOT_UNDOABLE",
        `merge ${mergeId} is not the latest merge of profile ${profileId} (${latest.id} came after it)`,
        "mergeId",
      );
    }
  }
  const journal = await tx.listJournal(accountId, mergeId);
  await uow.flush();
  await clearMergedProfile(uow, merge, journal);
  await restore(uow, merge.target);
  await restore(uow, merge.source);
  await tx.moveEvents(accountId, merge.movedEventSeqs, merge.sourceId);
  if (merge.droppedEvents.length > 0) await tx.restoreEvents(accountId, merge.droppedEvents);
  await tx.markMergeUndone(accountId, mergeId, now);

  const marker = new RecordScope(uow, ids, now, true);
  for (const [profileId, other] of [
    [merge.targetId, merge.sourceId],
    [merge.sourceId, merge.targetId],
  ] as const) {
    marker.systemEvent(profileId, "Profile Demerged", now, { "Merge ID": mergeId, "Other Profile": other });
  }
  await tx.insertEvents(accountId, marker.systemEvents);
  for (const e of marker.systemEvents) {
    const state = await uow.load(e.profileId);
    if (state) uow.put({ ...state, stats: { ...state.stats, events: state.stats.events + 1 } });
  }

  const skipped: DemergeResult["skipped"] = [];
  let replayed = 0;
  for (const [index, record] of journal.entries()) {
    try {
      await uow.atomically(() => applyRecord(new RecordScope(uow, ids, now, true), record as AnyRecord));
      replayed++;
    } catch (e) {
      if (!(e instanceof PortraitError)) throw e;
      skipped.push({ index, code: e.code });
    }
  }
  return { targetId: merge.targetId, sourceId: merge.sourceId, replayed, skipped };
}

/** Removes what the merged profile holds now; the snapshots and the journal rebuild it. */
async function clearMergedProfile(uow: UnitOfWork, merge: MergeRow, journal: AnyRecord[]): Promise<void> {
  const { tx, accountId } = uow;
  const current = await uow.load(merge.targetId);
  if (!current) throw new PortraitError("UNKNOWN_PROFILE", `profile ${merge.targetId} no longer exists`, "mergeId");
  const after = (await tx.listEventSeqs(accountId, merge.targetId)).filter((s) => s > merge.eventSeqAtMerge);
  await tx.deleteEvents(accountId, after);
  for (const [key, values] of Object.entries(current.identities)) {
    for (const v of values ?? []) await tx.releaseIdentity(accountId, key as IdentityKey, v.value, current.id);
  }
  const before = new Set([...merge.target.devices, ...merge.source.devices].map((d) => d.deviceId));
  const handBack = devicesTakenByLogins(journal);
  for (const d of await tx.listDevices(accountId, current.id)) {
    if (before.has(d.deviceId)) continue;
    // A device a journalled login took from another profile goes back to it (an orphan it made is one again no
    // more), so that the login, replayed, starts from the same place: case 2 then orphans it to the right person.
    const from = handBack.get(d.deviceId);
    const owner = from === undefined ? null : await uow.load(from);
    if (owner && owner.mergedInto === null) {
      await tx.upsertDevice(accountId, { ...d, profileId: owner.id });
      if (owner.orphanOf === current.id) uow.put({ ...owner, orphanOf: null });
    } else {
      // Any other device first seen after the merge is recreated by the replayed records that brought it.
      await tx.deleteDevice(accountId, d.deviceId);
    }
  }
  for (const ref of await tx.listUserAccounts(accountId, current.id)) await tx.releaseUserAccount(accountId, ref);
  for (const doc of await tx.listDocuments(accountId, current.id)) await tx.deleteDocument(accountId, doc);
  await tx.releaseChargedIds(accountId, current.id);
}

/** Each device a journalled login moved, with the profile it moved from the first time. */
function devicesTakenByLogins(journal: AnyRecord[]): Map<string, string> {
  const taken = new Map<string, string>();
  for (const record of journal) {
    if (record.type !== "login" || record.deviceFrom === undefined || record.handle.kind !== "device") continue;
    if (!taken.has(record.handle.deviceId)) taken.set(record.handle.deviceId, record.deviceFrom);
  }
  return taken;
}

async function restore(uow: UnitOfWork, snap: ProfileSnapshot): Promise<void> {
  const { tx, accountId } = uow;
  const id = snap.state.id;
  uow.put(snap.state);
  for (const [key, values] of Object.entries(snap.state.identities)) {
    for (const v of values ?? []) {
      const owner = await tx.claimIdentity(accountId, key as IdentityKey, v.value, id);
      if (owner !== id)
        throw new PortraitError("MERGE_NOT_UNDOABLE", `${key} is now held by profile ${owner}`, "mergeId");
    }
  }
  for (const d of snap.devices) await tx.upsertDevice(accountId, d);
  for (const ref of snap.userAccounts) await tx.claimUserAccount(accountId, ref, id);
  for (const doc of snap.documents) await tx.putDocument(accountId, doc);
  for (const chargedId of snap.chargedIds) await tx.claimChargedId(accountId, id, chargedId);
  for (const orphanId of snap.orphans) {
    const orphan = await uow.load(orphanId);
    if (orphan) uow.put({ ...orphan, orphanOf: id });
  }
}
