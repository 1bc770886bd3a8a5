/**
 * Identity index maintenance when identity settings change (SEMANTICS §11 Settings changes).
 *
 * Only the profiles a change may touch are read, found through indexes (StoreTx.listIdentityHolders,
 * listStringPropertyHolders), never a walk over every profile: on 300k profiles that walk held the account's writers
 * for minutes to change a few. The identity index is enough because every write of identities keeps this invariant:
 * a value a profile's state holds has its row in the index, naming that profile. Each change of `state.identities`
 * goes with its release, or its claim, checked (apply-properties, resolve, undo, the back-fill here) or of values the
 * source just released (merge); a tombstone holds none; an undo restores identities under the settings of now
 * (demerge.ts). A row no state held would make a profile read for nothing, never missed. So a profile over a lowered limit has more rows than the limit, one that
 * holds a removed key has rows of it, and the result is the one the walk over every profile gave (settings.test.ts
 * runs both and compares). docs/semantics.md "Settings changes".
 */
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
  // The keys of the three lists differ, so each is done on its own: what one changes of a profile the others neither
  // read nor write.

  // A removed key: its values stay as properties; the profiles holding its rows are listed before the rows go.
  for (const key of removed) {
    await forEachProfile(
      uow,
      (afterId, limit) => tx.listIdentityHolders(accountId, key, 0, afterId, limit),
      async (state) => {
        if (state.identities[key] === undefined) return;
        uow.put({ ...state, identities: removeIdentityKey(state.identities, key).identities });
      },
    );
    await tx.releaseIdentityKey(accountId, key);
  }

  // A lowered limit releases the oldest values at once; only a profile over the limit in the index can be over it.
  for (const key of lowered) {
    const limit = limitFor(after.identityLimits, key);
    await forEachProfile(
      uow,
      (afterId, n) => tx.listIdentityHolders(accountId, key, limit, afterId, n),
      async (state) => {
        const change = trim(state.identities, state.identities, [key], after.identityLimits);
        for (const { key: k, value } of change.released) await tx.releaseIdentity(accountId, k, value, state.id);
        if (change.released.length > 0) uow.put({ ...state, identities: change.identities });
      },
    );
  }

  // An added key back-fills from the property of the same name, on live profiles that are no orphans.
  const duplicates: Array<{ profileId: string; key: number; text: string }> = [];
  for (const [index, key] of added.entries()) {
    await forEachProfile(
      uow,
      (afterId, limit) => tx.listStringPropertyHolders(accountId, key, afterId, limit),
      async (state) => {
        const entry = state.props[key];
        if (typeof entry?.v !== "string" || state.orphanOf) return;
        const owner = await tx.claimIdentity(accountId, key as IdentityKey, entry.v, state.id);
        if (owner !== state.id) {
          duplicates.push({ profileId: state.id, key: index, text: `${key} ${entry.v} (${owner}, ${state.id})` });
        }
        uow.put({ ...state, identities: { ...state.identities, [key]: [{ value: entry.v, ts: entry.ts }] } });
      },
    );
  }
  if (duplicates.length > 0) {
    // Listed as one walk over every profile found them: by profile id, then in the order the keys were added.
    duplicates.sort((a, b) => (a.profileId < b.profileId ? -1 : a.profileId > b.profileId ? 1 : a.key - b.key));
    const listed = duplicates.map((d) => d.text);
    throw new PortraitError(
      "IDENTITY_KEY_CONFLICT",
      `these values are held by several profiles: ${listed.slice(0, 20).join("; ")}${listed.length > 20 ? "; …" : ""}`,
      "identityKeys",
    );
  }
}

/**
 * Loads the profiles `list` pages through (ids in id order after the last of the previous page) and hands each to
 * `fn`. Tombstones are left out, as the walk over every profile left them out (they hold no identities). Each page is
 * written back and forgotten before the next (UnitOfWork.flushAndForget), so the working set stays one page large.
 */
async function forEachProfile(
  uow: UnitOfWork,
  list: (afterId: string | null, limit: number) => Promise<string[]>,
  fn: (state: ProfileState) => Promise<void>,
): Promise<void> {
  let afterId: string | null = null;
  for (;;) {
    const ids = await list(afterId, PAGE);
    for (const id of ids) {
      const state = await uow.load(id);
      if (state && !state.mergedInto) await fn(state);
    }
    await uow.flushAndForget();
    if (ids.length < PAGE) return;
    afterId = ids[ids.length - 1] as string;
    // A page at a time, let the server answer what arrived meanwhile: on SQLite every await above settles at once, so
    // a change touching 300k profiles held the event loop for minutes, /healthz and reads included (writes still wait
    // for this transaction, as they must).
    await nextTurn();
  }
}
