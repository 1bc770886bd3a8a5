/**
 * The handles a group of parsed records names, collected before it runs so that a store can load (and lock) them in a
 * few round trips instead of one per record (StoreTx.prefetch). Only a hint: a handle missed here is looked up as usual.
 */
import { isCountOnlyEvent, needsContextStatus } from "../engine/activity.js";
import { type IngestRecord, recordIdKey } from "../engine/records.js";
import type { Account, IdentityKey } from "../engine/types.js";
import type { BatchHandles } from "../store/store.js";

export function batchHandles(account: Account, records: Iterable<IngestRecord>): BatchHandles {
  const handles: BatchHandles = { deviceIds: [], identities: [], profileIds: [], recordIds: [] };
  const identityKeys: readonly string[] = account.settings.identityKeys;
  // Handles named by a count-only event, and handles named by any other record (those need their owner loaded).
  const countOnly = {
    devices: new Set<string>(),
    identities: new Map<string, { key: IdentityKey; value: string }>(),
    profiles: new Set<string>(),
    context: false,
  };
  const full = new Set<string>();
  for (const record of records) {
    const idKey = recordIdKey(record);
    if (idKey !== undefined) handles.recordIds?.push(idKey);
    const handle = record.handle;
    const name =
      handle.kind === "device"
        ? `d${handle.deviceId}`
        : handle.kind === "identity"
          ? `i${handle.key}\u0000${handle.value}`
          : `p${handle.profileId}`;
    if (record.type !== "event" || !isCountOnlyEvent(record.name, record.context)) full.add(name);
    else {
      if (needsContextStatus(record.context)) countOnly.context = true;
      if (handle.kind === "device") countOnly.devices.add(handle.deviceId);
      else if (handle.kind === "identity") countOnly.identities.set(name, { key: handle.key, value: handle.value });
      else countOnly.profiles.add(handle.profileId);
    }
    if (handle.kind === "device") handles.deviceIds.push(handle.deviceId);
    else if (handle.kind === "identity") handles.identities.push({ key: handle.key, value: handle.value });
    else handles.profileIds.push(handle.profileId);
    if (record.type !== "login") continue;
    // A login looks up the owner of the first value it sets for each identity key (apply-record.ts, applyLogin).
    const seen = new Set<string>();
    for (const op of record.properties) {
      if (op.kind !== "set" || seen.has(op.key) || !identityKeys.includes(op.key)) continue;
      seen.add(op.key);
      if (typeof op.value === "string") {
        handles.identities.push({ key: op.key as IdentityKey, value: op.value });
        full.add(`i${op.key}\u0000${op.value}`);
      }
    }
  }
  handles.countOnly = {
    deviceIds: [...countOnly.devices].filter((d) => !full.has(`d${d}`)),
    identities: [...countOnly.identities].filter(([name]) => !full.has(name)).map(([, h]) => h),
    profileIds: [...countOnly.profiles].filter((id) => !full.has(`p${id}`)),
    context: countOnly.context,
  };
  return handles;
}
