/**
 * One record through the pipeline: idempotency → resolve identity → apply operations → persist.
 * Runs inside `UnitOfWork.atomically`, so a refusal anywhere leaves nothing behind.
 */
import { applyActivity, countEvent, isCountOnlyEvent } from "../engine/activity.js";
import { PortraitError } from "../engine/errors.js";
import { decideLogin, type LoginValue } from "../engine/identity/login.js";
import { hasIdentity } from "../engine/profile.js";
import {
  type AnyRecord,
  type DocumentRecord,
  type EventRecord,
  type FlagsRecord,
  type LoginRecord,
  type ProfileRecord,
  type RecordResult,
  recordIdKey,
  type TokenRecord,
} from "../engine/records.js";
import type { IdentityKey, ProfileState } from "../engine/types.js";
import { applyProperties } from "./apply-properties.js";
import { CONTROL_GROUP_EXCLUSION_LIMIT } from "./control-group-exclusion.js";
import { applyDocument } from "./documents.js";
import type { RecordScope } from "./record-scope.js";
import { countOnlyTarget, createProfile, resolveTarget } from "./resolve.js";

export async function applyRecord(scope: RecordScope, record: AnyRecord): Promise<RecordResult> {
  const { uow } = scope;
  const idKey = recordIdKey(record);
  if (idKey !== undefined && !scope.replay) {
    const first = await uow.tx.claimRecordId(uow.accountId, idKey, scope.now);
    if (!first) return { profileId: await peekProfileId(scope, record), outcome: "duplicate" };
  }
  scope.origin = {
    deviceId: record.handle.kind === "device" ? record.handle.deviceId : null,
    platform: record.context?.platform ?? null,
  };
  const result = await dispatch(scope, record);
  await finishRecord(scope, record);
  return result;
}

function dispatch(scope: RecordScope, record: AnyRecord): Promise<RecordResult> {
  switch (record.type) {
    case "login":
      return applyLogin(scope, record);
    case "profile":
      return applyProfile(scope, record);
    case "event":
      return applyEvent(scope, record);
    case "token":
      return applyToken(scope, record);
    case "flags":
      return applyFlags(scope, record);
    case "document":
      return applyDocumentRecord(scope, record);
  }
}

/** System events are counted events of their profile; then every touched profile's open merge journals the record. */
async function finishRecord(scope: RecordScope, record: AnyRecord): Promise<void> {
  const { uow } = scope;
  await scope.writeSystemEvents();
  const journals = new Set<string>();
  for (const id of scope.touched) {
    const state = await uow.load(id);
    if (state?.props.Timezone !== undefined) await registerWrittenByPortrait(scope, "Timezone");
    const mergeId = state?.journalMergeId;
    if (mergeId) journals.add(mergeId);
  }
  if (journals.size === 0) return;
  const journalled =
    record.type === "login" && scope.deviceFrom !== null
      ? { ...record, deviceFrom: scope.deviceFrom }
      : record.type === "event" && scope.storedEventId !== null
        ? { ...record, storedId: scope.storedEventId }
        : record;
  for (const mergeId of journals) await uow.tx.appendJournal(uow.accountId, mergeId, journalled);
}

/**
 * A property Portrait writes itself (Timezone from context, is_test_user) takes its type in the registry as a
 * client's write would, so that segment exports list it among the registered properties (API.md).
 */
async function registerWrittenByPortrait(scope: RecordScope, key: "Timezone" | "is_test_user"): Promise<void> {
  if (scope.uow.typeOf("profile", key) === undefined) await scope.uow.register("profile", key, "string");
}

/** For a duplicate: the profile its handle names now, without creating anything. */
async function peekProfileId(scope: RecordScope, record: AnyRecord): Promise<string | null> {
  const { tx, accountId } = scope.uow;
  const h = record.handle;
  if (h.kind === "profile") return (await scope.uow.loadLive(h.profileId))?.id ?? h.profileId;
  const id =
    h.kind === "device"
      ? (await tx.findDevice(accountId, h.deviceId))?.profileId
      : await tx.findProfileByIdentity(accountId, h.key, h.value);
  return id ?? null;
}

/** Property errors name the key; inside a record the path starts at `properties`. */
async function underProperties<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (e) {
    throw e instanceof PortraitError ? e.under("properties") : e;
  }
}

function touch(scope: RecordScope, state: ProfileState): void {
  scope.uow.put(state);
  scope.touched.add(state.id);
}

