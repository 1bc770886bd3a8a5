/**
 * Undoing a merge (SEMANTICS §7 Demerge): both pre-merge snapshots come back, then every record applied to the
 * merged profile since is replayed and routed again by the handle it came through. What left the merged person
 * after the merge for someone else stays with them (docs/semantics.md "Merge and undo").
 */
import { PortraitError } from "../engine/errors.js";
import { removeIdentityKey, trim } from "../engine/identity/identities.js";
import { withoutIdentityValue } from "../engine/merge.js";
import { hasIdentity } from "../engine/profile.js";
import type { AnyRecord } from "../engine/records.js";
import type { AccountSettings, DeviceRow, IdentityKey, ProfileState, StoredEvent } from "../engine/types.js";
import type { MergeRow, ProfileSnapshot } from "../store/store.js";
import { applyRecord } from "./apply-record.js";
import type { IdSource } from "./clock.js";
import { keepExclusionLimit } from "./control-group-exclusion.js";
import { routeJournalledLine } from "./document-lines.js";
import { RecordScope } from "./record-scope.js";
import type { UnitOfWork } from "./unit-of-work.js";

/**
 * What the undo left out (docs/semantics.md "Merge and undo"): part of a pre-merge snapshot left where it is now,
 * with another person (or released with one), an exclusion over the limit, or a journalled record the replay could
 * not apply.
 */
export interface UndoUnapplied {
  /**
   * The restored profile the handle belonged to before the merge; for a journalled record, the restored person its
   * handle names after the undo, else the merge's target (the merged person's id).
   */
  profileId: string;
  /** An identity key, `deviceId`, `controlGroupExcluded`, or a journalled record's type. */
  key: string;
  /** The value; `"true"` for an exclusion; for a record, what it named (see recordName). */
  value: string;
  code: "IDENTITY_CONFLICT" | "DEVICE_MOVED" | "CONTROL_GROUP_EXCLUSION_LIMIT" | "RECORD_NOT_REPLAYED";
  /** RECORD_NOT_REPLAYED only: the code the replayed record was refused with. */
  reason?: string;
}

export interface DemergeResult {
  targetId: string;
  sourceId: string;
  replayed: number;
  /** Journal records that could not be applied again (e.g. now conflicting), with their error codes. */
  skipped: Array<{ index: number; code: string }>;
  unapplied: UndoUnapplied[];
}

/** Where the handles the undo must not take from anyone stand when it starts. */
interface Away {
  /** Devices the snapshots or the journal name that the merged person no longer holds: each row now, null if gone. */
  devices: Map<string, DeviceRow | null>;
  /** Identity values journalled records came through that another person holds now (`key\0value`). */
  identities: Set<string>;
  /** Every device row the merged person holds now, for the journalled logins that took one from someone. */
  held: Map<string, DeviceRow>;
}

