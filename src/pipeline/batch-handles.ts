/**
 * The handles a group of parsed records names, collected before it runs so that a store can load (and lock) them in a
 * few round trips instead of one per record (StoreTx.prefetch). Only a hint: a handle missed here is looked up as usual.
 */
import type { IngestRecord } from "../engine/records.js";
import type { Account, IdentityKey } from "../engine/types.js";
import type { BatchHandles } from "../store/store.js";

export function batchHandles(account: Account, records: Iterable<IngestRecord>): BatchHandles {
  const handles: BatchHandles = { deviceIds: [], identities: [], profileIds: [], recordIds: [] };
  const identityKeys: readonly string[] = account.settings.identityKeys;
  for (const record of records) {
    if (record.id !== undefined) handles.recordIds?.push(record.id);
    const handle = record.handle;
    if (handle.kind === "device") handles.deviceIds.push(handle.deviceId);
    else if (handle.kind === "identity") handles.identities.push({ key: handle.key, value: handle.value });
    else handles.profileIds.push(handle.profileId);
    if (record.type !== "login") continue;
    // A login looks up the owner of the first value it sets for each identity key (apply-record.ts, applyLogin).
    const seen = new Set<string>();
    for (const op of record.properties) {
      if (op.kind !== "set" || seen.has(op.key) || !identityKeys.includes(op.key)) continue;
      seen.add(op.key);
      if (typeof op.value === "string") handles.identities.push({ key: op.key as IdentityKey, value: op.value });
    }
  }
  return handles;
}