async function applyProfile(scope: RecordScope, record: ProfileRecord): Promise<RecordResult> {
  const { state: target, created } = await resolveTarget(scope, record);
  // A public key is any web page's: its records never merge two people (RecordBase.viaPublicKey).
  const merges = scope.uow.account.settings.mergePolicy === "merge";
  const mode = !merges ? "reject" : record.viaPublicKey ? "public" : scope.replay ? "replay" : "merge";
  const { state } = await underProperties(applyProperties(scope, target, record.properties, record.ts, mode));
  touch(scope, applyActivity(state, record.ts, record.context));
  // A profile created here and then merged into the owner of one of its values (mergePolicy merge) is no more: the
  // record updated that owner.
  return { profileId: state.id, outcome: created && state.id === target.id ? "created" : "updated" };
}

/** SEMANTICS §3 Login and §11 "Login, exactly". */
async function applyLogin(scope: RecordScope, record: LoginRecord): Promise<RecordResult> {
  const { uow } = scope;
  if (record.handle.kind !== "device") throw new PortraitError("INVALID_HANDLE", "a login needs deviceId", "deviceId");
  const deviceId = record.handle.deviceId;
  const keys = uow.account.settings.identityKeys;

  const values: LoginValue[] = [];
  for (const key of keys) {
    const op = record.properties.find((o) => o.key === key && o.kind === "set");
    if (op?.kind !== "set") continue;
    const value = op.value as string;
    values.push({ key, value, owner: await uow.tx.findProfileByIdentity(uow.accountId, key, value) });
  }
  if (values.length === 0) {
    throw new PortraitError(
      "MISSING_IDENTITY",
      `a login needs at least one identity value (${keys.join(", ")})`,
      "properties",
    );
  }

  const device = await uow.tx.findDevice(uow.accountId, deviceId);
  const cur = device ? await uow.loadLive(device.profileId) : null;
  // An undo's replay counts a person it restored as identified if they were before the merge, whatever they hold now
  // (a value of theirs taken by someone since can leave them none): the login reached them as part of an identified
  // person, so it may move the device away (case 4) but not make them an orphan (case 2) whose history counts nowhere.
  const identified = cur !== null && (hasIdentity(cur) || scope.restored.has(cur.id));
  const decision = decideLogin({ curId: cur?.id ?? null, curHasIdentity: identified, values });

  let target: ProfileState;
  let created = false;
  if (decision.target === null) {
    target = await createProfile(scope);
    created = true;
  } else {
    const loaded = await uow.loadLive(decision.target);
    if (!loaded) throw new PortraitError("UNKNOWN_PROFILE", "the login's profile disappeared", "deviceId");
    target = loaded;
  }
  const skipped = new Set(decision.unapplied.map((u) => u.key as IdentityKey));
  for (const key of skipped) scope.identityError(target.id, key, "IDENTITY_CONFLICT", record.ts);
  const ops = record.properties.filter((o) => !(o.kind === "set" && skipped.has(o.key as IdentityKey)));
  const { state, unapplied } = await underProperties(applyProperties(scope, target, ops, record.ts, "skip"));
  touch(scope, applyActivity(state, record.ts, record.context));

  if (decision.switchDevice || created) {
    if (cur && cur.id !== state.id) scope.deviceFrom = cur.id;
    await uow.tx.upsertDevice(uow.accountId, {
      deviceId,
      profileId: state.id,
      pushToken: device?.pushToken ?? null,
      platform: device?.platform ?? record.context?.platform ?? null,
    });
  }
  if (decision.orphan) {
    const orphan = await uow.load(decision.orphan);
    if (orphan) touch(scope, { ...orphan, orphanOf: state.id, updatedAt: scope.now });
  }
  const all = [...decision.unapplied, ...unapplied];
  return { profileId: state.id, outcome: decision.outcome, ...(all.length > 0 && { unapplied: all }) };
}

