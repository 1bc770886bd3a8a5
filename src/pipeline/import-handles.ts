/**
 * SEMANTICS §10: deleting a person redacts their rows in stored import failure reports. A refused row is found by
 * the handles it named (import-store.ts ImportHandle); these are the ones that lead to this person now. Values the
 * person held earlier are covered by the profile id: the runner stores, with each refused row, the ids of the profiles
 * its handles led to when it was refused (imports/runner.ts ownersOf), and deletion redacts by every id of the
 * person's household (delete.ts), tombstones and orphans included.
 */
import { createHash } from "node:crypto";
import { IDENTITY_KEYS } from "../engine/types.js";
import type { ImportHandle } from "../store/import-store.js";
import type { UnitOfWork } from "./unit-of-work.js";

export async function importHandles(uow: UnitOfWork, profileId: string): Promise<ImportHandle[]> {
  const { tx, accountId } = uow;
  const handles: ImportHandle[] = [];
  const seen = new Set<string>();
  const add = (kind: string, value: string) => {
    if (seen.has(`${kind}\u0000${value}`)) return;
    seen.add(`${kind}\u0000${value}`);
    handles.push({ kind, value });
    if (kind === "Email") handles.push({ kind: "email_hash", value: createHash("sha256").update(value).digest("hex") });
  };
  const state = await uow.load(profileId);
  for (const [key, list] of Object.entries(state?.identities ?? {}))
    for (const { value } of list ?? []) add(key, value);
  // Identity-named properties too: an account may not use Phone (say) as an identity key, yet a row named it.
  for (const key of IDENTITY_KEYS) {
    const v = state?.props[key]?.v;
    if (typeof v === "string") add(key, v);
  }
  for (const device of await tx.listDevices(accountId, profileId)) add("deviceId", device.deviceId);
  for (const ref of await tx.listUserAccounts(accountId, profileId)) {
    add("userAccount", JSON.stringify([ref.compartmentId, ref.userAccountId]));
  }
  return handles;
}
