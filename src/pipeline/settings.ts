/** Identity index maintenance when identity settings change (SEMANTICS §11 Settings changes). */
import { setImmediate as nextTurn } from "node:timers/promises";
import { PortraitError } from "../engine/errors.js";
import { limitFor, removeIdentityKey, trim } from "../engine/identity/identities.js";
import type { AccountSettings, IdentityKey, ProfileState } from "../engine/types.js";
import type { UnitOfWork } from "./unit-of-work.js";

const PAGE = 500;

export async function reindexIdentities(
  uow: UnitOfWork,
  before: AccountSettings,
  after: AccountSettings,
): Promise<void> {
  const { tx, accountId } = uow;
  const added = after.identityKeys.filter((k) => !before.identityKeys.includes(k));
  const removed = before.identityKeys.filter((k) => !after.identityKeys.includes(k));
  const lowered = after.identityKeys.filter(
    (k) => before.identityKeys.includes(k) && limitFor(after.identityLimits, k) < limitFor(before.identityLimits, k),
  );
  if (added.length === 0 && removed.length === 0 && lowered.length === 0) return;

  for (const key of removed) await tx.releaseIdentityKey(accountId, key);
  const duplicates: string[] = [];
  await forEachProfile(uow, async (state) => {
    // Only a profile whose identities change is written again: rewriting every row (and its segment index) of a
    // 300k-profile account for a limit that only a few exceed took minutes.
    let next: ProfileState = state;
    for (const key of removed) {
      if (next.identities[key] !== undefined) {
        next = { ...next, identities: removeIdentityKey(next.identities, key).identities };
      }
    }
    if (lowered.length > 0) {
      const change = trim(next.identities, next.identities, lowered, after.identityLimits);
      for (const { key, value } of change.released) await tx.releaseIdentity(accountId, key, value, state.id);
      if (change.released.length > 0) next = { ...next, identities: change.identities };
    }
    for (const key of added) {
      const entry = next.props[key];
      if (typeof entry?.v !== "string" || state.mergedInto || state.orphanOf) continue;
      const owner = await tx.claimIdentity(accountId, key as IdentityKey, entry.v, state.id);
      if (owner !== state.id) duplicates.push(`${key} ${entry.v} (${owner}, ${state.id})`);
      next = { ...next, identities: { ...next.identities, [key]: [{ value: entry.v, ts: entry.ts }] } };
    }
    if (next !== state) uow.put(next);
  });
  if (duplicates.length > 0) {
    throw new PortraitError(
      "IDENTITY_KEY_CONFLICT",
      `these values are held by several profiles: ${duplicates.slice(0, 20).join("; ")}${duplicates.length > 20 ? "; …" : ""}`,
      "identityKeys",
    );
  }
}

async function forEachProfile(uow: UnitOfWork, fn: (state: ProfileState) => Promise<void>): Promise<void> {
  let after: string | null = null;
  for (;;) {
    const ids = await uow.tx.listProfileIds(uow.accountId, after, PAGE);
    for (const id of ids) {
      const state = await uow.load(id);
      if (state) await fn(state);
    }
    if (ids.length < PAGE) return;
    after = ids[ids.length - 1] as string;
    // Written back and forgotten: `flush` keeps its marks, so each page rewrote every profile changed before it.
    await uow.flushAndForget();
    // A page at a time, let the server answer what arrived meanwhile: on SQLite every await above settles at once, so
    // a change touching 300k profiles held the event loop for minutes, /healthz and reads included (writes still wait
    // for this transaction, as they must).
    await nextTurn();
  }
}
