/** Step "resolve identity": from a record's handle to its target profile (SEMANTICS §3, §11 Handles). */
import { contextEffect, needsContextStatus } from "../engine/activity.js";
import { PortraitError } from "../engine/errors.js";
import { newProfileState } from "../engine/profile.js";
import type { AnyRecord, Handle } from "../engine/records.js";
import type { ProfileState, RecordContext } from "../engine/types.js";
import type { RecordScope } from "./record-scope.js";

export interface Resolved {
  state: ProfileState;
  created: boolean;
}

/**
 * The live profile a handle names, creating it for an unknown device or identity. A device seen for the first time
 * keeps the platform of the record's context (`web` from the browser SDK).
 */
export async function resolveTarget(
  scope: RecordScope,
  record: Pick<AnyRecord, "handle" | "ts" | "context">,
): Promise<Resolved> {
  const { uow } = scope;
  const { handle, ts, context } = record;
  switch (handle.kind) {
    case "profile": {
      const state = await uow.loadLive(handle.profileId);
      if (!state)
        throw new PortraitError("UNKNOWN_PROFILE", `profileId ${handle.profileId} is not a profile`, "profileId");
      return { state, created: false };
    }
    case "device": {
      // A few rounds: a device whose profile is deleted while this looks (SEMANTICS §10 releases its devices) is
      // looked up again, and then is a device never seen, not an error.
      for (let round = 0; round < 4; round++) {
        const device = await uow.tx.findDevice(uow.accountId, handle.deviceId);
        if (device) {
          const state = await uow.loadLive(device.profileId);
          if (state) return { state, created: false };
          continue;
        }
        // Claim before creating, as for identities: racing first events of one device make one profile.
        const id = scope.ids.profileId();
        const owner = await uow.tx.claimDevice(uow.accountId, {
          deviceId: handle.deviceId,
          profileId: id,
          pushToken: null,
          platform: context?.platform ?? null,
        });
        if (owner === id) return { state: await createProfile(scope, id), created: true };
        const state = await uow.loadLive(owner);
        if (state) return { state, created: false };
      }
      throw new PortraitError("UNKNOWN_PROFILE", `device ${handle.deviceId} points at no profile`, "deviceId");
    }
    case "identity": {
      const owner = await uow.tx.findProfileByIdentity(uow.accountId, handle.key, handle.value);
      if (owner) {
        const state = await uow.loadLive(owner);
        if (state) return { state, created: false };
      }
      // Claim before creating: with racing writers the store picks one owner and the losers use it.
      const id = scope.ids.profileId();
      const winner = await uow.tx.claimIdentity(uow.accountId, handle.key, handle.value, id);
      if (winner !== id) {
        const state = await uow.loadLive(winner);
        if (!state)
          throw new PortraitError(
            "UNKNOWN_PROFILE",
            `${handle.key} belongs to a deleted profile`,
            `identity.${handle.key}`,
          );
        return { state, created: false };
      }
      const fresh = await createProfile(scope, id);
      const state: ProfileState = {
        ...fresh,
        identities: { [handle.key]: [{ value: handle.value, ts }] },
        props: { ...fresh.props, [handle.key]: { v: handle.value, t: "string", ts } },
      };
      uow.put(state);
      scope.identitySet(state.id, handle.key, handle.value, ts);
      return { state, created: true };
    }
  }
}

/**
 * The profile a count-only event (engine/activity.ts) is added to without loading it: the existing profile its handle
 * names, live and with no open merge journal, when this transaction has not loaded it and the event's context changes
 * nothing there but Timezone's stamp (`contextEffect`). Null when the event must take the full way: an unknown handle
 * creates a profile, a tombstone is followed, a journal records the event, a loaded profile changes through its state,
 * a context that sets acquisition or a new zone changes the profile.
 */
export async function countOnlyTarget(
  scope: RecordScope,
  handle: Handle,
  ts: number,
  context: RecordContext | undefined,
): Promise<{ profileId: string; timezone: string | null } | null> {
  const { uow } = scope;
  const id =
    handle.kind === "device"
      ? (await uow.tx.findDevice(uow.accountId, handle.deviceId))?.profileId
      : handle.kind === "identity"
        ? await uow.tx.findProfileByIdentity(uow.accountId, handle.key, handle.value)
        : handle.profileId;
  if (!id || uow.isLoaded(id)) return null;
  const status = await uow.tx.peekProfile(uow.accountId, id);
  if (status === null || status.mergedInto !== null || status.journalMergeId !== null) return null;
  if (!needsContextStatus(context)) return { profileId: id, timezone: null };
  const current = await uow.tx.peekContext(uow.accountId, id);
  const effect = current === null ? null : contextEffect(current, ts, context);
  return effect === null ? null : { profileId: id, timezone: effect.timezone };
}

export async function createProfile(scope: RecordScope, id = scope.ids.profileId()): Promise<ProfileState> {
  const state = newProfileState(id, scope.now, scope.ids.bucket());
  await scope.uow.create(state);
  return state;
}
