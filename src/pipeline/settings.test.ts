/**
 * SEMANTICS §11 Settings changes: the identity reindex (settings.ts) reads only the profiles it may change, found
 * through the identity index and the property index, and leaves the store exactly as the walk over every profile it
 * replaced left it. That walk is kept below as it was (`walkEveryProfile`) and run first on the same store, inside a
 * transaction rolled back once its result is read; then the real change runs and its committed result must be the same.
 * The world it runs on has what could make the identity index and the states disagree: orphans holding identities,
 * merge tombstones, values released by merges and limits, an undo that restores values of a key removed since (rows no
 * state holds after a back-fill), duplicates refused with 409.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PortraitError } from "../engine/errors.js";
import { limitFor, removeIdentityKey, trim } from "../engine/identity/identities.js";
import type { AccountSettings, IdentityKey, ProfileState } from "../engine/types.js";
import { SqliteStore } from "../store/sqlite/sqlite-store.js";
import type { StoreReader, StoreTx } from "../store/store.js";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { validateSettings } from "./accounts.js";
import type { UnitOfWork } from "./unit-of-work.js";

const stores = await storesUnderTest();
const ts = (s: number) => 1_790_000_000 + s;
const KEYS: readonly IdentityKey[] = ["Identity", "Email", "Phone", "FBID", "GPID"];

/**
 * The reindex as it was before it used the indexes (commit 4bd5d8e, pipeline/settings.ts): every live profile and
 * orphan, in id order, a page of 500 at a time.
 */
async function walkEveryProfile(uow: UnitOfWork, before: AccountSettings, after: AccountSettings): Promise<void> {
  const { tx, accountId } = uow;
  const added = after.identityKeys.filter((k) => !before.identityKeys.includes(k));
  const removed = before.identityKeys.filter((k) => !after.identityKeys.includes(k));
  const lowered = after.identityKeys.filter(
    (k) => before.identityKeys.includes(k) && limitFor(after.identityLimits, k) < limitFor(before.identityLimits, k),
  );
  if (added.length === 0 && removed.length === 0 && lowered.length === 0) return;

  for (const key of removed) await tx.releaseIdentityKey(accountId, key);
  const duplicates: string[] = [];
  let afterId: string | null = null;
  for (;;) {
    const ids = await tx.listProfileIds(accountId, afterId, 500);
    for (const id of ids) {
      const state = await uow.load(id);
      if (!state) continue;
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
    }
    if (ids.length < 500) break;
    afterId = ids[ids.length - 1] as string;
    await uow.flush();
    await nextTurn();
  }
  if (duplicates.length > 0) {
    throw new PortraitError(
      "IDENTITY_KEY_CONFLICT",
      `these values are held by several profiles: ${duplicates.slice(0, 20).join("; ")}${duplicates.length > 20 ? "; …" : ""}`,
      "identityKeys",
    );
  }
}

/** What a reindex may change: every profile's state, and the owner of every identity value the test ever used. */
interface World {
  profiles: Record<string, ProfileState | null>;
  rows: Record<string, string | null>;
}

async function worldOf(reader: StoreReader, accountId: string, ids: string[], values: Set<string>): Promise<World> {
  const world: World = { profiles: {}, rows: {} };
  for (const id of ids) world.profiles[id] = await reader.getProfile(accountId, id);
  for (const name of values) {
    const [key, value] = name.split("\u0000") as [IdentityKey, string];
    world.rows[name] = await reader.findProfileByIdentity(accountId, key, value);
  }
  return world;
}

/** The walk's result, read inside its transaction, which this throws to roll it back. */
class RolledBack extends Error {
  constructor(readonly outcome: World | PortraitError) {
    super("rolled back");
  }
}