export async function undoMerge(uow: UnitOfWork, ids: IdSource, now: number, mergeId: string): Promise<DemergeResult> {
  const { tx, accountId } = uow;
  const named = await tx.getMerge(accountId, mergeId);
  if (!named) throw new PortraitError("UNKNOWN_MERGE", `merge ${mergeId} does not exist`, "mergeId");
  // SEMANTICS §9: the undo may bring excluded people back (both sides, a visitor handed back, a replayed exclusion),
  // and counts the limit for them: it holds the account's exclusions first, before any profile lock, as an exclusion
  // does (StoreTx.lockControlGroupExclusions).
  await tx.lockControlGroupExclusions(accountId);
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
  const away = await awayFromMerged(uow, merge, journal);
  const laterUndos = await clearMergedProfile(uow, merge);
  const before = new Set([...merge.target.devices, ...merge.source.devices].map((d) => d.deviceId));
  // Like the merged person's own, devices first seen after the merge are absent when the replay starts.
  for (const deviceId of away.devices.keys()) if (!before.has(deviceId)) await tx.deleteDevice(accountId, deviceId);
  const unapplied = [
    ...(await restore(uow, merge.targetId, merge.target, away)),
    ...(await restore(uow, merge.targetId, merge.source, away)),
  ];
  // SEMANTICS §9: both sides may have been excluded, and the merged person counted once; the target keeps its
  // exclusion first. Done before the replay, so that journalled exclusions meet the limit as they did then.
  unapplied.push(...(await keepExclusionLimit(uow, [merge.targetId, merge.sourceId])));
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
  // Undos of later merges wrote theirs on the merged person; no journalled record brings them back.
  for (const e of laterUndos) marker.systemEvent(merge.targetId, e.name, e.ts, e.properties);
  await marker.writeSystemEvents();

  const skipped: DemergeResult["skipped"] = [];
  // Those of the two who were identified before the merge: a replayed login must not make them orphans (RecordScope).
  const identifiedBefore = new Set([merge.target.state, merge.source.state].filter(hasIdentity).map((s) => s.id));
  const handedBack = new Set<string>();
  let replayed = 0;
  for (const [index, record] of journal.entries()) {
    // Routed by that handle, the merged person's record would reach the value's new holder.
    const value = valueHandle(record);
    if (value !== null && away.identities.has(identityName(value))) {
      skipped.push({ index, code: "IDENTITY_CONFLICT" });
      unapplied.push(await notReplayed(uow, merge, record, "IDENTITY_CONFLICT"));
      continue;
    }
    // Outside the record's savepoint: a login that fails leaves the device with the one it was taken from.
    if (record.type === "login" && record.deviceFrom !== undefined && record.handle.kind === "device") {
      await handBack(uow, merge.targetId, record.handle.deviceId, record.deviceFrom, away);
      handedBack.add(record.deviceFrom);
    }
    try {
      await uow.atomically(async () => {
        const routed = record.type === "document" ? await routeJournalledLine(uow, record) : record;
        const result = await applyRecord(new RecordScope(uow, ids, now, true, identifiedBefore), routed);
        // The record reached the merged person then; it goes to one of the two now, or nowhere. A login switched to
        // a third reached them through a value they hold now, and would move the device to them (or orphan a restored
        // person who has no identity left). A record whose handle names nobody after the restore (its value came
        // with a record the replay skipped) would create a person nobody asked for, and a login through a restored
        // person's device would take the device to them (the audit of 2026-11-25).
        const two = result.profileId === merge.targetId || result.profileId === merge.sourceId;
        if (result.profileId !== null && !two) {
          throw record.type === "login"
            ? new PortraitError("IDENTITY_CONFLICT", "the login now reaches another person", "properties")
            : new PortraitError("UNKNOWN_PROFILE", "the record now reaches neither of the two people", "handle");
        }
      });
      replayed++;
    } catch (e) {
      if (!(e instanceof PortraitError)) throw e;
      skipped.push({ index, code: e.code });
      // A record acknowledged to its sender never vanishes silently (SEMANTICS §7, docs/semantics.md).
      unapplied.push(await notReplayed(uow, merge, record, e.code));
    }
  }
  // A visitor handed back for a login whose replay failed is no orphan any more, and counts again (SEMANTICS §9).
  unapplied.push(...(await keepExclusionLimit(uow, [...handedBack])));
  // The replay routed the records of their time with the merged person as if they had never left (to the restored
  // person, the one they were taken from); now they end where they were, exactly as they were.
  for (const [deviceId, row] of away.devices) {
    if (row) await tx.upsertDevice(accountId, row);
    else await tx.deleteDevice(accountId, deviceId);
  }
  return { targetId: merge.targetId, sourceId: merge.sourceId, replayed, skipped, unapplied };
}

const identityName = (h: { key: IdentityKey; value: string }) => `${h.key}\u0000${h.value}`;

/** The identity value a journalled record is routed by: its identity handle, or an email-hash line's Email. */
function valueHandle(record: AnyRecord): { key: IdentityKey; value: string } | null {
  if (record.handle.kind === "identity") return record.handle;
  if (record.type === "document" && record.line?.kind === "emailHash")
    return { key: "Email", value: record.line.email };
  return null;
}

/** A journalled record the replay left out, named by what it wrote to, for the undo's answer. */
async function notReplayed(
  uow: UnitOfWork,
  merge: MergeRow,
  record: AnyRecord,
  reason: string,
): Promise<UndoUnapplied> {
  const named = await namedAfterUndo(uow, record);
  const profileId = named === merge.sourceId ? merge.sourceId : merge.targetId;
  return { profileId, key: record.type, value: recordName(record), code: "RECORD_NOT_REPLAYED", reason };
}

