/**
 * Merging the source profile into the target (SEMANTICS §7): rows move, the engine decides the merged state,
 * and both pre-merge snapshots are kept so the merge can be undone.
 */
import { assertMergeable, mergeStates, tombstoneOf } from "../engine/merge.js";
import type { ProfileState, ProfileStats, StoredEvent } from "../engine/types.js";
import type { NewMerge, ProfileSnapshot } from "../store/store.js";
import type { RecordScope } from "./record-scope.js";
import type { UnitOfWork } from "./unit-of-work.js";

export interface MergeResult {
  mergeId: string;
  target: ProfileState;
}

export async function snapshotOf(uow: UnitOfWork, state: ProfileState): Promise<ProfileSnapshot> {
  const { tx, accountId } = uow;
  return {
    state,
    devices: await tx.listDevices(accountId, state.id),
    userAccounts: await tx.listUserAccounts(accountId, state.id),
    documents: await tx.listDocuments(accountId, state.id),
    chargedIds: await tx.listChargedIds(accountId, state.id),
    orphans: await tx.listOrphans(accountId, state.id),
  };
}

export async function mergeProfiles(scope: RecordScope, targetId: string, sourceId: string): Promise<MergeResult> {
  const { uow } = scope;
  const { tx, accountId } = uow;
  await scope.writeSystemEvents();
  await uow.flush();
  const target = await uow.load(targetId);
  const source = await uow.load(sourceId);
  assertMergeable(target, source, [targetId, sourceId]);
  if (!target || !source) throw new Error("unreachable: assertMergeable checked both");

  const targetSnap = await snapshotOf(uow, target);
  const sourceSnap = await snapshotOf(uow, source);
  const eventSeqAtMerge = await tx.maxEventSeq(accountId);

  // Repeated Charged IDs: the source's copy goes (kept aside in the merge row so undo can bring it back).
  const targetCharged = new Set(targetSnap.chargedIds);
  const repeated = new Set(sourceSnap.chargedIds.filter((id) => targetCharged.has(id)));
  const seqs = await tx.listEventSeqs(accountId, sourceId);
  let droppedEvents: StoredEvent[] = [];
  const dropped: ProfileStats = { events: 0, charged: 0, revenue: 0 };
  if (repeated.size > 0) {
    const events = await tx.listEventsBySeq(accountId, seqs);
    droppedEvents = events.filter((e) => e.name === "Charged" && repeated.has(String(e.properties["Charged ID"])));
    for (const e of droppedEvents) {
      dropped.events += 1;
      dropped.charged += 1;
      dropped.revenue += typeof e.properties.Amount === "number" ? e.properties.Amount : 0;
    }
    await tx.deleteEvents(
      accountId,
      droppedEvents.map((e) => e.seq),
    );
  }
  const droppedSeqs = new Set(droppedEvents.map((e) => e.seq));
  const movedEventSeqs = seqs.filter((s) => !droppedSeqs.has(s));
  await tx.moveEvents(accountId, movedEventSeqs, targetId);

  const mergeId = scope.ids.opaque();
  const merged = mergeStates(target, source, uow.account.settings.identityLimits, dropped, scope.now);

  // Account-wide handles move to the target.
  for (const [key, values] of Object.entries(source.identities)) {
    for (const v of values ?? []) await tx.releaseIdentity(accountId, key as never, v.value, sourceId);
  }
  for (const { key, value } of merged.identities.released) await tx.releaseIdentity(accountId, key, value, targetId);
  for (const { key, value } of merged.identities.added) await tx.claimIdentity(accountId, key, value, targetId);
  for (const d of sourceSnap.devices) await tx.upsertDevice(accountId, { ...d, profileId: targetId });
  for (const ref of sourceSnap.userAccounts) {
    await tx.releaseUserAccount(accountId, ref);
    await tx.claimUserAccount(accountId, ref, targetId);
  }
  for (const doc of sourceSnap.documents) await tx.putDocument(accountId, { ...doc, profileId: targetId });
  await tx.releaseChargedIds(accountId, sourceId);
  for (const id of sourceSnap.chargedIds) await tx.claimChargedId(accountId, targetId, id);
  for (const orphanId of sourceSnap.orphans) {
    const orphan = await uow.load(orphanId);
    if (orphan) uow.put({ ...orphan, orphanOf: targetId });
  }

  const row: NewMerge = {
    id: mergeId,
    targetId,
    sourceId,
    createdAt: scope.now,
    undoneAt: null,
    eventSeqAtMerge,
    target: targetSnap,
    source: sourceSnap,
    movedEventSeqs,
    droppedEvents,
  };
  await tx.insertMerge(accountId, row);

  const next: ProfileState = { ...merged.state, journalMergeId: mergeId };
  uow.put(next);
  uow.put(tombstoneOf(source, targetId, scope.now));
  scope.systemEvent(targetId, "Profile Merged", scope.now, { "Merge ID": mergeId, "Source Profile": sourceId });
  scope.touched.add(targetId);
  return { mergeId, target: next };
}
