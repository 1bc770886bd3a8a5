/**
 * Step "apply operations" for a property set, with the identity rules around it: identity values are claimed in
 * the account-wide index, conflicts are refused, merged or left unapplied (SEMANTICS §3, §4).
 */
import { PortraitError, show } from "../engine/errors.js";
import {
  addIdentityValues,
  type IdentityChange,
  newestValue,
  removeIdentityKey,
} from "../engine/identity/identities.js";
import { applyPropertyOps } from "../engine/properties/apply.js";
import type { PropertyOp, Unapplied } from "../engine/records.js";
import type { IdentityKey, ProfileState } from "../engine/types.js";
import { mergeProfiles } from "./merge.js";
import type { RecordScope } from "./record-scope.js";

/**
 * What to do with an identity value another profile owns. `public`: refused as under `reject`, for a record sent with a
 * public key, which never merges people (records.ts viaPublicKey). `replay`: refused the same way while an undo
 * replays its journal under `merge`, where merging would join again the two people the undo separates.
 */
export type ConflictMode = "reject" | "public" | "replay" | "merge" | "skip";

export interface AppliedProperties {
  state: ProfileState;
  unapplied: Unapplied[];
}

export async function applyProperties(
  scope: RecordScope,
  target: ProfileState,
  ops: PropertyOp[],
  ts: number,
  mode: ConflictMode,
): Promise<AppliedProperties> {
  const { uow } = scope;
  const { identityKeys, identityLimits } = uow.account.settings;
  const isIdentityKey = (key: string): key is IdentityKey => (identityKeys as string[]).includes(key);
  const unapplied: Unapplied[] = [];
  let state = target;
  const kept: PropertyOp[] = [];

  for (const op of ops) {
    // A value older than the key's `$delete` is ignored like any older set (SEMANTICS §4): it claims nothing, merges
    // nobody, and is not held as an identity.
    if (op.kind !== "set" || !isIdentityKey(op.key) || deletedAfter(state, op.key, ts)) {
      kept.push(op);
      continue;
    }
    const value = op.value as string;
    const owner = await uow.tx.findProfileByIdentity(uow.accountId, op.key, value);
    if (owner === null || owner === state.id) {
      kept.push(op);
      continue;
    }
    if (mode === "skip") {
      unapplied.push({ key: op.key, code: "IDENTITY_CONFLICT" });
      scope.identityError(state.id, op.key, "IDENTITY_CONFLICT", ts);
      continue;
    }
    if (mode !== "merge") {
      const why =
        mode === "reject"
          ? "the account's mergePolicy is reject"
          : mode === "public"
            ? "a record sent with a public key never merges people (use a secret key)"
            : "an undo's replay never merges people, or it would join the two it separates";
      throw new PortraitError(
        "IDENTITY_CONFLICT",
        `${op.key} ${show(value)} belongs to another profile (${owner}); ${why}`,
        op.key,
      );
    }
    // mergePolicy merge: the owner of the identity is the target, this record's profile the source (SEMANTICS §7).
    // The owner was read without a lock: locked now, it may have been merged into someone since, who holds the value.
    uow.put(state);
    const live = await uow.loadLive(owner);
    if (live === null || live.id === state.id) {
      kept.push(op);
      continue;
    }
    // The record is journalled into the merge it causes, as every later one: its undo replays it (docs/semantics.md).
    const merged = await mergeProfiles(scope, live.id, state.id);
    state = merged.target;
    kept.push(op);
  }

  const applied = applyPropertyOps(state.props, kept, ts, { get: (path) => uow.typeOf("profile", path) });
  for (const r of applied.registrations) {
    const winner = await uow.register("profile", r.path, r.type, r.change ?? false, r.path);
    if (winner !== r.type) {
      throw new PortraitError("TYPE_MISMATCH", `${r.path} is a ${winner}, got a ${r.type}`, r.path);
    }
  }
  let props = applied.props;

  // Identity values follow their property: a value is held while it is among the newest `limit` by ts.
  let identities: IdentityChange = { identities: state.identities, released: [], added: [] };
  const additions = kept
    .filter(
      (op): op is Extract<PropertyOp, { kind: "set" }> =>
        op.kind === "set" && isIdentityKey(op.key) && !deletedAfter(state, op.key, ts),
    )
    .map((op) => ({ key: op.key as IdentityKey, value: op.value as string, ts }));
  if (additions.length > 0) identities = addIdentityValues(state.identities, additions, identityLimits);
  for (const op of kept) {
    if (op.kind === "delete" && isIdentityKey(op.key) && props[op.key]?.v === undefined && props[op.key]?.ts === ts) {
      const removed = removeIdentityKey(identities.identities, op.key);
      identities = {
        identities: removed.identities,
        released: [...identities.released, ...removed.released],
        added: identities.added.filter((a) => a.key !== op.key),
      };
    }
  }
  const changedKeys = new Set([...identities.added, ...identities.released].map((c) => c.key));
  if (changedKeys.size > 0) {
    props = { ...props };
    for (const key of changedKeys) {
      const newest = newestValue(identities.identities[key]);
      if (newest) props[key] = { v: newest.value, t: "string", ts: Math.max(newest.ts, props[key]?.ts ?? 0) };
    }
  }
  for (const { key, value } of identities.released) {
    await uow.tx.releaseIdentity(uow.accountId, key, value, state.id);
  }
  for (const { key, value } of identities.added) {
    const winner = await uow.tx.claimIdentity(uow.accountId, key, value, state.id);
    if (winner !== state.id) {
      throw new PortraitError("IDENTITY_CONFLICT", `${key} ${show(value)} was claimed by another profile`, key);
    }
    scope.identitySet(state.id, key, value, ts);
  }
  // A client's own Timezone write wins over context from then on (SEMANTICS §11); one that lost on ts wrote nothing,
  // so context keeps the key (the ops leave a key they did not change as it was).
  const timezoneFromContext =
    kept.some((op) => op.key === "Timezone") && props.Timezone !== state.props.Timezone
      ? false
      : state.timezoneFromContext;
  return {
    state: { ...state, props, identities: identities.identities, updatedAt: scope.now, timezoneFromContext },
    unapplied,
  };
}

/** Whether the key's newest write is a `$delete` newer than `ts`, whose tombstone an older set must not get past. */
function deletedAfter(state: ProfileState, key: string, ts: number): boolean {
  const entry = Object.hasOwn(state.props, key) ? state.props[key] : undefined;
  return entry !== undefined && entry.v === undefined && entry.ts > ts;
}