/** The profile a journalled record's handle names after the undo, or null. */
async function namedAfterUndo(uow: UnitOfWork, record: AnyRecord): Promise<string | null> {
  const { tx, accountId } = uow;
  const value = valueHandle(record);
  if (value !== null) return tx.findProfileByIdentity(accountId, value.key, value.value);
  if (record.type === "document" && record.line?.kind === "userAccount") {
    return tx.findProfileByUserAccount(accountId, record);
  }
  const h = record.handle;
  if (h.kind === "device") return (await tx.findDevice(accountId, h.deviceId))?.profileId ?? null;
  if (h.kind !== "profile") return null;
  const id = record.type === "document" && record.line?.kind === "userPoint" ? record.line.profileId : h.profileId;
  return (await uow.loadLive(id))?.id ?? null;
}

/**
 * What a left-out record wrote to: a document as the JSON `[compartmentId, userAccountId]` (ids may hold any
 * character), an event by name, anything else by its handle's value.
 */
function recordName(record: AnyRecord): string {
  if (record.type === "document") return JSON.stringify([record.compartmentId, record.userAccountId]);
  if (record.type === "event") return record.name;
  const h = record.handle;
  return h.kind === "device" ? h.deviceId : h.kind === "identity" ? h.value : h.profileId;
}

async function awayFromMerged(uow: UnitOfWork, merge: MergeRow, journal: AnyRecord[]): Promise<Away> {
  const { tx, accountId } = uow;
  const held = new Map((await tx.listDevices(accountId, merge.targetId)).map((d) => [d.deviceId, d]));
  const named = new Set([...merge.target.devices, ...merge.source.devices].map((d) => d.deviceId));
  const values = new Map<string, { key: IdentityKey; value: string }>();
  for (const record of journal) {
    if (record.handle.kind === "device") named.add(record.handle.deviceId);
    const value = valueHandle(record);
    if (value !== null) values.set(identityName(value), value);
  }
  const devices = new Map<string, DeviceRow | null>();
  for (const deviceId of named) {
    if (held.has(deviceId)) continue;
    devices.set(
      deviceId,
      await heldInPlace(
        uow,
        () => tx.findDevice(accountId, deviceId),
        (d) => d.profileId,
      ),
    );
  }
  const identities = new Set<string>();
  for (const [name, { key, value }] of values) {
    const owner = await heldInPlace(
      uow,
      () => tx.findProfileByIdentity(accountId, key, value),
      (id) => id,
    );
    if (owner !== null && owner !== merge.targetId) identities.add(name);
  }
  return { devices, identities, held };
}

/**
 * A handle as it stands, read again once its owner is locked: a device or an identity value moves off a profile only
 * under that profile's lock, so it then stays put until COMMIT (and a handle found free is held by the store's read).
 */
async function heldInPlace<H>(
  uow: UnitOfWork,
  read: () => Promise<H | null>,
  ownerOf: (h: H) => string,
): Promise<H | null> {
  let found = await read();
  for (let tries = 0; found !== null && !uow.isLoaded(ownerOf(found)) && tries < 16; tries++) {
    const owner = ownerOf(found);
    await uow.load(owner);
    const again = await read();
    if (again === null || ownerOf(again) === owner) return again;
    found = again;
  }
  return found;
}

/**
 * Removes what the merged profile holds now; the snapshots and the journal rebuild it. Returns the `Profile Demerged`
 * events that undos of later merges wrote on it (it was the source of one, say), which nothing else rebuilds: until
 * 2026-11-25 they vanished (merge audit).
 */