describe.each(stores)("%s store", (store) => {
  let h: Harness;
  /** Every identity value the test sent (`key\0value`), so that rows no state holds are compared too. */
  const values = new Set<string>();
  /** Every profile id seen. */
  const ids = new Set<string>();

  beforeEach(async () => {
    values.clear();
    ids.clear();
    h = await makeHarness({}, store);
  });
  afterEach(async () => {
    await h.close();
  });

  /** Remembers the identity values that records name (as handles, or as properties of an identity key's name). */
  function remember(records: Array<Record<string, unknown>>): void {
    for (const r of records) {
      for (const source of [r.properties, r.identity]) {
        for (const [key, value] of Object.entries((source ?? {}) as Record<string, unknown>)) {
          if ((KEYS as string[]).includes(key) && typeof value === "string") values.add(`${key}\u0000${value}`);
        }
      }
    }
  }

  /** Ingests records that must all succeed; remembers their identity values and profiles. */
  async function ingest(...records: Array<Record<string, unknown>>): Promise<string[]> {
    remember(records);
    const result = await h.ingest(...records);
    expect(result.unprocessed ?? []).toEqual([]);
    const out = result.results.map((x) => x.profileId as string);
    for (const id of out) ids.add(id);
    return out;
  }

  /** Ingests records that may be refused (a random history); remembers their identity values and profiles. */
  async function tryIngest(...records: Array<Record<string, unknown>>): Promise<void> {
    remember(records);
    const result = await h.ingest(...records);
    for (const x of result.results) if (x.profileId) ids.add(x.profileId);
  }

  /** Runs a step that the rules may refuse (a merge of a tombstone, an undo that is not the latest, …). */
  async function ignoringRefusals(step: () => Promise<void>): Promise<void> {
    try {
      await step();
    } catch (e) {
      if (!(e instanceof PortraitError)) throw e;
    }
  }

  const profile = (handle: Record<string, unknown>, at: number, properties: Record<string, unknown>) => ({
    type: "profile",
    ...handle,
    ts: ts(at),
    properties,
  });

  /** Every identity value a state holds has its row, naming that profile (the invariant settings.ts relies on). */
  function expectStatesIndexed(world: World): void {
    for (const [id, state] of Object.entries(world.profiles)) {
      for (const [key, list] of Object.entries(state?.identities ?? {})) {
        for (const v of list ?? []) expect(world.rows[`${key}\u0000${v.value}`], `${key} ${v.value} of ${id}`).toBe(id);
      }
    }
  }

  /**
   * Applies `patch` twice: the walk over every profile, rolled back, then the real change. Both must end alike (or fail
   * alike, and then nothing changed). Returns the error code, if any.
   */
  async function changeLikeTheWalk(patch: Partial<AccountSettings>): Promise<string | null> {
    const all = [...ids];
    const before = await worldOf(h.store.reader, h.account.id, all, values);
    expectStatesIndexed(before);
    let walked: World | PortraitError;
    try {
      await h.portrait.transact(
        h.account,
        async (uow) => {
          const next = validateSettings(uow.account.settings, patch);
          try {
            await walkEveryProfile(uow, uow.account.settings, next);
          } catch (e) {
            if (e instanceof PortraitError) throw new RolledBack(e);
            throw e;
          }
          await uow.tx.updateSettings(uow.accountId, next);
          await uow.flush();
          throw new RolledBack(await worldOf(uow.tx, uow.accountId, all, values));
        },
        { lockAccount: true },
      );
      throw new Error("the walk did not roll back");
    } catch (e) {
      if (!(e instanceof RolledBack)) throw e;
      walked = e.outcome;
    }
    expect(await worldOf(h.store.reader, h.account.id, all, values)).toEqual(before);

    let failed: PortraitError | null = null;
    try {
      await h.settings(patch);
    } catch (e) {
      if (!(e instanceof PortraitError)) throw e;
      failed = e;
    }
    const after = await worldOf(h.store.reader, h.account.id, all, values);
    if (walked instanceof PortraitError) {
      expect(failed?.code).toBe(walked.code);
      expect(failed?.message).toBe(walked.message);
      expect(after).toEqual(before);
    } else {
      expect(failed).toBeNull();
      expect(after).toEqual(walked);
      expectStatesIndexed(after);
    }
    return failed?.code ?? null;
  }

  it("ends where the walk over every profile ended, for every kind of change", async () => {
    await h.settings({ identityKeys: ["Identity", "Email", "Phone"], identityLimits: { Email: 3, Phone: 2 } });
    // Three, two and one Emails; bystanders with one.
    const [p1] = await ingest(
      profile({ identity: { Identity: "u1" } }, 1, { Email: "e1a@x.io" }),
      profile({ identity: { Identity: "u1" } }, 2, { Email: "e1b@x.io" }),
      profile({ identity: { Identity: "u1" } }, 3, { Email: "e1c@x.io" }),
      profile({ identity: { Identity: "u2" } }, 1, { Email: "e2a@x.io" }),
      profile({ identity: { Identity: "u2" } }, 2, { Email: "e2b@x.io", Phone: "+33600000002" }),
      profile({ identity: { Identity: "u3" } }, 1, { Email: "e3@x.io", FBID: "fb-3" }),
      ...Array.from({ length: 12 }, (_, i) => profile({ identity: { Identity: `b${i}` } }, 1, { Email: `b${i}@x.io` })),
    );
    // An orphan (SEMANTICS §3 login case 2) that is given two Emails through its profile id.
    const [orphan] = await ingest({ type: "event", deviceId: "d-orphan", name: "Viewed", ts: ts(1) });
    await ingest({ type: "login", deviceId: "d-orphan", properties: { Identity: "u1" }, ts: ts(4) });
    expect((await h.store.reader.getProfile(h.account.id, orphan!))?.orphanOf).toBe(p1);
    await ingest(
      profile({ profileId: orphan }, 5, { Email: "o-a@x.io" }),
      profile({ profileId: orphan }, 6, { Email: "o-b@x.io", GPID: "gp-o" }),
    );
    // A merge over the limits: five Emails kept to three, two Identity values to one; the source a tombstone.
    const [p4, p5] = await ingest(
      profile({ identity: { Identity: "u4" } }, 1, { Email: "e4a@x.io" }),
      profile({ identity: { Identity: "u5" } }, 2, { Email: "e5a@x.io" }),
      profile({ identity: { Identity: "u4" } }, 3, { Email: "e4b@x.io" }),
      profile({ identity: { Identity: "u5" } }, 4, { Email: "e5b@x.io" }),
      profile({ identity: { Identity: "u5" } }, 5, { Email: "e5c@x.io", GPID: "gp-5" }),
    );
    await h.portrait.merge(h.account, p4!, p5!);
    expect((await h.store.reader.getProfile(h.account.id, p5!))?.mergedInto).toBe(p4);
    // Phones over their limit through a merge, undone after Phone stops being an identity key (below).
    const [p10, , p11] = await ingest(
      profile({ identity: { Identity: "u10" } }, 1, { Phone: "+33600000010" }),
      profile({ identity: { Identity: "u10" } }, 2, { Phone: "+33600000011" }),
      profile({ identity: { Identity: "u11" } }, 3, { Phone: "+33600000012" }),
    );
    const { mergeId } = await h.portrait.merge(h.account, p10!, p11!);

    expect(await changeLikeTheWalk({ identityLimits: { Email: 2, Phone: 2 } })).toBeNull();
    // A limit lowered and a key removed in one change.
    expect(await changeLikeTheWalk({ identityKeys: ["Identity", "Email"], identityLimits: { Phone: 2 } })).toBeNull();

    // The undo restores both people's Phones as properties only: Phone is no identity key now (demerge.ts).
    await h.portrait.undoMerge(h.account, mergeId);
    // Meanwhile others hold those values as plain properties, and FBID values twice.
    // fb-other is made first, a few ms before q: ids sort by creation time, so the FBID duplicate (found at fb-other)
    // comes before the Phone one (found at q) in the walk's list, though FBID was added after Phone.
    const [fbOther] = await ingest(profile({ identity: { Identity: "fb-other" } }, 7, { FBID: "fb-3" }));
    await new Promise((r) => setTimeout(r, 5));
    const [q] = await ingest(
      profile({ identity: { Identity: "q" } }, 7, { Phone: "+33600000010" }),
      profile({ identity: { Identity: "z" } }, 7, { Phone: "+33600000099" }),
      profile({ profileId: p1 }, 7, { FBID: "fb-1" }),
    );
    expect(fbOther! < q!).toBe(true);
    // Adding both keys finds duplicates of each, listed in one order whatever the key.
    expect(await changeLikeTheWalk({ identityKeys: ["Identity", "Email", "Phone", "FBID"] })).toBe(
      "IDENTITY_KEY_CONFLICT",
    );
    await ingest(
      profile({ profileId: q }, 8, { Phone: { $delete: true } }),
      profile({ profileId: fbOther }, 8, { FBID: { $delete: true } }),
    );
    expect(await changeLikeTheWalk({ identityKeys: ["Identity", "Email", "Phone", "FBID"] })).toBeNull();
    // p10's older Phone has no row: the undo gave none (before 2026-11-24 it did, and no state held the value).
    expect(await h.store.reader.findProfileByIdentity(h.account.id, "Phone", "+33600000010")).toBeNull();
    expect((await h.store.reader.getProfile(h.account.id, p10!))?.identities.Phone).toHaveLength(1);

    expect(await changeLikeTheWalk({ identityLimits: { Email: 1, Phone: 1 } })).toBeNull();
    // Email removed while GPID is added (an orphan's and a tombstone's GPID stay out), then Email back from properties.
    expect(await changeLikeTheWalk({ identityKeys: ["Identity", "Phone", "FBID", "GPID"] })).toBeNull();
    expect(await changeLikeTheWalk({ identityKeys: ["Identity", "Phone", "FBID", "GPID", "Email"] })).toBeNull();
    expect(await h.store.reader.findProfileByIdentity(h.account.id, "GPID", "gp-o")).toBeNull();
    expect(await h.store.reader.findProfileByIdentity(h.account.id, "GPID", "gp-5")).toBe(p4);
    expect(await h.store.reader.findProfileByIdentity(h.account.id, "Email", "e1c@x.io")).toBe(p1);
  }, 60_000);

  it("ends where the walk ended over random histories of writes, merges, undos, deletes and settings", async () => {
    const value = (key: IdentityKey, n: number) =>
      key === "Email" ? `e${n}@x.io` : key === "Phone" ? `+3360000000${n}` : `${key.toLowerCase()}-${n}`;
    const key = fc.constantFrom(...KEYS);
    const op = fc.oneof(
      fc.record({ kind: fc.constant("push" as const), who: fc.nat(4), key, n: fc.nat(5), at: fc.nat(40) }),
      fc.record({ kind: fc.constant("pushById" as const), who: fc.nat(), key, n: fc.nat(5), at: fc.nat(40) }),
      fc.record({ kind: fc.constant("event" as const), who: fc.nat(4), at: fc.nat(40) }),
      fc.record({ kind: fc.constant("login" as const), who: fc.nat(4), key, n: fc.nat(5), at: fc.nat(40) }),
      fc.record({ kind: fc.constant("merge" as const), a: fc.nat(), b: fc.nat() }),
      fc.record({ kind: fc.constant("undo" as const), m: fc.nat() }),
      fc.record({ kind: fc.constant("delete" as const), who: fc.nat() }),
    );
    const settings = fc.record({
      identityKeys: fc.shuffledSubarray([...KEYS], { minLength: 1 }),
      identityLimits: fc.record({
        Identity: fc.integer({ min: 1, max: 2 }),
        Email: fc.integer({ min: 1, max: 3 }),
        Phone: fc.integer({ min: 1, max: 3 }),
        FBID: fc.integer({ min: 1, max: 2 }),
      }),
      mergePolicy: fc.constantFrom("reject" as const, "merge" as const),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof({ weight: 4, arbitrary: op }, { weight: 1, arbitrary: settings }), {
          minLength: 15,
          maxLength: 40,
        }),
        settings,
        async (history, last) => {
          await h.close();
          h = await makeHarness({ identityKeys: [...KEYS], identityLimits: { Email: 3, Phone: 2 } }, store);
          values.clear();
          ids.clear();
          const merges: string[] = [];
          const known = () => [...ids];
          const pick = (n: number) => known()[n % Math.max(1, ids.size)];
          for (const step of [...history, last]) {
            if (!("kind" in step)) {
              await changeLikeTheWalk(step);
              continue;
            }
            await ignoringRefusals(async () => {
              switch (step.kind) {
                case "push":
                case "pushById":
                case "login": {
                  const handle =
                    step.kind === "pushById" ? { profileId: pick(step.who) } : { deviceId: `d${step.who}` };
                  if (handle.profileId === undefined && step.kind === "pushById") return;
                  const type = step.kind === "login" ? "login" : "profile";
                  await tryIngest({
                    type,
                    ...handle,
                    ts: ts(step.at),
                    properties: { [step.key]: value(step.key, step.n) },
                  });
                  return;
                }
                case "event":
                  await tryIngest({ type: "event", deviceId: `d${step.who}`, name: "Viewed", ts: ts(step.at) });
                  return;
                case "merge": {
                  // Two different profiles (when there are two): a merge of one with itself is only refused.
                  const [a, b] = [pick(step.a), pick(step.a + 1 + (step.b % Math.max(1, ids.size - 1)))];
                  if (a !== undefined && b !== undefined)
                    merges.push((await h.portrait.merge(h.account, a, b)).mergeId);
                  return;
                }
                case "undo":
                  if (merges.length > 0) await h.portrait.undoMerge(h.account, merges[step.m % merges.length]!);
                  return;
                case "delete": {
                  const id = pick(step.who);
                  if (id !== undefined) await h.portrait.deleteProfile(h.account, id);
                  return;
                }
              }
            });
          }
        },
      ),
      { numRuns: store === "sqlite" ? 30 : 8 },
    );
  }, 300_000);
});

