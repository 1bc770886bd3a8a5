/**
 * Deleting a person for good (SEMANTICS §10): the profile, its orphans and tombstones, everything they own, and
 * the merge journals that involve them. Devices are released, so a later event from one starts a fresh profile.
 */
import { PortraitError } from "../engine/errors.js";
import type { DeletedCounts, StoreReader } from "../store/store.js";
import { importHandles } from "./import-handles.js";
import type { UnitOfWork } from "./unit-of-work.js";

export async function deleteProfile(uow: UnitOfWork, profileId: string): Promise<DeletedCounts> {
  const { tx, accountId } = uow;
  const state = await uow.loadLive(profileId);
  if (!state) throw new PortraitError("UNKNOWN_PROFILE", `profile ${profileId} does not exist`, "id");
  const doomed = await household(tx, accountId, state.id);
  const total: DeletedCounts = { profiles: 0, events: 0, identities: 0, devices: 0 };
  for (const id of doomed) {
    await tx.redactImportData(accountId, id, await importHandles(uow, id));
    await tx.deleteMergesTouching(accountId, id);
    const counts = await tx.deleteProfileData(accountId, id);
    total.profiles += counts.profiles;
    total.events += counts.events;
    total.identities += counts.identities;
    total.devices += counts.devices;
    uow.drop(id);
  }
  return total;
}

/** The profile, its orphans, and every tombstone that leads to it or to them. */
export async function household(r: StoreReader, accountId: string, profileId: string): Promise<string[]> {
  const seen = new Set<string>([profileId]);
  const queue = [profileId];
  while (queue.length > 0) {
    const id = queue.shift() as string;
    for (const next of [...(await r.listOrphans(accountId, id)), ...(await r.listTombstones(accountId, id))]) {
      if (!seen.has(next)) {
        seen.add(next);
        queue.push(next);
      }
    }
  }
  return [...seen];
}