async function clearMergedProfile(uow: UnitOfWork, merge: MergeRow): Promise<StoredEvent[]> {
  const { tx, accountId } = uow;
  const current = await uow.load(merge.targetId);
  if (!current) throw new PortraitError("UNKNOWN_PROFILE", `profile ${merge.targetId} no longer exists`, "mergeId");
  const after = (await tx.listEventSeqs(accountId, merge.targetId)).filter((s) => s > merge.eventSeqAtMerge);
  const laterUndos = (await tx.listEventsBySeq(accountId, after)).filter(
    (e) => e.name === "Profile Demerged" && e.properties["Merge ID"] !== merge.id,
  );
  await tx.deleteEvents(accountId, after);
  for (const [key, values] of Object.entries(current.identities)) {
    for (const v of values ?? []) await tx.releaseIdentity(accountId, key as IdentityKey, v.value, current.id);
  }
  const before = new Set([...merge.target.devices, ...merge.source.devices].map((d) => d.deviceId));
  for (const d of await tx.listDevices(accountId, current.id)) {
    // Devices first seen after the merge come back with the replayed records that brought them; one that a
    // journalled login took from someone is handed back to them just before that login is replayed.
    if (!before.has(d.deviceId)) await tx.deleteDevice(accountId, d.deviceId);
  }
  for (const ref of await tx.listUserAccounts(accountId, current.id)) await tx.releaseUserAccount(accountId, ref);
  for (const doc of await tx.listDocuments(accountId, current.id)) await tx.deleteDocument(accountId, doc);
  await tx.releaseChargedIds(accountId, current.id);
  return laterUndos;
}

/**
 * Puts a device a journalled login took back with the profile it took it from (an orphan that login made is one no
 * more), so that the login, replayed, starts from the same place: case 2 then orphans it to the right person.
 */
async function handBack(uow: UnitOfWork, mergedId: string, deviceId: string, fromId: string, away: Away) {
  const from = await uow.load(fromId);
  if (!from || from.mergedInto !== null) return;
  const was = away.held.get(deviceId) ?? away.devices.get(deviceId);
  await uow.tx.upsertDevice(uow.accountId, {
    deviceId,
    profileId: from.id,
    pushToken: was?.pushToken ?? null,
    platform: was?.platform ?? null,
  });
  if (from.orphanOf === mergedId) uow.put({ ...from, orphanOf: null });
}

/** Restores one side; what another person holds now stays theirs and is returned as unapplied. */
async function restore(uow: UnitOfWork, mergedId: string, snap: ProfileSnapshot, away: Away) {
  const { tx, accountId } = uow;
  const id = snap.state.id;
  const unapplied: UndoUnapplied[] = [];
  let state = underCurrentSettings(snap.state, uow.account.settings);
  // In the account's key order, not the snapshot's: PostgreSQL's jsonb keeps object keys in its own order, and the
  // unapplied list came out differently on the two stores.
  for (const key of uow.account.settings.identityKeys) {
    for (const v of state.identities[key] ?? []) {
      // Released by the merge (a limit) or since, then given to someone: a value is never taken from a live person.
      if ((await tx.claimIdentity(accountId, key, v.value, id)) === id) continue;
      state = withoutIdentityValue(state, key, v.value);
      unapplied.push({ profileId: id, key, value: v.value, code: "IDENTITY_CONFLICT" });
    }
  }
  uow.put(state);
  for (const d of snap.devices) {
    // A device that left stays where it went, but only after the replay: its records of the time with the merged
    // person were this side's.
    await tx.upsertDevice(accountId, d);
    if (away.devices.has(d.deviceId))
      unapplied.push({ profileId: id, key: "deviceId", value: d.deviceId, code: "DEVICE_MOVED" });
  }
  // User accounts and their documents leave a person only when that person is deleted, which purges this merge.
  for (const ref of snap.userAccounts) await tx.claimUserAccount(accountId, ref, id);
  for (const doc of snap.documents) await tx.putDocument(accountId, doc);
  for (const chargedId of snap.chargedIds) await tx.claimChargedId(accountId, id, chargedId);
  for (const orphanId of snap.orphans) {
    const orphan = await uow.load(orphanId);
    if (orphan?.orphanOf === mergedId) uow.put({ ...orphan, orphanOf: id });
  }
  return unapplied;
}

/**
 * A snapshot's identities as the settings are now: a key removed since the merge is no identity (its values stay as
 * properties), and a limit lowered since keeps the newest values. Restored as they were, they claimed rows no state
 * should hold, and a later re-add of the key refused the account with a spurious IDENTITY_KEY_CONFLICT.
 */
function underCurrentSettings(state: ProfileState, settings: AccountSettings): ProfileState {
  let identities = state.identities;
  for (const key of Object.keys(identities) as IdentityKey[]) {
    if (!settings.identityKeys.includes(key)) identities = removeIdentityKey(identities, key).identities;
  }
  identities = trim(
    identities,
    identities,
    Object.keys(identities) as IdentityKey[],
    settings.identityLimits,
  ).identities;
  return identities === state.identities ? state : { ...state, identities };
}