describe("what a settings change reads and writes", () => {
  let dir: string;
  let h: Harness;
  /** Profiles the transactions read (lockProfile: what UnitOfWork.load reads with) and write (updateProfile). */
  const counts = { loads: 0, writes: 0 };

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "portrait-settings-"));
    const store = SqliteStore.open(path.join(dir, "portrait.db"));
    const write = store.write.bind(store);
    const counted: Partial<Record<keyof StoreTx, keyof typeof counts>> = {
      lockProfile: "loads",
      updateProfile: "writes",
    };
    store.write = (accountId, fn) =>
      write(accountId, (tx) =>
        fn(
          new Proxy(tx, {
            get(target, property) {
              const value = Reflect.get(target, property, target);
              if (typeof value !== "function") return value;
              const counter = counted[property as keyof StoreTx];
              if (counter === undefined) return value.bind(target);
              return (...args: unknown[]) => {
                counts[counter]++;
                return value.apply(target, args);
              };
            },
          }),
        ),
      );
    h = await makeHarness({ identityLimits: { Email: 3 } }, store);
  });
  afterEach(async () => {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function countsOf(patch: Partial<AccountSettings>): Promise<typeof counts> {
    counts.loads = 0;
    counts.writes = 0;
    await h.settings(patch);
    return { ...counts };
  }

  it("loads only the profiles its change may touch, not every profile of the account", async () => {
    // 1,200 people (three pages of the old walk); three hold two Emails, eight a Phone, which is no identity key.
    for (let batch = 0; batch < 2; batch++) {
      const records = Array.from({ length: 600 }, (_, i) => ({
        type: "profile",
        identity: { Identity: `p-${batch}-${i}` },
        ts: ts(1),
        properties: { Email: `p-${batch}-${i}@x.io`, ...(i % 150 === 7 && { Phone: `+3360000${batch}${i}` }) },
      }));
      expect((await h.ingest(...records)).results).toHaveLength(600);
    }
    for (const i of [3, 300, 599]) {
      await h.ingest({
        type: "profile",
        identity: { Identity: `p-1-${i}` },
        ts: ts(2),
        properties: { Email: `n${i}@x.io` },
      });
    }
    expect(await countsOf({ identityLimits: { Email: 1 } })).toEqual({ loads: 3, writes: 3 });
    expect(await countsOf({ identityKeys: ["Identity", "Email", "Phone"] })).toEqual({ loads: 8, writes: 8 });
    expect(await countsOf({ identityKeys: ["Identity", "Email"] })).toEqual({ loads: 8, writes: 8 });
    expect(await h.store.reader.findProfileByIdentity(h.account.id, "Email", "p-1-3@x.io")).toBeNull();
    expect(await h.store.reader.findProfileByIdentity(h.account.id, "Email", "n3@x.io")).not.toBeNull();
    expect(await h.store.reader.findProfileByIdentity(h.account.id, "Phone", "+33600001157")).toBeNull();
  }, 60_000);

  it("writes each profile it changes once, however many pages the change takes", async () => {
    // 1,200 people with two Emails each: lowering the limit to 1 changes every one of them, over three pages.
    for (let batch = 0; batch < 3; batch++) {
      const records = Array.from({ length: 400 }, (_, i) =>
        ["old", "new"].map((age, n) => ({
          type: "profile",
          identity: { Identity: `p-${batch}-${i}` },
          ts: ts(n),
          properties: { Email: `${age}-${batch}-${i}@x.io` },
        })),
      ).flat();
      expect((await h.ingest(...records)).results).toHaveLength(800);
    }
    expect(await countsOf({ identityLimits: { Email: 1 } })).toEqual({ loads: 1200, writes: 1200 });
    const [kept] = await h.portrait.findProfiles(h.account, {
      kind: "identity",
      key: "Email",
      value: "new-2-399@x.io",
    });
    expect(kept?.identities).toEqual({ Identity: "p-2-399", Email: "new-2-399@x.io" });
    expect(await h.store.reader.findProfileByIdentity(h.account.id, "Email", "old-2-399@x.io")).toBeNull();
  }, 60_000);
});