async function applyEvent(scope: RecordScope, record: EventRecord): Promise<RecordResult> {
  const { uow } = scope;
  // Most events only count: they are folded and added to their profile without loading it (unit-of-work.ts).
  const counted = isCountOnlyEvent(record.name, record.context)
    ? await countOnlyTarget(scope, record.handle, record.ts, record.context)
    : null;
  const target = counted === null ? (await resolveTarget(scope, record)).state : null;
  const profileId = counted?.profileId ?? target!.id;
  const scopeName = `event:${record.name}` as const;
  for (const [key, value] of Object.entries(record.properties)) {
    const type =
      typeof value === "string"
        ? "string"
        : typeof value === "number"
          ? "number"
          : typeof value === "boolean"
            ? "boolean"
            : "object";
    const known = uow.typeOf(scopeName, key);
    const winner = known ?? (await uow.register(scopeName, key, type, false, `properties.${key}`));
    if (winner !== type) {
      throw new PortraitError(
        "TYPE_MISMATCH",
        `event ${record.name} property ${key} is a ${winner}, got a ${type}`,
        `properties.${key}`,
      );
    }
  }
  let amount = 0;
  if (record.name === "Charged") {
    const chargedId = record.properties["Charged ID"];
    if (chargedId !== undefined && !(await uow.tx.claimChargedId(uow.accountId, profileId, String(chargedId)))) {
      // Journalled all the same: on a merged person the duplicate may be another side's purchase, which an undo
      // replays onto that side (SEMANTICS §7), where it is no duplicate.
      scope.touched.add(profileId);
      return { profileId, outcome: "duplicate" };
    }
    amount = typeof record.properties.Amount === "number" ? record.properties.Amount : 0;
  }
  const deviceId = record.handle.kind === "device" ? record.handle.deviceId : null;
  const id = record.id ?? record.storedId ?? scope.ids.eventId();
  if (record.id === undefined) scope.storedEventId = id;
  await uow.tx.insertEvents(uow.accountId, [
    {
      profileId,
      id,
      name: record.name,
      ts: record.ts,
      properties: record.properties,
      deviceId,
      platform: record.context?.platform ?? null,
    },
  ]);
  if (target) touch(scope, applyActivity(countEvent(target, record.name, amount), record.ts, record.context));
  else uow.countActivity(profileId, record.ts, counted!.timezone);
  return { profileId, outcome: "stored" };
}

async function applyToken(scope: RecordScope, record: TokenRecord): Promise<RecordResult> {
  const { uow } = scope;
  if (record.handle.kind !== "device") throw new PortraitError("INVALID_HANDLE", "a token needs deviceId", "deviceId");
  const { state, created } = await resolveTarget(scope, record);
  const device = await uow.tx.findDevice(uow.accountId, record.handle.deviceId);
  await uow.tx.upsertDevice(uow.accountId, {
    deviceId: record.handle.deviceId,
    profileId: state.id,
    pushToken: record.token,
    platform: record.context?.platform ?? device?.platform ?? null,
  });
  touch(scope, applyActivity(state, record.ts, record.context));
  return { profileId: state.id, outcome: created ? "created" : "updated" };
}

/**
 * SEMANTICS §9: test profiles carry is_test_user = "Yes"; at most 20 control-group exclusions per account, counting
 * live profiles that are no orphan (control-group-exclusion.ts).
 */
async function applyFlags(scope: RecordScope, record: FlagsRecord): Promise<RecordResult> {
  const { uow } = scope;
  // The limit is counted, then written: an exclusion holds the account's exclusions until COMMIT, taken before the
  // profile's lock (StoreTx.lockControlGroupExclusions). An undo that replays this record holds them already.
  if (record.controlGroupExcluded) await uow.tx.lockControlGroupExclusions(uow.accountId);
  const { state } = await resolveTarget(scope, record);
  let next: ProfileState = { ...state, flags: { ...state.flags }, updatedAt: scope.now };
  if (record.test !== undefined) {
    next.flags.test = record.test;
    const props = { ...next.props };
    if (record.test) {
      props.is_test_user = { v: "Yes", t: "string", ts: record.ts };
      await registerWrittenByPortrait(scope, "is_test_user");
    } else {
      delete props.is_test_user;
    }
    next = { ...next, props };
  }
  if (record.controlGroupExcluded !== undefined) {
    if (record.controlGroupExcluded && !state.flags.controlGroupExcluded) {
      await uow.flush();
      const count = await uow.tx.countControlGroupExcluded(uow.accountId);
      if (count >= CONTROL_GROUP_EXCLUSION_LIMIT) {
        throw new PortraitError(
          "CONTROL_GROUP_EXCLUSION_LIMIT",
          `an account can exclude at most ${CONTROL_GROUP_EXCLUSION_LIMIT} profiles from control groups`,
          "excluded",
        );
      }
    }
    next.flags.controlGroupExcluded = record.controlGroupExcluded;
  }
  touch(scope, next);
  return { profileId: state.id, outcome: "updated" };
}

async function applyDocumentRecord(scope: RecordScope, record: DocumentRecord): Promise<RecordResult> {
  const { state, created } = await resolveTarget(scope, record);
  await applyDocument(scope, state, record);
  touch(scope, applyActivity(state, record.ts, undefined));
  return { profileId: state.id, outcome: created ? "created" : "updated" };
}
