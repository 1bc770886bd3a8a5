/**
 * SEMANTICS §9: at most 20 profiles per account are excluded from control groups. Only profiles that can be placed
 * in a control group count: live ones that are no orphan (§5: orphans and merge tombstones are never members of a
 * segment or audience), so an excluded profile that becomes an orphan or a tombstone frees its slot, and takes it
 * again if it comes back (an undone merge, a visitor handed back by an undo).
 */
import type { UndoUnapplied } from "./demerge.js";
import type { UnitOfWork } from "./unit-of-work.js";

export const CONTROL_GROUP_EXCLUSION_LIMIT = 20;

/**
 * For a profile that came back and counts again: while the account is over the limit, the latest of `comeBack`
 * (in the order given) that is excluded, live and no orphan is left not excluded, and said so. The caller holds the
 * account's exclusions (StoreTx.lockControlGroupExclusions), so the count stays true until COMMIT.
 */
export async function keepExclusionLimit(uow: UnitOfWork, comeBack: string[]): Promise<UndoUnapplied[]> {
  const unapplied: UndoUnapplied[] = [];
  await uow.flush();
  let count = await uow.tx.countControlGroupExcluded(uow.accountId);
  for (const profileId of [...comeBack].reverse()) {
    if (count <= CONTROL_GROUP_EXCLUSION_LIMIT) break;
    const state = await uow.load(profileId);
    if (!state?.flags.controlGroupExcluded || state.mergedInto !== null || state.orphanOf !== null) continue;
    uow.put({ ...state, flags: { ...state.flags, controlGroupExcluded: false } });
    unapplied.push({ profileId, key: "controlGroupExcluded", value: "true", code: "CONTROL_GROUP_EXCLUSION_LIMIT" });
    count--;
  }
  return unapplied;
}
