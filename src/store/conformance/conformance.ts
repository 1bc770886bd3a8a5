/**
 * One behaviour suite for every Store adapter (STYLE: a conformance suite for the stores; tests run on real
 * databases). An adapter's test file calls `describeStoreConformance` with a factory for a fresh store.
 *
 * The suite shares one store between its tests; each test works in accounts of its own (fresh ids), which also
 * exercises account isolation all the time. Lists whose order the Store interface does not promise are compared
 * sorted, so an adapter is free in those.
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyActivityDelta, contextStatusOf } from "../../engine/activity.js";
import type { AnyRecord } from "../../engine/records.js";
import { parseCondition } from "../../engine/segment/parse.js";
import type {
  AccountSettings,
  DeviceRow,
  IdentityKey,
  NewEvent,
  ProfileDocument,
  ProfileState,
  StoredEvent,
  UserAccountRef,
} from "../../engine/types.js";
import { DEFAULT_SETTINGS } from "../../engine/types.js";
import type {
  ApiKeyRow,
  BatchHandles,
  NewMerge,
  PageOptions,
  ProfileCard,
  ProfileLookup,
  ProfileSnapshot,
  SnapshotReader,
  Store,
  StoreReader,
  StoreTx,
  TimelineEvent,
  TimelinePage,
} from "../store.js";
import { blankProfile, fullProfile, newAccount, newId } from "./fixtures.js";

const T0 = 1_700_000_000_000;

function sorted<T>(items: readonly T[], by: (item: T) => string = String): T[] {
  return [...items].sort((a, b) => (by(a) < by(b) ? -1 : by(a) > by(b) ? 1 : 0));
}

/** `n` fresh profile ids in ascending order. */
function orderedIds(n: number): string[] {
  return sorted(Array.from({ length: n }, () => newId()));
}
type Ids<N extends number, T extends string[] = []> = T["length"] extends N ? T : Ids<N, [...T, string]>;

function event(profileId: string, ts: number, name = "Viewed", properties: NewEvent["properties"] = {}): NewEvent {
  return { profileId, id: newId(), name, ts, properties, deviceId: null, platform: null };
}

/** A timeline page's event with its properties read back. */
function parsedTimelineEvent({ propertiesJson, ...e }: TimelineEvent): StoredEvent {
  return { ...e, properties: JSON.parse(propertiesJson) };
}

/** The order the timeline promises: newest ts first, then highest seq. */
function newestFirst(events: StoredEvent[]): StoredEvent[] {
  return [...events].sort((a, b) => b.ts - a.ts || b.seq - a.seq);
}

/** Every page of a timeline, following `next` until it is null. */
async function readAllPages(reader: StoreReader, accountId: string, profileIds: string[], limit: number) {
  const pages: StoredEvent[][] = [];
  let before: { ts: number; seq: number } | null = null;
  for (let guard = 0; guard < 1000; guard++) {
    const page = await reader.listEvents(accountId, profileIds, { before, limit });
    pages.push(page.events);
    if (page.next === null) return pages;
    const last = page.events[page.events.length - 1]!;
    expect(page.next).toEqual({ ts: last.ts, seq: last.seq });
    before = page.next;
  }
  throw new Error("listEvents never returned next = null");
}

function snapshot(state: ProfileState, extra: Partial<ProfileSnapshot> = {}): ProfileSnapshot {
  return { state, devices: [], userAccounts: [], documents: [], chargedIds: [], orphans: [], ...extra };
}

function merge(targetId: string, sourceId: string, createdAt: number, extra: Partial<NewMerge> = {}): NewMerge {
  return {
    id: newId(),
    targetId,
    sourceId,
    createdAt,
    undoneAt: null,
    eventSeqAtMerge: 0,
    target: snapshot(blankProfile(targetId)),
    source: snapshot(blankProfile(sourceId)),
    movedEventSeqs: [],
    droppedEvents: [],
    ...extra,
  };
}

function profileRecord(deviceId: string, ts: number, name: string): AnyRecord {
  return {
    type: "profile",
    ts,
    handle: { kind: "device", deviceId },
    properties: [{ kind: "set", key: "Name", value: name, type: "string" }],
  };
}

export function describeStoreConformance(
  name: string,
  makeStore: () => Promise<Store>,
  dropStore: (s: Store) => Promise<void>,
): void {
  describe(`Store conformance: ${name}`, () => {
    let store: Store;

    beforeAll(async () => {
      store = await makeStore();
    });

    afterAll(async () => {
      await dropStore(store);
    });

    /** A fresh account, so every test starts from an empty world. */
    async function freshAccount(): Promise<string> {
      const account = newAccount();
      await store.createAccount(account);
      return account.id;
    }

    /** Inserts blank profiles (or the given states) in one transaction; returns their ids. */
    async function insertProfiles(accountId: string, ...states: ProfileState[]): Promise<string[]> {
      await store.write(accountId, async (tx) => {
        for (const state of states) await tx.insertProfile(accountId, state);
      });
      return states.map((s) => s.id);
    }

    describe("accounts and operator data", () => {
      it("creates, reads, lists and updates the settings of accounts", async () => {
        const account = newAccount(T0 + 5);
        await store.createAccount(account);
        expect(await store.getAccount(account.id)).toEqual(account);
        expect(await store.getAccount(`acct_${newId()}`)).toBeNull();
        expect(await store.listAccounts()).toContainEqual(account);

        const settings: AccountSettings = {
          identityKeys: ["Phone", "Identity", "Email"],
          identityLimits: { Email: 3 },
          mergePolicy: "merge",
          timezone: "Europe/Paris",
          allowedOrigins: ["https://shop.example"],
          publicProperties: ["Name", "Tier"],
        };
        await store.write(account.id, (tx) => tx.updateSettings(account.id, settings));
        expect(await store.getAccount(account.id)).toEqual({ ...account, settings });
      });

      it("moves the settings revision with each committed settings change", async () => {
        const account = newAccount();
        await store.createAccount(account);
        const id = account.id;
        expect(await store.reader.revisions(id)).toEqual({ types: 0, settings: 0 });
        await store.write(id, (tx) => tx.updateSettings(id, { ...DEFAULT_SETTINGS, timezone: "Europe/Paris" }));
        expect(await store.reader.revisions(id)).toEqual({ types: 0, settings: 1 });

        await store.write(id, async (tx) => {
          await tx.lockAccount(id);
          expect((await tx.revisions(id)).settings).toBe(1);
          await tx.updateSettings(id, { ...DEFAULT_SETTINGS, timezone: "Asia/Tokyo" });
          expect((await tx.revisions(id)).settings).toBe(2);
        });
        expect((await store.getAccount(id))?.settings.timezone).toBe("Asia/Tokyo");
        await expect(
          store.write(id, async (tx) => {
            await tx.updateSettings(id, { ...DEFAULT_SETTINGS, timezone: "UTC" });
            throw new Error("rolled back");
          }),
        ).rejects.toThrow("rolled back");
        expect(await store.reader.revisions(id)).toEqual({ types: 0, settings: 2 });
        expect((await store.getAccount(id))?.settings.timezone).toBe("Asia/Tokyo");
        await store.write(id, (tx) => tx.updateSettings(id, DEFAULT_SETTINGS));
        expect((await store.reader.revisions(id)).settings).toBe(3);
      });

      it("refuses a second account with the same id, and settings for an unknown account", async () => {
        const account = newAccount();
        await store.createAccount(account);
        await expect(store.createAccount({ ...account, name: "Other" })).rejects.toThrow();
        expect((await store.getAccount(account.id))?.name).toBe(account.name);
        const unknown = `acct_${newId()}`;
        await expect(store.write(unknown, (tx) => tx.updateSettings(unknown, DEFAULT_SETTINGS))).rejects.toThrow();
      });

      it("finds API keys by hash, lists them per account and revokes them within their account only", async () => {
        const [a, b] = [await freshAccount(), await freshAccount()];
        const key = (accountId: string, createdAt: number): ApiKeyRow => ({
          id: newId(),
          accountId,
          kind: "secret",
          name: `key ${createdAt}`,
          hash: newId() + newId(),
          prefix: "pk_12345",
          createdAt,
          revokedAt: null,
        });
        const [a1, a2, b1] = [key(a, T0), { ...key(a, T0 + 1), kind: "public" as const }, key(b, T0)];
        for (const k of [a1, a2, b1]) await store.insertApiKey(k);

        expect(await store.findApiKeyByHash(a2.hash)).toEqual(a2);
        expect(await store.findApiKeyByHash("0".repeat(64))).toBeNull();
        expect(sorted(await store.listApiKeys(a), (k) => k.id)).toEqual(sorted([a1, a2], (k) => k.id));
        expect(await store.listApiKeys(b)).toEqual([b1]);

        expect(await store.revokeApiKey(b, a1.id, T0 + 10)).toBe(false);
        expect(await store.revokeApiKey(a, newId(), T0 + 10)).toBe(false);
        expect((await store.findApiKeyByHash(a1.hash))?.revokedAt).toBeNull();

        expect(await store.revokeApiKey(a, a1.id, T0 + 10)).toBe(true);
        expect(await store.findApiKeyByHash(a1.hash)).toEqual({ ...a1, revokedAt: T0 + 10 });
        // Revoking again succeeds and keeps the first revocation time.
        expect(await store.revokeApiKey(a, a1.id, T0 + 20)).toBe(true);
        expect((await store.findApiKeyByHash(a1.hash))?.revokedAt).toBe(T0 + 10);
        expect((await store.findApiKeyByHash(a2.hash))?.revokedAt).toBeNull();

        await expect(store.insertApiKey({ ...key(a, T0), hash: a2.hash })).rejects.toThrow();
      });

      it("keeps meta values and dashboard users", async () => {
        const metaKey = `test.${newId()}`;
        expect(await store.getMeta(metaKey)).toBeNull();
        await store.setMeta(metaKey, "one");
        expect(await store.getMeta(metaKey)).toBe("one");
        await store.setMeta(metaKey, "two");
        expect(await store.getMeta(metaKey)).toBe("two");

        const accountId = await freshAccount();
        const user = { accountId, username: `user_${newId()}`, passwordHash: "aa:bb" };
        expect(await store.findDashboardUser(user.username)).toBeNull();
        await store.insertDashboardUser(user);
        expect(await store.findDashboardUser(user.username)).toEqual(user);
        await expect(store.insertDashboardUser({ ...user, passwordHash: "cc:dd" })).rejects.toThrow();
        expect(await store.findDashboardUser(user.username)).toEqual(user);
      });
    });

    describe("profiles", () => {
      it("round-trips a full profile state through insert, get, lock and update", async () => {
        const accountId = await freshAccount();
        const state = fullProfile();
        const seen = await store.write(accountId, async (tx) => {
          await tx.insertProfile(accountId, state);
          return { got: await tx.getProfile(accountId, state.id), locked: await tx.lockProfile(accountId, state.id) };
        });
        expect(seen.got).toEqual(state);
        expect(seen.locked).toEqual(state);
        expect(await store.reader.getProfile(accountId, state.id)).toEqual(state);

        const updated: ProfileState = {
          ...state,
          props: {
            ...state.props,
            Name: { v: "Ada King", t: "string", ts: T0 + 50 },
            Tier: { v: 3, t: "number", ts: T0 },
          },
          identities: { Identity: [{ value: "42", ts: T0 + 50 }] },
          updatedAt: T0 + 50,
          lastSeen: T0 + 50,
          location: { city: null, region: null, country: "FR", lat: null, lon: null },
          flags: { test: false, controlGroupExcluded: false },
          stats: { events: 13, charged: 3, revenue: 120.4 },
        };
        await store.write(accountId, (tx) => tx.updateProfile(accountId, updated));
        expect(await store.reader.getProfile(accountId, state.id)).toEqual(updated);
      });

      it("answers null for an unknown profile and refuses duplicates and updates of missing profiles", async () => {
        const accountId = await freshAccount();
        const [id] = await insertProfiles(accountId, blankProfile());
        expect(await store.reader.getProfile(accountId, newId())).toBeNull();
        expect(await store.write(accountId, (tx) => tx.lockProfile(accountId, newId()))).toBeNull();
        await expect(store.write(accountId, (tx) => tx.insertProfile(accountId, fullProfile(id)))).rejects.toThrow();
        expect(await store.reader.getProfile(accountId, id!)).toEqual(blankProfile(id));
        await expect(store.write(accountId, (tx) => tx.updateProfile(accountId, blankProfile()))).rejects.toThrow();
      });

      it("lists orphans and tombstones from the state's orphanOf and mergedInto, following updates", async () => {
        const accountId = await freshAccount();
        const owner = newId();
        const o1 = { ...blankProfile(), orphanOf: owner };
        const o2 = { ...blankProfile(), orphanOf: owner };
        const t1 = blankProfile();
        await insertProfiles(accountId, blankProfile(owner), o1, o2, t1, { ...blankProfile(), orphanOf: newId() });
        expect(sorted(await store.reader.listOrphans(accountId, owner))).toEqual(sorted([o1.id, o2.id]));
        expect(await store.reader.listTombstones(accountId, owner)).toEqual([]);

        await store.write(accountId, async (tx) => {
          await tx.updateProfile(accountId, { ...t1, mergedInto: owner });
          await tx.updateProfile(accountId, { ...o1, orphanOf: null });
        });
        expect(await store.reader.listOrphans(accountId, owner)).toEqual([o2.id]);
        expect(await store.reader.listTombstones(accountId, owner)).toEqual([t1.id]);
        expect(await store.reader.listOrphans(accountId, newId())).toEqual([]);
      });

      it("pages live and orphan profile ids in id order, leaving out tombstones", async () => {
        const accountId = await freshAccount();
        const live = Array.from({ length: 7 }, () => blankProfile());
        const orphan = { ...blankProfile(), orphanOf: live[0]!.id };
        const tombstone = { ...blankProfile(), mergedInto: live[1]!.id };
        await insertProfiles(accountId, ...live, orphan, tombstone);
        const expected = sorted([...live, orphan].map((p) => p.id));

        const seen: string[] = [];
        let after: string | null = null;
        for (let guard = 0; guard < 10; guard++) {
          const ids: string[] = await store.reader.listProfileIds(accountId, after, 3);
          expect(ids.length).toBeLessThanOrEqual(3);
          seen.push(...ids);
          if (ids.length < 3) break;
          after = ids[ids.length - 1]!;
        }
        expect(seen).toEqual(expected);
        expect(await store.write(accountId, (tx) => tx.listProfileIds(accountId, expected[4]!, 100))).toEqual(
          expected.slice(5),
        );
        expect(await store.reader.listProfileIds(accountId, expected[7]!, 100)).toEqual([]);
      });

      it("counts control-group-excluded profiles of the account, leaving out merge tombstones and orphans", async () => {
        const accountId = await freshAccount();
        expect(await store.reader.countControlGroupExcluded(accountId)).toBe(0);
        const excluded = (p: ProfileState): ProfileState => ({
          ...p,
          flags: { ...p.flags, controlGroupExcluded: true },
        });
        const [p1, p2, p3] = [excluded(blankProfile()), excluded(blankProfile()), blankProfile()];
        await insertProfiles(accountId, p1, p2, p3);
        expect(await store.reader.countControlGroupExcluded(accountId)).toBe(2);

        await store.write(accountId, async (tx) => {
          await tx.updateProfile(accountId, excluded(p3));
          await tx.updateProfile(accountId, blankProfile(p1.id));
        });
        expect(await store.reader.countControlGroupExcluded(accountId)).toBe(2);

        await store.write(accountId, (tx) => tx.updateProfile(accountId, { ...p2, mergedInto: p3.id }));
        expect(await store.reader.countControlGroupExcluded(accountId)).toBe(1);

        // SEMANTICS §5: an orphan is never placed in a control group, so it uses no slot (§9).
        const orphan = { ...excluded(blankProfile()), orphanOf: p3.id };
        await insertProfiles(accountId, orphan);
        expect(await store.reader.countControlGroupExcluded(accountId)).toBe(1);
        await store.write(accountId, (tx) => tx.updateProfile(accountId, { ...orphan, orphanOf: null }));
        expect(await store.reader.countControlGroupExcluded(accountId)).toBe(2);
      });
    });

    describe("count-only activity: peekProfile and addActivity", () => {
      /** A live profile, a merge tombstone pointing at it, and a merge target with a journal open. */
      async function liveTombstoneAndTarget() {
        const accountId = await freshAccount();
        const live = blankProfile();
        const tombstone = { ...blankProfile(), mergedInto: live.id };
        const target = { ...blankProfile(), journalMergeId: "ab".repeat(16) };
        await insertProfiles(accountId, live, tombstone, target);
        return { accountId, live, tombstone, target };
      }

      it("peeks where a profile stands in the merge bookkeeping, without its state, in this account only", async () => {
        const { accountId, live, tombstone, target } = await liveTombstoneAndTarget();
        const other = await freshAccount();
        const seen = await store.write(accountId, async (tx) => ({
          live: await tx.peekProfile(accountId, live.id),
          tombstone: await tx.peekProfile(accountId, tombstone.id),
          target: await tx.peekProfile(accountId, target.id),
          unknown: await tx.peekProfile(accountId, newId()),
        }));
        expect(seen).toEqual({
          live: { mergedInto: null, journalMergeId: null },
          tombstone: { mergedInto: live.id, journalMergeId: null },
          target: { mergedInto: null, journalMergeId: "ab".repeat(16) },
          unknown: null,
        });
        expect(await store.write(other, (tx) => tx.peekProfile(other, live.id))).toBeNull();
        // A transaction's own writes are what it peeks next, and what later transactions peek.
        const after = await store.write(accountId, async (tx) => {
          await tx.updateProfile(accountId, { ...live, mergedInto: target.id });
          await tx.updateProfile(accountId, { ...target, journalMergeId: null });
          await tx.updateProfile(accountId, { ...tombstone, mergedInto: null, journalMergeId: "ef".repeat(16) });
          const peeked = [];
          for (const p of [live, target, tombstone]) peeked.push(await tx.peekProfile(accountId, p.id));
          return peeked;
        });
        const expected = [
          { mergedInto: target.id, journalMergeId: null },
          { mergedInto: null, journalMergeId: null },
          { mergedInto: null, journalMergeId: "ef".repeat(16) },
        ];
        expect(after).toEqual(expected);
        // One statement at a time on a transaction's connection: node-postgres 9 refuses overlapping ones.
        const later = await store.write(accountId, async (tx) => {
          const peeked = [];
          for (const p of [live, target, tombstone]) peeked.push(await tx.peekProfile(accountId, p.id));
          return peeked;
        });
        expect(later).toEqual(expected);
      });

      it("adds folded events to stored profiles exactly as applyActivityDelta does, touching nothing else", async () => {
        const accountId = await freshAccount();
        // fullProfile has a journal (addActivity refuses those): the same profile without it.
        const full = { ...fullProfile(), journalMergeId: null };
        const blank = blankProfile();
        await insertProfiles(accountId, full, blank);
        const deltas = [
          { profileId: full.id, firstTs: T0 - 5000, lastTs: T0 + 3, events: 4 },
          { profileId: blank.id, firstTs: T0 + 7, lastTs: T0 + 7_000_000, events: 1 },
        ];
        const inside = await store.write(accountId, async (tx) => {
          await tx.addActivity(accountId, deltas);
          return tx.getProfile(accountId, blank.id);
        });
        const { profileId: _f, ...fullDelta } = deltas[0]!;
        const { profileId: _b, ...blankDelta } = deltas[1]!;
        expect(inside).toEqual(applyActivityDelta(blank, blankDelta));
        expect(await store.reader.getProfile(accountId, full.id)).toEqual(applyActivityDelta(full, fullDelta));
        expect(await store.reader.getProfile(accountId, blank.id)).toEqual(applyActivityDelta(blank, blankDelta));
        // firstSeen only moves back, lastSeen only forward.
        await store.write(accountId, (tx) =>
          tx.addActivity(accountId, [{ profileId: full.id, firstTs: T0, lastTs: T0, events: 2 }]),
        );
        const twice = await store.reader.getProfile(accountId, full.id);
        expect(twice).toEqual({
          ...full,
          firstSeen: T0 - 5000,
          lastSeen: T0 + 9,
          stats: { ...full.stats, events: 18 },
        });
      });

      it("shows added activity wherever the profile is read: its card, segment conditions and exports", async () => {
        const accountId = await freshAccount();
        const seen = blankProfile();
        await insertProfiles(accountId, seen, blankProfile());
        const ctx = { now: T0 + 1000, timezone: "UTC", segment: () => undefined };
        const parsed = (where: unknown) => parseCondition(where, { timezone: "UTC" });
        const lately = parsed({
          all: [
            { system: "lastSeen", op: "withinLast", value: { days: 1 } },
            { system: "firstSeen", op: "before", value: "2023-11-14T22:13:20.000Z" },
          ],
        });
        expect(await store.segments.countSegment(accountId, lately, ctx)).toBe(0);
        const delta = { firstTs: T0 - 5000, lastTs: T0, events: 3 };
        await store.write(accountId, (tx) => tx.addActivity(accountId, [{ profileId: seen.id, ...delta }]));
        const expected = applyActivityDelta(seen, delta);
        expect((await store.reader.getProfileCard(accountId, { profileId: seen.id }))?.state).toEqual(expected);
        expect(await store.segments.countSegment(accountId, lately, ctx)).toBe(1);
        const page = await store.segments.querySegment(accountId, lately, ctx, { after: null, limit: 10 });
        expect(page.ids).toEqual([seen.id]);
        const streamed: ProfileState[] = [];
        for await (const batch of store.segments.streamSegment(accountId, lately, ctx)) streamed.push(...batch);
        expect(streamed).toEqual([expected]);
      });

      it("peeks what the context rules read, as contextStatusOf reads it from the state", async () => {
        const accountId = await freshAccount();
        const full = fullProfile();
        const blank = blankProfile();
        const tombstoned = { ...blankProfile(), props: { Timezone: { ts: T0 + 4 } } };
        await insertProfiles(accountId, full, blank, tombstoned);
        const seen = await store.write(accountId, async (tx) => {
          const peeked = [];
          for (const p of [full, blank, tombstoned]) peeked.push(await tx.peekContext(accountId, p.id));
          return peeked;
        });
        expect(seen).toEqual([contextStatusOf(full), contextStatusOf(blank), contextStatusOf(tombstoned)]);
        expect(seen[0]).toMatchObject({ acquiredKind: "utm", timezoneFromContext: true });
        expect(await store.write(accountId, (tx) => tx.peekContext(accountId, newId()))).toBeNull();
        const other = await freshAccount();
        expect(await store.write(other, (tx) => tx.peekContext(other, full.id))).toBeNull();
      });

      it("restamps a context-set zone with the latest ts, and refuses a profile that no longer has it", async () => {
        const accountId = await freshAccount();
        const zoned = (fromContext: boolean, zone = "Europe/Paris"): ProfileState => ({
          ...blankProfile(),
          props: { Timezone: { v: zone, t: "string", ts: T0 + 10 }, Name: { v: "Ana", t: "string", ts: T0 } },
          timezoneFromContext: fromContext,
        });
        const fromContext = zoned(true);
        await insertProfiles(accountId, fromContext);
        const delta = { firstTs: T0 + 1, lastTs: T0 + 90, events: 3, timezone: { value: "Europe/Paris", ts: T0 + 90 } };
        await store.write(accountId, (tx) => tx.addActivity(accountId, [{ profileId: fromContext.id, ...delta }]));
        const once = applyActivityDelta(fromContext, delta);
        expect(once.props.Timezone).toEqual({ v: "Europe/Paris", t: "string", ts: T0 + 90 });
        expect(await store.reader.getProfile(accountId, fromContext.id)).toEqual(once);
        // An older stamp leaves the newer one.
        const older = { firstTs: T0 + 5, lastTs: T0 + 5, events: 1, timezone: { value: "Europe/Paris", ts: T0 + 5 } };
        await store.write(accountId, (tx) => tx.addActivity(accountId, [{ profileId: fromContext.id, ...older }]));
        expect(await store.reader.getProfile(accountId, fromContext.id)).toEqual(applyActivityDelta(once, older));
        expect((await store.reader.getProfile(accountId, fromContext.id))?.props.Timezone?.ts).toBe(T0 + 90);

        // Written by a client, or another zone: the restamp does not hold, and nothing of the transaction stays.
        for (const refused of [zoned(false), zoned(true, "UTC")]) {
          await insertProfiles(accountId, refused);
          await expect(
            store.write(accountId, (tx) => tx.addActivity(accountId, [{ profileId: refused.id, ...delta }])),
          ).rejects.toThrow();
          expect(await store.reader.getProfile(accountId, refused.id)).toEqual(refused);
        }
      });

      it("rolls an addition back with its savepoint", async () => {
        const accountId = await freshAccount();
        const [id] = await insertProfiles(accountId, blankProfile());
        await store.write(accountId, async (tx) => {
          await expect(
            tx.savepoint(async () => {
              await tx.addActivity(accountId, [{ profileId: id!, firstTs: T0, lastTs: T0, events: 3 }]);
              throw new Error("record refused");
            }),
          ).rejects.toThrow("record refused");
          await tx.addActivity(accountId, [{ profileId: id!, firstTs: T0 + 1, lastTs: T0 + 2, events: 1 }]);
        });
        expect(await store.reader.getProfile(accountId, id!)).toMatchObject({
          firstSeen: T0 + 1,
          lastSeen: T0 + 2,
          stats: { events: 1, charged: 0, revenue: 0 },
        });
      });

      it("refuses to add to a merge tombstone, a journalled merge target or a missing profile, keeping nothing", async () => {
        const { accountId, live, tombstone, target } = await liveTombstoneAndTarget();
        for (const refused of [tombstone.id, target.id, newId()]) {
          await expect(
            store.write(accountId, (tx) =>
              tx.addActivity(accountId, [
                { profileId: live.id, firstTs: T0, lastTs: T0, events: 1 },
                { profileId: refused, firstTs: T0, lastTs: T0, events: 1 },
              ]),
            ),
          ).rejects.toThrow();
        }
        expect(await store.reader.getProfile(accountId, live.id)).toEqual(live);
        expect(await store.reader.getProfile(accountId, tombstone.id)).toEqual(tombstone);
        expect(await store.reader.getProfile(accountId, target.id)).toEqual(target);
      });
    });

    describe("identities, devices and user accounts", () => {
      it("gives an identity value to its first claimant and releases it only for its owner", async () => {
        const accountId = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        const owners = await store.write(accountId, async (tx) => [
          await tx.claimIdentity(accountId, "Email", "ada@example.com", p1!),
          await tx.claimIdentity(accountId, "Email", "ada@example.com", p2!),
          await tx.claimIdentity(accountId, "Identity", "ada@example.com", p2!),
          await tx.claimIdentity(accountId, "Email", "ada@example.com", p1!),
        ]);
        expect(owners).toEqual([p1, p1, p2, p1]);
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "ada@example.com")).toBe(p1);
        expect(await store.reader.findProfileByIdentity(accountId, "Identity", "ada@example.com")).toBe(p2);
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "nobody@example.com")).toBeNull();

        await store.write(accountId, (tx) => tx.releaseIdentity(accountId, "Email", "ada@example.com", p2!));
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "ada@example.com")).toBe(p1);
        await store.write(accountId, (tx) => tx.releaseIdentity(accountId, "Email", "ada@example.com", p1!));
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "ada@example.com")).toBeNull();
        expect(await store.write(accountId, (tx) => tx.claimIdentity(accountId, "Email", "ada@example.com", p2!))).toBe(
          p2,
        );
      });

      it("drops every value of one identity key and keeps the other keys", async () => {
        const accountId = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        await store.write(accountId, async (tx) => {
          await tx.claimIdentity(accountId, "Phone", "+33600000001", p1!);
          await tx.claimIdentity(accountId, "Phone", "+33600000002", p2!);
          await tx.claimIdentity(accountId, "Email", "p1@example.com", p1!);
          await tx.releaseIdentityKey(accountId, "Phone");
        });
        expect(await store.reader.findProfileByIdentity(accountId, "Phone", "+33600000001")).toBeNull();
        expect(await store.reader.findProfileByIdentity(accountId, "Phone", "+33600000002")).toBeNull();
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "p1@example.com")).toBe(p1);
      });

      /** Every page of a keyset listing: `list(afterId, limit)` until a page comes back short. */
      async function allPages(
        list: (afterId: string | null, limit: number) => Promise<string[]>,
        limit: number,
      ): Promise<string[][]> {
        const pages: string[][] = [];
        let afterId: string | null = null;
        for (let guard = 0; guard < 100; guard++) {
          const page = await list(afterId, limit);
          pages.push(page);
          if (page.length < limit) return pages;
          afterId = page[page.length - 1]!;
        }
        throw new Error("the listing never ended");
      }

      it("lists the profiles named by more than n identity rows of a key, in id order, a page at a time", async () => {
        const accountId = await freshAccount();
        const [p1, p2, p3, p4, p5, p6, owner] = orderedIds(7) as Ids<7>;
        // The rows name profiles whatever they are: p5 a merge tombstone, p6 an orphan (what the caller does with
        // them is its business); p7 has no row of Email.
        await insertProfiles(
          accountId,
          blankProfile(p1),
          blankProfile(p2),
          blankProfile(p3),
          blankProfile(p4),
          { ...blankProfile(p5), mergedInto: owner },
          { ...blankProfile(p6), orphanOf: owner },
          blankProfile(owner),
        );
        const rows: Array<[string, IdentityKey, number]> = [
          [p1!, "Email", 3],
          [p2!, "Email", 1],
          [p3!, "Email", 2],
          [p3!, "Phone", 3],
          [p4!, "Phone", 1],
          [p5!, "Email", 2],
          [p6!, "Email", 4],
          [owner, "Identity", 2],
        ];
        await store.write(accountId, async (tx) => {
          for (const [id, key, n] of rows) {
            for (let i = 0; i < n; i++) await tx.claimIdentity(accountId, key, `${key}-${i}-${id}`, id);
          }
        });
        // Another account's rows never count, even for the same profile ids.
        const other = await freshAccount();
        await insertProfiles(other, blankProfile(p2), blankProfile(p4));
        await store.write(other, async (tx) => {
          for (let i = 0; i < 5; i++) await tx.claimIdentity(other, "Email", `other-${i}`, p2!);
          await tx.claimIdentity(other, "Phone", "other-phone", p4!);
        });

        const holders = (key: "Email" | "Phone", moreThan: number, afterId: string | null = null, limit = 100) =>
          store.write(accountId, (tx) => tx.listIdentityHolders(accountId, key, moreThan, afterId, limit));
        expect(await holders("Email", 0)).toEqual([p1, p2, p3, p5, p6]);
        expect(await holders("Email", 1)).toEqual([p1, p3, p5, p6]);
        expect(await holders("Email", 2)).toEqual([p1, p6]);
        expect(await holders("Email", 4)).toEqual([]);
        expect(await holders("Phone", 0)).toEqual([p3, p4]);
        expect(await holders("Phone", 2)).toEqual([p3]);
        expect(await holders("Email", 0, p3)).toEqual([p5, p6]);
        expect(await allPages((afterId, limit) => holders("Email", 0, afterId, limit), 2)).toEqual([
          [p1, p2],
          [p3, p5],
          [p6],
        ]);
        expect(await allPages((afterId, limit) => holders("Email", 1, afterId, limit), 2)).toEqual([
          [p1, p3],
          [p5, p6],
          [],
        ]);
        expect(await store.write(other, (tx) => tx.listIdentityHolders(other, "Email", 0, null, 100))).toEqual([p2]);

        // Inside a transaction, its own claims and releases count.
        const seen = await store.write(accountId, async (tx) => {
          await tx.releaseIdentity(accountId, "Email", `Email-0-${p1}`, p1!);
          await tx.claimIdentity(accountId, "Email", `Email-9-${p2}`, p2!);
          await tx.claimIdentity(accountId, "Email", `Email-8-${p2}`, p2!);
          return tx.listIdentityHolders(accountId, "Email", 2, null, 100);
        });
        expect(seen).toEqual([p2, p6]);
      });

      it("lists the live profiles whose property holds one string, in id order, a page at a time", async () => {
        const accountId = await freshAccount();
        const [a, b, c, d, e, f, g, h, i, j, k] = orderedIds(11) as Ids<11>;
        const withProps = (id: string, props: ProfileState["props"], extra: Partial<ProfileState> = {}) => ({
          ...blankProfile(id),
          props,
          ...extra,
        });
        const phone = (v: string) => ({ Phone: { v, t: "string" as const, ts: T0 } });
        await insertProfiles(
          accountId,
          withProps(a, { ...phone("+33600000001"), Name: { v: "Ann", t: "string", ts: T0 } }),
          // A multi-value, a number, a nested path that ends in Phone, a deleted key, a date kept as calendar text:
          // none is one string at the top-level path.
          withProps(b, { Phone: { v: ["+33600000002", "+33600000003"], t: "multi", ts: T0 } }),
          withProps(c, { Phone: { v: 5, t: "number", ts: T0 } }),
          withProps(d, { Address: { v: { Phone: "+33600000004" }, t: "object", ts: T0 } }),
          withProps(e, { Phone: { ts: T0 } }),
          // Orphans and merge tombstones are never back-filled.
          withProps(f, phone("+33600000006"), { orphanOf: a }),
          withProps(g, phone("+33600000007"), { mergedInto: a }),
          withProps(h, phone("+33600000008")),
          withProps(i, { Name: { v: "Ivy", t: "string", ts: T0 } }),
          withProps(j, { Phone: { v: "1990-01-02", t: "date", ts: T0 } }),
          withProps(k, phone("")),
        );
        const other = await freshAccount();
        await insertProfiles(other, withProps(newId(), phone("+33600000099")), withProps(i, phone("+33600000098")));
        // An id before every other (ids are hex; this one is all zeros but its last digit).
        const first = `${"0".repeat(31)}1`;

        const list = (key: string, afterId: string | null = null, limit = 100) =>
          store.write(accountId, (tx) => tx.listStringPropertyHolders(accountId, key, afterId, limit));
        expect(await list("Phone")).toEqual([a, h, k]);
        expect(await list("Phone", a)).toEqual([h, k]);
        expect(await allPages((afterId, limit) => list("Phone", afterId, limit), 1)).toEqual([[a], [h], [k], []]);
        expect(await list("Name")).toEqual([a, i]);
        expect(await list("Address")).toEqual([]);
        expect(await list("FBID")).toEqual([]);

        // Inside a transaction, its own profile writes count.
        const seen = await store.write(accountId, async (tx) => {
          await tx.updateProfile(accountId, withProps(h, {}));
          await tx.updateProfile(accountId, withProps(i, phone("+33600000009")));
          await tx.updateProfile(accountId, withProps(b, phone("+33600000002")));
          await tx.updateProfile(accountId, withProps(a, phone("+33600000001"), { orphanOf: h }));
          await tx.insertProfile(accountId, withProps(first, phone("+33600000010")));
          return tx.listStringPropertyHolders(accountId, "Phone", null, 100);
        });
        expect(seen).toEqual([first, b, i, k]);
      });

      it("creates, repoints, updates and deletes devices", async () => {
        const accountId = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        const d1: DeviceRow = { deviceId: "dev-1", profileId: p1!, pushToken: "tok-1", platform: "web" };
        const d2: DeviceRow = { deviceId: "dev-2", profileId: p1!, pushToken: null, platform: null };
        await store.write(accountId, async (tx) => {
          await tx.upsertDevice(accountId, d1);
          await tx.upsertDevice(accountId, d2);
        });
        expect(await store.reader.findDevice(accountId, "dev-1")).toEqual(d1);
        expect(sorted(await store.reader.listDevices(accountId, p1!), (d) => d.deviceId)).toEqual([d1, d2]);
        expect(await store.reader.findDevice(accountId, "dev-unknown")).toBeNull();

        // A device has one current profile: upserting it elsewhere moves it, token and platform included.
        const moved: DeviceRow = { deviceId: "dev-1", profileId: p2!, pushToken: null, platform: "ios" };
        await store.write(accountId, (tx) => tx.upsertDevice(accountId, moved));
        expect(await store.reader.findDevice(accountId, "dev-1")).toEqual(moved);
        expect(await store.reader.listDevices(accountId, p1!)).toEqual([d2]);
        expect(await store.reader.listDevices(accountId, p2!)).toEqual([moved]);

        await store.write(accountId, (tx) => tx.deleteDevice(accountId, "dev-2"));
        expect(await store.reader.findDevice(accountId, "dev-2")).toBeNull();
        expect(await store.reader.listDevices(accountId, p1!)).toEqual([]);
      });

      it("gives an unknown device to its first claimant and leaves a known one where it is", async () => {
        const accountId = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        const first: DeviceRow = { deviceId: "dev-c", profileId: p1!, pushToken: "tok", platform: "web" };
        const owners = await store.write(accountId, async (tx) => [
          await tx.claimDevice(accountId, first),
          await tx.claimDevice(accountId, { deviceId: "dev-c", profileId: p2!, pushToken: null, platform: "ios" }),
        ]);
        expect(owners).toEqual([p1, p1]);
        expect(await store.reader.findDevice(accountId, "dev-c")).toEqual(first);
        expect(await store.reader.listDevices(accountId, p2!)).toEqual([]);
      });

      it("gives a racing unknown device to exactly one of 50 new profiles", async () => {
        const accountId = await freshAccount();
        const results = await Promise.all(
          Array.from({ length: 50 }, () =>
            store.write(accountId, async (tx) => {
              const mine = newId();
              const device: DeviceRow = { deviceId: "dev-race", profileId: mine, pushToken: null, platform: null };
              return { mine, owner: await tx.claimDevice(accountId, device) };
            }),
          ),
        );
        const winners = results.filter((r) => r.owner === r.mine);
        expect(winners).toHaveLength(1);
        expect(new Set(results.map((r) => r.owner))).toEqual(new Set([winners[0]!.mine]));
        expect((await store.reader.findDevice(accountId, "dev-race"))?.profileId).toBe(winners[0]!.mine);
      });

      it("gives a user account to its first claimant and releases it", async () => {
        const accountId = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        const ref: UserAccountRef = { compartmentId: "default", userAccountId: "u-1" };
        const other: UserAccountRef = { compartmentId: "crm", userAccountId: "u-1" };
        const owners = await store.write(accountId, async (tx) => [
          await tx.claimUserAccount(accountId, ref, p1!),
          await tx.claimUserAccount(accountId, ref, p2!),
          await tx.claimUserAccount(accountId, other, p1!),
        ]);
        expect(owners).toEqual([p1, p1, p1]);
        expect(await store.reader.findProfileByUserAccount(accountId, ref)).toBe(p1);
        expect(await store.reader.findProfileByUserAccount(accountId, { ...ref, userAccountId: "u-2" })).toBeNull();
        expect(
          sorted(await store.reader.listUserAccounts(accountId, p1!), (r) => `${r.compartmentId}/${r.userAccountId}`),
        ).toEqual([other, ref]);

        await store.write(accountId, (tx) => tx.releaseUserAccount(accountId, ref));
        expect(await store.reader.findProfileByUserAccount(accountId, ref)).toBeNull();
        expect(await store.reader.listUserAccounts(accountId, p1!)).toEqual([other]);
        expect(await store.write(accountId, (tx) => tx.claimUserAccount(accountId, ref, p2!))).toBe(p2);
      });

      it("puts, replaces, lists and deletes profile documents", async () => {
        const accountId = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        const doc = (profileId: string, userAccountId: string, body: ProfileDocument["body"]): ProfileDocument => ({
          compartmentId: "default",
          userAccountId,
          profileId,
          body: { $compartment_id: "default", $user_account_id: userAccountId, ...body },
          createdAt: T0,
          updatedAt: T0,
        });
        const d1 = doc(p1!, "u-1", { plan: "gold", nested: { a: [1, 2, { b: true }] } });
        const d2 = doc(p1!, "u-2", {});
        await store.write(accountId, async (tx) => {
          await tx.putDocument(accountId, d1);
          await tx.putDocument(accountId, d2);
        });
        expect(await store.reader.getDocument(accountId, d1)).toEqual(d1);
        expect(sorted(await store.reader.listDocuments(accountId, p1!), (d) => d.userAccountId)).toEqual([d1, d2]);

        const replaced = { ...d1, profileId: p2!, body: { plan: "silver" }, updatedAt: T0 + 9 };
        await store.write(accountId, (tx) => tx.putDocument(accountId, replaced));
        expect(await store.reader.getDocument(accountId, d1)).toEqual(replaced);
        expect(await store.reader.listDocuments(accountId, p1!)).toEqual([d2]);
        expect(await store.reader.listDocuments(accountId, p2!)).toEqual([replaced]);

        expect(await store.write(accountId, (tx) => tx.deleteDocument(accountId, d2))).toBe(true);
        expect(await store.write(accountId, (tx) => tx.deleteDocument(accountId, d2))).toBe(false);
        expect(await store.reader.getDocument(accountId, d2)).toBeNull();
        expect(await store.reader.listDocuments(accountId, p1!)).toEqual([]);
      });
    });

    describe("idempotency and Charged IDs", () => {
      it("claims a record id once per account", async () => {
        const [a, b] = [await freshAccount(), await freshAccount()];
        const recordId = newId();
        expect(
          await store.write(a, async (tx) => [
            await tx.claimRecordId(a, recordId, T0),
            await tx.claimRecordId(a, recordId, T0 + 1),
          ]),
        ).toEqual([true, false]);
        expect(await store.write(a, (tx) => tx.claimRecordId(a, recordId, T0 + 2))).toBe(false);
        expect(await store.write(b, (tx) => tx.claimRecordId(b, recordId, T0))).toBe(true);
        expect(await store.write(a, (tx) => tx.claimRecordId(a, newId(), T0))).toBe(true);
      });

      it("claims a Charged ID once per profile, lists and releases them", async () => {
        const accountId = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        const claims = await store.write(accountId, async (tx) => [
          await tx.claimChargedId(accountId, p1!, "order-1"),
          await tx.claimChargedId(accountId, p1!, "order-1"),
          await tx.claimChargedId(accountId, p1!, "order-2"),
          await tx.claimChargedId(accountId, p2!, "order-1"),
        ]);
        expect(claims).toEqual([true, false, true, true]);
        expect(sorted(await store.reader.listChargedIds(accountId, p1!))).toEqual(["order-1", "order-2"]);
        expect(await store.reader.listChargedIds(accountId, p2!)).toEqual(["order-1"]);

        await store.write(accountId, (tx) => tx.releaseChargedIds(accountId, p1!));
        expect(await store.reader.listChargedIds(accountId, p1!)).toEqual([]);
        expect(await store.reader.listChargedIds(accountId, p2!)).toEqual(["order-1"]);
        expect(await store.write(accountId, (tx) => tx.claimChargedId(accountId, p1!, "order-1"))).toBe(true);
      });
    });

    describe("events", () => {
      it("assigns increasing seqs in order and keeps every field", async () => {
        const accountId = await freshAccount();
        const [p1] = await insertProfiles(accountId, blankProfile());
        const charged = event(p1!, T0 + 2, "Charged", {
          Amount: 49.9,
          "Payment Mode": "card",
          "Charged ID": "order-1",
          Items: [
            { sku: "a-1", qty: 2, gift: false },
            { sku: "b-2", qty: 1, gift: true },
          ],
        });
        const batch: NewEvent[] = [
          { ...event(p1!, T0, "App Launched", { first: true }), deviceId: "dev-1", platform: "android" },
          charged,
          event(p1!, T0 + 1, "Viewed", { page: "/é ✓", n: 0 }),
        ];
        const seqs = await store.write(accountId, (tx) => tx.insertEvents(accountId, batch));
        expect(seqs).toHaveLength(3);
        expect(seqs[0]!).toBeLessThan(seqs[1]!);
        expect(seqs[1]!).toBeLessThan(seqs[2]!);

        const stored = await store.write(accountId, (tx) => tx.listEventsBySeq(accountId, seqs));
        expect(sorted(stored, (e) => String(e.seq).padStart(20, "0"))).toEqual(
          batch.map((e, i) => ({ ...e, seq: seqs[i] })),
        );
        expect(await store.write(accountId, (tx) => tx.listEventSeqs(accountId, p1!))).toEqual(seqs);
        expect(await store.write(accountId, (tx) => tx.insertEvents(accountId, []))).toEqual([]);
      });

      it("pages a profile's timeline newest first by (ts, seq), equal ts included, without gaps or repeats", async () => {
        const accountId = await freshAccount();
        const [p1] = await insertProfiles(accountId, blankProfile());
        const times = [T0 + 100, T0 + 300, T0 + 200, T0 + 300, T0 + 100, T0 + 200, T0 + 300, T0 + 50];
        const seqs = await store.write(accountId, (tx) =>
          tx.insertEvents(
            accountId,
            times.map((ts) => event(p1!, ts)),
          ),
        );
        const all = await store.write(accountId, (tx) => tx.listEventsBySeq(accountId, seqs));
        const expected = newestFirst(all);

        for (const limit of [1, 3, 4, 8, 20]) {
          const pages = await readAllPages(store.reader, accountId, [p1!], limit);
          expect(pages.flat()).toEqual(expected);
          for (const page of pages) expect(page.length).toBeLessThanOrEqual(limit);
          // `next` only when more rows exist: a page count of exactly ceil(total / limit), never an empty last page.
          expect(pages).toHaveLength(Math.max(1, Math.ceil(expected.length / limit)));
        }
        const first = await store.reader.listEvents(accountId, [p1!], { limit: 8 });
        expect(first.next).toBeNull();
        const firstThree = await store.reader.listEvents(accountId, [p1!], { before: null, limit: 3 });
        expect(firstThree.events.map((e) => e.ts)).toEqual([T0 + 300, T0 + 300, T0 + 300]);
        expect(firstThree.events.map((e) => e.seq)).toEqual([seqs[6], seqs[3], seqs[1]]);
      });

      it("merges the timelines of several profiles and excludes the others", async () => {
        const accountId = await freshAccount();
        const [p1, p2, p3] = await insertProfiles(accountId, blankProfile(), blankProfile(), blankProfile());
        const seqs = await store.write(accountId, (tx) =>
          tx.insertEvents(accountId, [
            event(p1!, T0 + 10),
            event(p2!, T0 + 10),
            event(p3!, T0 + 15),
            event(p2!, T0 + 20),
            event(p1!, T0 + 5),
            event(p2!, T0 + 5),
            event(p1!, T0 + 30),
          ]),
        );
        const all = await store.write(accountId, (tx) => tx.listEventsBySeq(accountId, seqs));
        const expected = newestFirst(all.filter((e) => e.profileId !== p3));
        expect(expected).toHaveLength(6);
        for (const limit of [1, 2, 5, 6, 100]) {
          expect((await readAllPages(store.reader, accountId, [p1!, p2!], limit)).flat()).toEqual(expected);
        }
        expect(
          (await store.reader.listEvents(accountId, [p3!, newId()], { limit: 10 })).events.map((e) => e.seq),
        ).toEqual([seqs[2]]);
        expect(await store.reader.listEvents(accountId, [], { limit: 10 })).toEqual({ events: [], next: null });
        expect(await store.reader.listEvents(accountId, [newId()], { limit: 10 })).toEqual({ events: [], next: null });
      });

      it("reads a profile's card by id and by identity value as its single reads give it, tombstones as they are", async () => {
        const accountId = await freshAccount();
        const owner = newId();
        const tombstone = { ...blankProfile(), mergedInto: owner };
        const stranger = blankProfile();
        await insertProfiles(
          accountId,
          blankProfile(owner),
          { ...blankProfile(), orphanOf: owner },
          { ...blankProfile(), orphanOf: owner },
          { ...blankProfile(), orphanOf: stranger.id },
          tombstone,
          stranger,
        );
        await store.write(accountId, async (tx) => {
          await tx.upsertDevice(accountId, { deviceId: "dev-b", profileId: owner, pushToken: null, platform: null });
          await tx.upsertDevice(accountId, { deviceId: "dev-a", profileId: owner, pushToken: "t", platform: "web" });
          await tx.upsertDevice(accountId, {
            deviceId: "dev-s",
            profileId: stranger.id,
            pushToken: null,
            platform: null,
          });
          // Ordered by compartment, then id: here the ids alone would give the other order.
          await tx.claimUserAccount(accountId, { compartmentId: "crm", userAccountId: "u-1" }, owner);
          await tx.claimUserAccount(accountId, { compartmentId: "app", userAccountId: "u-9" }, owner);
          await tx.claimIdentity(accountId, "Email", "owner@example.com", owner);
        });
        const expected = {
          state: await store.reader.getProfile(accountId, owner),
          deviceIds: ["dev-a", "dev-b"],
          userAccounts: [
            { compartmentId: "app", userAccountId: "u-9" },
            { compartmentId: "crm", userAccountId: "u-1" },
          ],
          orphanCount: 2,
        };
        expect(await store.reader.getProfileCard(accountId, { profileId: owner })).toEqual(expected);
        const byEmail = { identity: { key: "Email" as const, value: "owner@example.com" } };
        expect(await store.reader.getProfileCard(accountId, byEmail)).toEqual(expected);
        expect(await store.reader.getProfileCard(accountId, { profileId: stranger.id })).toEqual({
          state: stranger,
          deviceIds: ["dev-s"],
          userAccounts: [],
          orphanCount: 1,
        });
        const tomb = await store.reader.getProfileCard(accountId, { profileId: tombstone.id });
        expect(tomb?.state.mergedInto).toBe(owner);
        expect(await store.reader.getProfileCard(accountId, { profileId: newId() })).toBeNull();
        expect(
          await store.reader.getProfileCard(accountId, { identity: { key: "Email", value: "nobody@example.com" } }),
        ).toBeNull();
        // Another account never sees it, by id or by identity.
        const other = await freshAccount();
        expect(await store.reader.getProfileCard(other, { profileId: owner })).toBeNull();
        expect(await store.reader.getProfileCard(other, byEmail)).toBeNull();

        // Asked for all at once (PostgreSQL's reader answers one turn's look-ups with one statement per account and
        // kind), each look-up gets the card it gets alone, repeats and misses included.
        const lookups: Array<[string, ProfileLookup]> = [
          [accountId, { profileId: stranger.id }],
          [accountId, byEmail],
          [other, byEmail],
          [accountId, { profileId: newId() }],
          [accountId, { identity: { key: "Email", value: "nobody@example.com" } }],
          [accountId, { profileId: tombstone.id }],
          [other, { profileId: owner }],
          [accountId, { profileId: owner }],
          [accountId, byEmail],
        ];
        const alone: Array<ProfileCard | null> = [];
        for (const [id, lookup] of lookups) alone.push(await store.reader.getProfileCard(id, lookup));
        expect(alone.filter((card) => card !== null)).toHaveLength(5);
        const together = await Promise.all(lookups.map(([id, lookup]) => store.reader.getProfileCard(id, lookup)));
        expect(together).toEqual(alone);

        // Inside a transaction the card shows the transaction's own writes.
        const seen = await store.write(accountId, async (tx) => {
          const fresh = blankProfile();
          await tx.insertProfile(accountId, fresh);
          await tx.claimDevice(accountId, {
            deviceId: "dev-new",
            profileId: fresh.id,
            pushToken: null,
            platform: null,
          });
          await tx.claimIdentity(accountId, "Email", "fresh@example.com", fresh.id);
          return tx.getProfileCard(accountId, { identity: { key: "Email", value: "fresh@example.com" } });
        });
        expect(seen?.deviceIds).toEqual(["dev-new"]);
        expect(seen?.orphanCount).toBe(0);
      });

      it("reads a live profile's timeline with its orphans' events, and nothing for tombstones or unknown ids", async () => {
        const accountId = await freshAccount();
        const owner = newId();
        const [o1, o2, other, tomb, quiet] = [newId(), newId(), newId(), newId(), newId()];
        await insertProfiles(
          accountId,
          blankProfile(owner),
          { ...blankProfile(o1), orphanOf: owner },
          { ...blankProfile(o2), orphanOf: owner },
          blankProfile(other),
          { ...blankProfile(tomb), mergedInto: owner },
          blankProfile(quiet),
        );
        // An orphan left pointing at the tombstone, with an event, must not make the tombstone read as live.
        const [tombOrphan] = await insertProfiles(accountId, { ...blankProfile(), orphanOf: tomb });
        const seqs = await store.write(accountId, (tx) =>
          tx.insertEvents(accountId, [
            event(tombOrphan!, T0 + 50),
            event(owner, T0 + 10),
            event(o1, T0 + 10),
            event(other, T0 + 12),
            event(o2, T0 + 30),
            event(owner, T0 + 5),
            event(tomb, T0 + 40),
            event(o1, T0 + 1),
          ]),
        );
        const all = await store.write(accountId, (tx) => tx.listEventsBySeq(accountId, seqs));
        const expected = newestFirst(all.filter((e) => [owner, o1, o2].includes(e.profileId)));
        for (const limit of [1, 2, 4, 5, 100]) {
          const pages: StoredEvent[] = [];
          let before: { ts: number; seq: number } | null = null;
          for (let guard = 0; guard < 20; guard++) {
            const page = await store.reader.timelinePage(accountId, owner, { before, limit });
            expect(page).not.toBeNull();
            expect(page!.events.length).toBeLessThanOrEqual(limit);
            pages.push(...page!.events.map(parsedTimelineEvent));
            if (page!.next === null) break;
            before = page!.next;
          }
          expect(pages).toEqual(expected);
        }
        expect(await store.reader.timelinePage(accountId, tomb, { limit: 10 })).toBeNull();
        expect(await store.reader.timelinePage(accountId, newId(), { limit: 10 })).toBeNull();
        expect(await store.reader.timelinePage(accountId, quiet, { limit: 10 })).toEqual({ events: [], next: null });
        // An orphan's own page is its own events.
        expect((await store.reader.timelinePage(accountId, o1, { limit: 10 }))?.events.map((e) => e.ts)).toEqual([
          T0 + 10,
          T0 + 1,
        ]);
        const stranger = await freshAccount();
        expect(await store.reader.timelinePage(stranger, owner, { limit: 10 })).toBeNull();

        // Asked for all at once (PostgreSQL's reader answers one turn's pages with one statement per account), each
        // page is the one it is alone, repeats, later pages, empty pages and misses included.
        const second = (await store.reader.timelinePage(accountId, owner, { limit: 2 }))!.next;
        const asked: Array<[string, string, PageOptions]> = [
          [accountId, owner, { limit: 2 }],
          [accountId, tomb, { limit: 10 }],
          [accountId, o1, { limit: 10 }],
          [stranger, owner, { limit: 10 }],
          [accountId, owner, { before: second, limit: 2 }],
          [accountId, quiet, { limit: 10 }],
          [accountId, newId(), { limit: 10 }],
          [accountId, owner, { limit: 100 }],
        ];
        const alone: Array<TimelinePage | null> = [];
        for (const [id, profile, opts] of asked) alone.push(await store.reader.timelinePage(id, profile, opts));
        expect(alone.map((page) => page?.events.length ?? null)).toEqual([2, null, 2, null, 2, 0, null, 5]);
        const together = await Promise.all(
          asked.map(([id, profile, opts]) => store.reader.timelinePage(id, profile, opts)),
        );
        expect(together).toEqual(alone);
      });

      it("passes a timeline's properties through as JSON text that reads back as the stored properties", async () => {
        const accountId = await freshAccount();
        const [owner] = await insertProfiles(accountId, blankProfile());
        const properties: NewEvent["properties"][] = [
          { Quote: 'say "hi" \\ back', Line: "a\u2028b\u2029c\n\t", Emoji: "🎉 ünïcødé", Html: "</script><b>" },
          { Int: 42, Neg: -7, Float: 0.1 + 0.2, Big: 1e21, Small: 5e-7, Zero: 0, Yes: true, No: false },
          {
            Items: [
              { sku: "a", qty: 2, gift: false },
              { sku: 'b"c', qty: 1.5, gift: true },
            ],
          },
          {},
        ];
        await store.write(accountId, (tx) =>
          tx.insertEvents(
            accountId,
            properties.map((p, i) => event(owner!, T0 + i, "Viewed", p)),
          ),
        );
        const check = (page: TimelinePage | null) => {
          expect(page!.events.map((e) => JSON.parse(e.propertiesJson))).toEqual([...properties].reverse());
          for (const e of page!.events) expect(e).not.toHaveProperty("properties");
        };
        check(await store.reader.timelinePage(accountId, owner!, { limit: 10 }));
        // Inside a transaction, with events it has not written yet.
        await store.write(accountId, async (tx) => {
          await tx.insertEvents(accountId, [event(owner!, T0 + 100, "Viewed", { Late: "yes" })]);
          const page = await tx.timelinePage(accountId, owner!, { limit: 10 });
          expect(JSON.parse(page!.events[0]!.propertiesJson)).toEqual({ Late: "yes" });
          check({ ...page!, events: page!.events.slice(1) });
        });
      });

      it("reads a page of many profiles at once", async () => {
        const accountId = await freshAccount();
        const profiles = Array.from({ length: 300 }, () => blankProfile());
        await insertProfiles(accountId, ...profiles);
        await store.write(accountId, (tx) =>
          tx.insertEvents(
            accountId,
            profiles.map((p, i) => event(p.id, T0 + i)),
          ),
        );
        const ids = profiles.map((p) => p.id);
        const page = await store.reader.listEvents(accountId, ids, { limit: 250 });
        expect(page.events).toHaveLength(250);
        expect(page.events[0]?.profileId).toBe(ids[299]);
        expect(page.next).not.toBeNull();
        const rest = await store.reader.listEvents(accountId, ids, { before: page.next, limit: 250 });
        expect(rest.events.map((e) => e.profileId)).toEqual(ids.slice(0, 50).reverse());
        expect(rest.next).toBeNull();
      });

      it("tracks the account's highest seq", async () => {
        const [a, b] = [await freshAccount(), await freshAccount()];
        expect(await store.reader.maxEventSeq(a)).toBe(0);
        const [p1] = await insertProfiles(a, blankProfile());
        const seqs = await store.write(a, (tx) => tx.insertEvents(a, [event(p1!, T0), event(p1!, T0 - 10)]));
        expect(await store.reader.maxEventSeq(a)).toBe(seqs[1]);
        expect(await store.write(a, (tx) => tx.maxEventSeq(a))).toBe(seqs[1]);
        expect(await store.reader.maxEventSeq(b)).toBe(0);
      });

      it("moves, deletes and restores events by seq, never reusing a seq", async () => {
        const accountId = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        const seqs = await store.write(accountId, (tx) =>
          tx.insertEvents(accountId, [event(p1!, T0), event(p1!, T0 + 1), event(p1!, T0 + 2), event(p2!, T0 + 3)]),
        );
        const [s0, s1, s2, s3] = seqs as [number, number, number, number];

        await store.write(accountId, (tx) => tx.moveEvents(accountId, [s1, s2], p2!));
        await store.write(accountId, async (tx) => {
          expect(await tx.listEventSeqs(accountId, p1!)).toEqual([s0]);
          expect(await tx.listEventSeqs(accountId, p2!)).toEqual([s1, s2, s3]);
          expect((await tx.listEventsBySeq(accountId, [s1, s2])).map((e) => e.profileId)).toEqual([p2, p2]);
        });

        const removed = await store.write(accountId, async (tx) => {
          const events = await tx.listEventsBySeq(accountId, [s2, s3]);
          await tx.deleteEvents(accountId, [s2, s3]);
          return events;
        });
        expect(removed.map((e) => e.seq)).toEqual([s2, s3]);
        expect(await store.write(accountId, (tx) => tx.listEventsBySeq(accountId, [s2, s3]))).toEqual([]);
        expect((await store.reader.listEvents(accountId, [p2!], { limit: 10 })).events.map((e) => e.seq)).toEqual([s1]);

        // A new event never takes the seq of a deleted one, even the newest.
        const [s4] = await store.write(accountId, (tx) => tx.insertEvents(accountId, [event(p1!, T0 + 4)]));
        expect(s4!).toBeGreaterThan(s3);

        await store.write(accountId, (tx) => tx.restoreEvents(accountId, removed));
        expect(await store.write(accountId, (tx) => tx.listEventsBySeq(accountId, [s2, s3]))).toEqual(removed);
        expect((await store.reader.listEvents(accountId, [p2!], { limit: 10 })).events.map((e) => e.seq)).toEqual([
          s3,
          s2,
          s1,
        ]);
        const [s5] = await store.write(accountId, (tx) => tx.insertEvents(accountId, [event(p1!, T0 + 5)]));
        expect(s5!).toBeGreaterThan(s4!);
        expect(await store.reader.maxEventSeq(accountId)).toBe(s5);
      });
    });

    describe("type registry", () => {
      it("keeps the first registered type per scope and path, and allows the one change", async () => {
        const accountId = await freshAccount();
        const registered = await store.write(accountId, async (tx) => [
          await tx.registerType(accountId, "profile", "Plan", "string"),
          await tx.registerType(accountId, "profile", "Plan", "number"),
          await tx.registerType(accountId, "event:Charged", "Plan", "number"),
          await tx.registerType(accountId, "profile", "address.city", "string"),
        ]);
        expect(registered).toEqual(["string", "string", "number", "string"]);

        await store.write(accountId, (tx) => tx.changeType(accountId, "profile", "Plan", "multi"));
        expect(await store.write(accountId, (tx) => tx.registerType(accountId, "profile", "Plan", "string"))).toBe(
          "multi",
        );
        expect(sorted(await store.reader.listTypes(accountId), (t) => `${t.scope} ${t.path}`)).toEqual([
          { scope: "event:Charged", path: "Plan", type: "number" },
          { scope: "profile", path: "Plan", type: "multi" },
          { scope: "profile", path: "address.city", type: "string" },
        ]);
      });

      it("lets exactly one of many racing first writers fix the type", async () => {
        const accountId = await freshAccount();
        const types = ["string", "number", "boolean", "date"] as const;
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            store.write(accountId, (tx) => tx.registerType(accountId, "profile", "Racy", types[i % types.length]!)),
          ),
        );
        const winner = (await store.reader.listTypes(accountId))[0]?.type;
        expect(winner).toBeDefined();
        expect(new Set(results)).toEqual(new Set([winner]));
      });

      it("moves the account's types revision with each committed change of a type, and only then", async () => {
        const [a, b] = [await freshAccount(), await freshAccount()];
        expect((await store.reader.revisions(a)).types).toBe(0);
        await store.write(a, async (tx) => {
          await tx.registerType(a, "profile", "Plan", "string");
          await tx.registerType(a, "profile", "Tags", "string");
        });
        // New registrations are not changes: a process that has not seen a path asks the store anyway.
        expect((await store.reader.revisions(a)).types).toBe(0);

        await store.write(a, async (tx) => {
          await tx.changeType(a, "profile", "Plan", "multi");
          // The transaction sees its own change.
          expect((await tx.revisions(a)).types).toBe(1);
        });
        expect((await store.reader.revisions(a)).types).toBe(1);

        // A change that rolls back leaves no trace; a change of a path never registered changes nothing.
        await expect(
          store.write(a, async (tx) => {
            await tx.changeType(a, "profile", "Tags", "multi");
            throw new Error("rolled back");
          }),
        ).rejects.toThrow("rolled back");
        await store.write(a, (tx) => tx.changeType(a, "profile", "Unregistered", "multi"));
        expect((await store.reader.revisions(a)).types).toBe(1);

        await store.write(a, (tx) => tx.changeType(a, "profile", "Tags", "multi"));
        expect((await store.reader.revisions(a)).types).toBe(2);
        expect((await store.reader.revisions(b)).types).toBe(0);
      });
    });

    describe("merges", () => {
      it("round-trips a merge with its snapshots and dropped events", async () => {
        const accountId = await freshAccount();
        const target = fullProfile();
        const source = { ...blankProfile(), orphanOf: null };
        const dropped: StoredEvent = {
          seq: 17,
          profileId: source.id,
          id: "evt-1",
          name: "Charged",
          ts: T0,
          properties: { Amount: 10, "Charged ID": "order-1", Items: [{ sku: "x" }] },
          deviceId: "dev-9",
          platform: "web",
        };
        const row = merge(target.id, source.id, T0 + 100, {
          eventSeqAtMerge: 42,
          target: snapshot(target, {
            devices: [{ deviceId: "dev-1", profileId: target.id, pushToken: "t", platform: "ios" }],
            userAccounts: [{ compartmentId: "default", userAccountId: "u-1" }],
            documents: [
              {
                compartmentId: "default",
                userAccountId: "u-1",
                profileId: target.id,
                body: { a: { b: 1 } },
                createdAt: T0,
                updatedAt: T0 + 1,
              },
            ],
            chargedIds: ["order-9"],
            orphans: [newId()],
          }),
          source: snapshot(source, { chargedIds: ["order-1"] }),
          movedEventSeqs: [3, 5, 8],
          droppedEvents: [dropped],
        });
        await store.write(accountId, (tx) => tx.insertMerge(accountId, row));
        const stored = await store.reader.getMerge(accountId, row.id);
        expect(stored).toEqual({ ...row, seq: expect.any(Number) });
        expect(await store.reader.getMerge(accountId, newId())).toBeNull();

        await store.write(accountId, (tx) => tx.markMergeUndone(accountId, row.id, T0 + 500));
        expect(await store.reader.getMerge(accountId, row.id)).toEqual({ ...stored, undoneAt: T0 + 500 });
      });

      it("lists the merges touching a profile in the order they were written, the last first, whatever createdAt says", async () => {
        // SEMANTICS §7 "the latest merge": createdAt is when each request began, on its own process's clock; a merge
        // that waited for a connection, or ran on a node whose clock is behind, can be written after one that says
        // it is newer. The store's seq is the order of writing.
        const accountId = await freshAccount();
        const [a, b, c, d] = [newId(), newId(), newId(), newId()];
        const m1 = merge(a, b, T0 + 3000);
        const m2 = merge(c, a, T0 + 1000);
        const m3 = merge(a, d, T0 + 2000);
        const m4 = merge(c, d, T0 + 1000);
        await store.write(accountId, async (tx) => {
          for (const m of [m1, m2]) await tx.insertMerge(accountId, m);
        });
        await store.write(accountId, async (tx) => {
          for (const m of [m3, m4]) await tx.insertMerge(accountId, m);
        });
        const touching = async (id: string) => (await store.reader.listMergesTouching(accountId, id)).map((m) => m.id);
        expect(await touching(a)).toEqual([m3.id, m2.id, m1.id]);
        expect(await touching(b)).toEqual([m1.id]);
        expect(await touching(c)).toEqual([m4.id, m2.id]);
        expect(await touching(d)).toEqual([m4.id, m3.id]);
        expect(await touching(newId())).toEqual([]);
        const seqs = (await store.reader.listMergesTouching(accountId, a)).map((m) => m.seq);
        expect(seqs).toEqual([...seqs].sort((x, y) => y - x));
        expect(await store.reader.listMergesTouching(accountId, b)).toEqual([{ ...m1, seq: expect.any(Number) }]);
      });

      it("keeps each merge's journal in append order and deletes merges touching a profile with their journals", async () => {
        const accountId = await freshAccount();
        const [a, b, c] = [newId(), newId(), newId()];
        const m1 = merge(a, b, T0);
        const m2 = merge(c, a, T0 + 1);
        const m3 = merge(c, newId(), T0 + 2);
        const records = (m: NewMerge) =>
          Array.from({ length: 12 }, (_, i) => profileRecord(`dev-${m.id}`, T0 + i, `n${i}`));
        await store.write(accountId, async (tx) => {
          for (const m of [m1, m2, m3]) await tx.insertMerge(accountId, m);
          // Interleaved appends: each journal still reads back in its own order.
          for (let i = 0; i < 12; i++) {
            for (const m of [m1, m2, m3]) await tx.appendJournal(accountId, m.id, records(m)[i]!);
          }
        });
        await store.write(accountId, async (tx) => {
          for (const m of [m1, m2, m3]) expect(await tx.listJournal(accountId, m.id)).toEqual(records(m));
          expect(await tx.listJournal(accountId, newId())).toEqual([]);
        });

        await store.write(accountId, (tx) => tx.deleteMergesTouching(accountId, b));
        expect(await store.reader.getMerge(accountId, m1.id)).toBeNull();
        expect((await store.reader.listMergesTouching(accountId, a)).map((m) => m.id)).toEqual([m2.id]);
        await store.write(accountId, async (tx) => {
          expect(await tx.listJournal(accountId, m1.id)).toEqual([]);
          expect(await tx.listJournal(accountId, m2.id)).toEqual(records(m2));
        });

        await store.write(accountId, (tx) => tx.deleteMergesTouching(accountId, a));
        expect(await store.reader.getMerge(accountId, m2.id)).toBeNull();
        expect(await store.reader.getMerge(accountId, m3.id)).toEqual({ ...m3, seq: expect.any(Number) });
        await store.write(accountId, async (tx) => {
          expect(await tx.listJournal(accountId, m2.id)).toEqual([]);
          expect(await tx.listJournal(accountId, m3.id)).toEqual(records(m3));
        });
      });
    });

    describe("import failure reports", () => {
      it("finds the profiles refused rows' handles lead to, by key, device, user account and email hash", async () => {
        const accountId = await freshAccount();
        const other = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        const [q] = await insertProfiles(other, blankProfile());
        await store.write(accountId, async (tx) => {
          await tx.claimIdentity(accountId, "Email", "ada@example.com", p1!);
          await tx.claimIdentity(accountId, "Identity", "42", p2!);
          await tx.upsertDevice(accountId, { deviceId: "dev-1", profileId: p2!, pushToken: null, platform: null });
          await tx.claimUserAccount(accountId, { compartmentId: "c1", userAccountId: "u1" }, p1!);
        });
        await store.write(other, (tx) => tx.claimIdentity(other, "Email", "q@example.com", q!));
        await store.imports.refreshEmailHashes(accountId);
        const hash = createHash("sha256").update("ada@example.com").digest("hex");
        const owners = await store.imports.profilesNamedBy(accountId, [
          { kind: "Email", value: "ada@example.com" },
          { kind: "Email", value: "ada@example.com" },
          { kind: "Identity", value: "ada@example.com" },
          { kind: "Identity", value: "42" },
          { kind: "deviceId", value: "dev-1" },
          { kind: "userAccount", value: JSON.stringify(["c1", "u1"]) },
          { kind: "userAccount", value: JSON.stringify(["c1", "u2"]) },
          { kind: "userAccount", value: "not json" },
          { kind: "email_hash", value: hash },
          { kind: "email_hash", value: "0".repeat(64) },
          { kind: "profileId", value: p1! },
          { kind: "Email", value: "q@example.com" },
          { kind: "Email", value: "nul\u0000@example.com" },
          { kind: "deviceId", value: "nul\u0000" },
        ]);
        const byKey = (o: { kind: string; value: string }) => `${o.kind} ${o.value}`;
        expect([...owners].sort((a, b) => byKey(a).localeCompare(byKey(b)))).toEqual(
          [
            { kind: "Email", value: "ada@example.com", profileId: p1 },
            { kind: "Identity", value: "42", profileId: p2 },
            { kind: "deviceId", value: "dev-1", profileId: p2 },
            { kind: "userAccount", value: JSON.stringify(["c1", "u1"]), profileId: p1 },
            { kind: "email_hash", value: hash, profileId: p1 },
          ].sort((a, b) => byKey(a).localeCompare(byKey(b))),
        );
        expect(await store.imports.profilesNamedBy(accountId, [])).toEqual([]);
      });
    });

    describe("deleting a profile", () => {
      /** A profile with something in every table a profile owns rows in. */
      async function populate(accountId: string, id: string, tag: string) {
        const doc: ProfileDocument = {
          compartmentId: "default",
          userAccountId: `u-${tag}`,
          profileId: id,
          body: { tag },
          createdAt: T0,
          updatedAt: T0,
        };
        return store.write(accountId, async (tx) => {
          await tx.insertProfile(accountId, fullProfile(id));
          await tx.claimIdentity(accountId, "Email", `${tag}@example.com`, id);
          await tx.claimIdentity(accountId, "Identity", tag, id);
          await tx.upsertDevice(accountId, { deviceId: `${tag}-d1`, profileId: id, pushToken: null, platform: null });
          await tx.upsertDevice(accountId, { deviceId: `${tag}-d2`, profileId: id, pushToken: "t", platform: "ios" });
          await tx.claimUserAccount(accountId, doc, id);
          await tx.putDocument(accountId, doc);
          await tx.claimChargedId(accountId, id, `${tag}-order`);
          const seqs = await tx.insertEvents(accountId, [event(id, T0), event(id, T0 + 1), event(id, T0 + 2)]);
          return { doc, seqs };
        });
      }

      it("removes everything the profile owns, counts it, and leaves other profiles alone", async () => {
        const accountId = await freshAccount();
        const [p, q] = [newId(), newId()];
        const { doc, seqs } = await populate(accountId, p, "p");
        const kept = await populate(accountId, q, "q");
        const m = merge(q, p, T0);
        await store.write(accountId, async (tx) => {
          await tx.insertMerge(accountId, m);
          await tx.appendJournal(accountId, m.id, profileRecord("p-d1", T0, "x"));
        });

        const counts = await store.write(accountId, async (tx) => {
          const deleted = await tx.deleteProfileData(accountId, p);
          await tx.deleteMergesTouching(accountId, p);
          return deleted;
        });
        expect(counts).toEqual({ profiles: 1, events: 3, identities: 2, devices: 2 });

        const r = store.reader;
        expect(await r.getProfile(accountId, p)).toBeNull();
        expect(await r.findProfileByIdentity(accountId, "Email", "p@example.com")).toBeNull();
        expect(await r.findProfileByIdentity(accountId, "Identity", "p")).toBeNull();
        expect(await r.findDevice(accountId, "p-d1")).toBeNull();
        expect(await r.listDevices(accountId, p)).toEqual([]);
        expect(await r.findProfileByUserAccount(accountId, doc)).toBeNull();
        expect(await r.listUserAccounts(accountId, p)).toEqual([]);
        expect(await r.getDocument(accountId, doc)).toBeNull();
        expect(await r.listDocuments(accountId, p)).toEqual([]);
        expect(await r.listChargedIds(accountId, p)).toEqual([]);
        expect(await r.listEvents(accountId, [p], { limit: 10 })).toEqual({ events: [], next: null });
        expect(await r.listMergesTouching(accountId, p)).toEqual([]);
        expect(await r.getMerge(accountId, m.id)).toBeNull();
        await store.write(accountId, async (tx) => {
          expect(await tx.listEventsBySeq(accountId, seqs)).toEqual([]);
          expect(await tx.listEventSeqs(accountId, p)).toEqual([]);
          expect(await tx.listJournal(accountId, m.id)).toEqual([]);
        });

        expect(await r.getProfile(accountId, q)).toEqual(fullProfile(q));
        expect(await r.findProfileByIdentity(accountId, "Email", "q@example.com")).toBe(q);
        expect(await r.listDevices(accountId, q)).toHaveLength(2);
        expect(await r.getDocument(accountId, kept.doc)).toEqual(kept.doc);
        expect(await r.listUserAccounts(accountId, q)).toEqual([{ compartmentId: "default", userAccountId: "u-q" }]);
        expect(await r.listChargedIds(accountId, q)).toEqual(["q-order"]);
        expect((await r.listEvents(accountId, [q], { limit: 10 })).events).toHaveLength(3);
      });

      it("counts nothing for an unknown profile", async () => {
        const accountId = await freshAccount();
        expect(await store.write(accountId, (tx) => tx.deleteProfileData(accountId, newId()))).toEqual({
          profiles: 0,
          events: 0,
          identities: 0,
          devices: 0,
        });
      });
    });

    describe("snapshots", () => {
      it("reads the store as it was at its first read, whatever commits meanwhile, and writers do not wait", async () => {
        const accountId = await freshAccount();
        const p = fullProfile();
        const [target, source] = [blankProfile(), blankProfile()];
        const m = merge(target.id, source.id, T0);
        const journalled = profileRecord("dev-j", T0 + 1, "first");
        await store.write(accountId, async (tx) => {
          await tx.insertProfile(accountId, p);
          await tx.insertEvents(accountId, [event(p.id, T0)]);
          await tx.insertMerge(accountId, m);
          await tx.appendJournal(accountId, m.id, journalled);
        });
        const seen = await store.snapshot(accountId, async (r) => {
          const before = await r.getProfile(accountId, p.id);
          // Committed while the snapshot is open: a writer does not wait for it.
          await store.write(accountId, async (tx) => {
            await tx.insertEvents(accountId, [event(p.id, T0 + 1)]);
            await tx.updateProfile(accountId, { ...p, bucket: p.bucket + 1 });
            await tx.insertProfile(accountId, { ...blankProfile(), orphanOf: p.id });
            await tx.appendJournal(accountId, m.id, profileRecord("dev-j", T0 + 2, "second"));
          });
          return {
            before,
            after: await r.getProfile(accountId, p.id),
            events: (await r.listEvents(accountId, [p.id], { limit: 10 })).events.length,
            orphans: await r.listOrphans(accountId, p.id),
            journal: await r.listJournal(accountId, m.id),
          };
        });
        expect(seen.after).toEqual(seen.before);
        expect(seen.events).toBe(1);
        expect(seen.orphans).toEqual([]);
        expect(seen.journal).toEqual([journalled]);
        // Outside it, every write is there.
        expect((await store.reader.getProfile(accountId, p.id))?.bucket).toBe(p.bucket + 1);
        expect((await store.reader.listEvents(accountId, [p.id], { limit: 10 })).events).toHaveLength(2);
      });

      it("serves the account it was opened for, and only while its function runs", async () => {
        const [a, b] = [await freshAccount(), await freshAccount()];
        let kept: SnapshotReader | undefined;
        expect(
          await store.snapshot(a, async (r) => {
            kept = r;
            await expect(r.getProfile(b, newId())).rejects.toThrow();
            return r.getProfile(a, newId());
          }),
        ).toBeNull();
        await expect(kept!.getProfile(a, newId())).rejects.toThrow();
        // A function that throws ends the snapshot with its error, and the store goes on.
        await expect(store.snapshot(a, async () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
        expect(await store.snapshot(a, (r) => r.listOrphans(a, newId()))).toEqual([]);
      });
    });

    describe("transactions", () => {
      it("commits and returns the function's result", async () => {
        const accountId = await freshAccount();
        const state = blankProfile();
        const result = await store.write(accountId, async (tx) => {
          await tx.insertProfile(accountId, state);
          return "done";
        });
        expect(result).toBe("done");
        expect(await store.reader.getProfile(accountId, state.id)).toEqual(state);
      });

      it("rolls back everything when the function throws, and rethrows the same error", async () => {
        const accountId = await freshAccount();
        const [p0] = await insertProfiles(accountId, blankProfile());
        await store.write(accountId, (tx) => tx.insertEvents(accountId, [event(p0!, T0)]));
        const seqBefore = await store.reader.maxEventSeq(accountId);
        const state = blankProfile();
        const failure = new Error("boom");
        const attempt = store.write(accountId, async (tx) => {
          await tx.insertProfile(accountId, state);
          await tx.claimIdentity(accountId, "Email", "rollback@example.com", state.id);
          await tx.upsertDevice(accountId, { deviceId: "rb-1", profileId: state.id, pushToken: null, platform: null });
          await tx.insertEvents(accountId, [event(state.id, T0)]);
          await tx.claimRecordId(accountId, "record-rb", T0);
          await tx.updateProfile(accountId, { ...blankProfile(p0), bucket: 9 });
          throw failure;
        });
        await expect(attempt).rejects.toBe(failure);

        expect(await store.reader.getProfile(accountId, state.id)).toBeNull();
        expect(await store.reader.getProfile(accountId, p0!)).toEqual(blankProfile(p0));
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "rollback@example.com")).toBeNull();
        expect(await store.reader.findDevice(accountId, "rb-1")).toBeNull();
        expect((await store.reader.listEvents(accountId, [state.id], { limit: 5 })).events).toEqual([]);
        expect(await store.reader.maxEventSeq(accountId)).toBe(seqBefore);
        expect(await store.write(accountId, (tx) => tx.claimRecordId(accountId, "record-rb", T0))).toBe(true);
      });

      it("undoes a failed savepoint while the outer transaction commits", async () => {
        const accountId = await freshAccount();
        const [kept1, lost, kept2] = [blankProfile(), blankProfile(), blankProfile()];
        const failure = new Error("bad record");
        const outcome = await store.write(accountId, async (tx) => {
          await tx.insertProfile(accountId, kept1);
          const good = await tx.savepoint(async () => {
            await tx.claimIdentity(accountId, "Email", "kept@example.com", kept1.id);
            return "applied";
          });
          const bad = await tx
            .savepoint(async () => {
              await tx.insertProfile(accountId, lost);
              await tx.claimIdentity(accountId, "Email", "lost@example.com", lost.id);
              await tx.insertEvents(accountId, [event(lost.id, T0)]);
              await tx.updateProfile(accountId, { ...kept1, bucket: 5 });
              throw failure;
            })
            .catch((error: unknown) => error);
          // Inside the transaction, the failed record is already gone.
          expect(await tx.getProfile(accountId, lost.id)).toBeNull();
          await tx.insertProfile(accountId, kept2);
          return { good, bad };
        });
        expect(outcome).toEqual({ good: "applied", bad: failure });
        expect(await store.reader.getProfile(accountId, kept1.id)).toEqual(kept1);
        expect(await store.reader.getProfile(accountId, kept2.id)).toEqual(kept2);
        expect(await store.reader.getProfile(accountId, lost.id)).toBeNull();
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "kept@example.com")).toBe(kept1.id);
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "lost@example.com")).toBeNull();
        expect((await store.reader.listEvents(accountId, [lost.id], { limit: 5 })).events).toEqual([]);
      });

      it("nests savepoints: an inner failure undoes only the inner writes", async () => {
        const accountId = await freshAccount();
        const [outer, inner, after] = [blankProfile(), blankProfile(), blankProfile()];
        await store.write(accountId, (tx) =>
          tx.savepoint(async () => {
            await tx.insertProfile(accountId, outer);
            await tx
              .savepoint(async () => {
                await tx.insertProfile(accountId, inner);
                await tx.savepoint(async () => tx.claimIdentity(accountId, "Email", "inner@example.com", inner.id));
                throw new Error("inner fails");
              })
              .catch(() => undefined);
            await tx.savepoint(async () => tx.insertProfile(accountId, after));
          }),
        );
        expect(await store.reader.getProfile(accountId, outer.id)).toEqual(outer);
        expect(await store.reader.getProfile(accountId, after.id)).toEqual(after);
        expect(await store.reader.getProfile(accountId, inner.id)).toBeNull();
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "inner@example.com")).toBeNull();
      });

      it("refuses a transaction once its write() has finished, and other accounts inside it", async () => {
        const [a, b] = [await freshAccount(), await freshAccount()];
        let leaked: StoreTx | undefined;
        await store.write(a, async (tx) => {
          leaked = tx;
          await expect(tx.insertProfile(b, blankProfile())).rejects.toThrow();
          await expect(tx.getProfile(b, newId())).rejects.toThrow();
        });
        expect(leaked).toBeDefined();
        await expect(leaked!.insertProfile(a, blankProfile())).rejects.toThrow();
        await expect(leaked!.getProfile(a, newId())).rejects.toThrow();
      });
    });

    describe("concurrency", () => {
      it("loses no update when 200 writes lock, increment and save the same profile", async () => {
        const accountId = await freshAccount();
        const state: ProfileState = { ...blankProfile(), props: { n: { v: 0, t: "number", ts: T0, counter: true } } };
        await insertProfiles(accountId, state);
        await Promise.all(
          Array.from({ length: 200 }, () =>
            store.write(accountId, async (tx) => {
              const current = await tx.lockProfile(accountId, state.id);
              if (current === null) throw new Error("profile vanished");
              const n = current.props.n?.v;
              if (typeof n !== "number") throw new Error("n is not a number");
              await tx.updateProfile(accountId, {
                ...current,
                props: { ...current.props, n: { v: n + 1, t: "number", ts: T0, counter: true } },
              });
            }),
          ),
        );
        expect((await store.reader.getProfile(accountId, state.id))?.props.n?.v).toBe(200);
      });

      it("gives a contested identity to exactly one of 50 new profiles", async () => {
        const accountId = await freshAccount();
        const results = await Promise.all(
          Array.from({ length: 50 }, () =>
            store.write(accountId, async (tx) => {
              const mine = blankProfile();
              await tx.insertProfile(accountId, mine);
              return { mine: mine.id, owner: await tx.claimIdentity(accountId, "Email", "race@example.com", mine.id) };
            }),
          ),
        );
        const winners = results.filter((r) => r.owner === r.mine);
        expect(winners).toHaveLength(1);
        expect(new Set(results.map((r) => r.owner))).toEqual(new Set([winners[0]!.mine]));
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "race@example.com")).toBe(winners[0]!.mine);
      });

      it("accepts a racing record id exactly once", async () => {
        const accountId = await freshAccount();
        const claims = await Promise.all(
          Array.from({ length: 50 }, () => store.write(accountId, (tx) => tx.claimRecordId(accountId, "same-id", T0))),
        );
        expect(claims.filter(Boolean)).toHaveLength(1);
      });
    });

    describe("batched ingest: prefetch, rows written behind, lazy savepoints", () => {
      /** StoreTx.prefetch is optional: an adapter without it answers every look-up itself. */
      const prefetch = (tx: StoreTx, accountId: string, handles: BatchHandles) => tx.prefetch?.(accountId, handles);
      const device = (deviceId: string, profileId: string, pushToken: string | null = null): DeviceRow => ({
        deviceId,
        profileId,
        pushToken,
        platform: null,
      });

      it("answers look-ups after a prefetch as without one, following the transaction's own writes", async () => {
        const accountId = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        await store.write(accountId, async (tx) => {
          await tx.upsertDevice(accountId, device("pf-d1", p1!, "tok"));
          await tx.claimIdentity(accountId, "Email", "pf-a@example.com", p1!);
        });
        const p3 = blankProfile();
        await store.write(accountId, async (tx) => {
          await prefetch(tx, accountId, {
            deviceIds: ["pf-d1", "pf-new", "pf-d1"],
            identities: [
              { key: "Email", value: "pf-a@example.com" },
              { key: "Email", value: "pf-new@example.com" },
            ],
            profileIds: [p2!, newId()],
          });
          expect(await tx.findDevice(accountId, "pf-d1")).toEqual(device("pf-d1", p1!, "tok"));
          expect(await tx.findDevice(accountId, "pf-new")).toBeNull();
          expect(await tx.findProfileByIdentity(accountId, "Email", "pf-a@example.com")).toBe(p1);
          expect(await tx.findProfileByIdentity(accountId, "Email", "pf-new@example.com")).toBeNull();
          expect(await tx.lockProfile(accountId, p2!)).toEqual(blankProfile(p2));

          // Claims, repoints and deletes of devices.
          expect(await tx.claimDevice(accountId, device("pf-new", p2!))).toBe(p2);
          expect(await tx.findDevice(accountId, "pf-new")).toEqual(device("pf-new", p2!));
          expect(await tx.claimDevice(accountId, device("pf-new", p1!))).toBe(p2);
          expect(await tx.findDevice(accountId, "pf-new")).toEqual(device("pf-new", p2!));
          await tx.upsertDevice(accountId, { ...device("pf-d1", p2!, null), platform: "ios" });
          expect(await tx.findDevice(accountId, "pf-d1")).toEqual({ ...device("pf-d1", p2!), platform: "ios" });
          await tx.deleteDevice(accountId, "pf-d1");
          expect(await tx.findDevice(accountId, "pf-d1")).toBeNull();

          // Claims and releases of identity values.
          expect(await tx.claimIdentity(accountId, "Email", "pf-new@example.com", p2!)).toBe(p2);
          expect(await tx.findProfileByIdentity(accountId, "Email", "pf-new@example.com")).toBe(p2);
          await tx.releaseIdentity(accountId, "Email", "pf-a@example.com", p2!);
          expect(await tx.findProfileByIdentity(accountId, "Email", "pf-a@example.com")).toBe(p1);
          await tx.releaseIdentity(accountId, "Email", "pf-a@example.com", p1!);
          expect(await tx.findProfileByIdentity(accountId, "Email", "pf-a@example.com")).toBeNull();

          // Profile writes: a lock after them reads what they wrote.
          const p1Locked = await tx.lockProfile(accountId, p1!);
          expect(p1Locked).toEqual(blankProfile(p1));
          await tx.updateProfile(accountId, { ...p1Locked!, bucket: 7 });
          expect((await tx.lockProfile(accountId, p1!))?.bucket).toBe(7);
          expect((await tx.getProfile(accountId, p1!))?.bucket).toBe(7);
          await tx.insertProfile(accountId, p3);
          expect(await tx.lockProfile(accountId, p3.id)).toEqual(p3);
          await tx.updateProfile(accountId, { ...blankProfile(p2), mergedInto: p3.id });
          expect(await tx.listTombstones(accountId, p3.id)).toEqual([p2]);

          // Deleting a profile takes its handles along.
          await tx.deleteProfileData(accountId, p2!);
          expect(await tx.findDevice(accountId, "pf-new")).toBeNull();
          expect(await tx.findProfileByIdentity(accountId, "Email", "pf-new@example.com")).toBeNull();
          expect(await tx.lockProfile(accountId, p2!)).toBeNull();
        });
        const r = store.reader;
        expect(await r.findDevice(accountId, "pf-d1")).toBeNull();
        expect(await r.findDevice(accountId, "pf-new")).toBeNull();
        expect(await r.findProfileByIdentity(accountId, "Email", "pf-a@example.com")).toBeNull();
        expect(await r.findProfileByIdentity(accountId, "Email", "pf-new@example.com")).toBeNull();
        expect((await r.getProfile(accountId, p1!))?.bucket).toBe(7);
        expect(await r.getProfile(accountId, p2!)).toBeNull();
        expect(await r.getProfile(accountId, p3.id)).toEqual(p3);
      });

      it("answers record id claims after a prefetch as without one, and a rolled-back claim frees its id", async () => {
        const accountId = await freshAccount();
        expect(await store.write(accountId, (tx) => tx.claimRecordId(accountId, "pf-r-stored", T0))).toBe(true);
        const handles = (recordIds: string[]): BatchHandles => ({
          deviceIds: [],
          identities: [],
          profileIds: [],
          recordIds,
        });
        await store.write(accountId, async (tx) => {
          await prefetch(
            tx,
            accountId,
            handles(["pf-r-stored", "pf-r-twice", "pf-r-twice", "pf-r-failed", "pf-r-nest"]),
          );
          // Stored before the transaction: a duplicate.
          expect(await tx.savepoint(() => tx.claimRecordId(accountId, "pf-r-stored", T0))).toBe(false);
          // The same id twice in one transaction: the first claim wins.
          expect(await tx.savepoint(() => tx.claimRecordId(accountId, "pf-r-twice", T0))).toBe(true);
          expect(await tx.savepoint(() => tx.claimRecordId(accountId, "pf-r-twice", T0))).toBe(false);
          // A record that fails after its claim leaves the id free, also when an outer savepoint rolls back.
          await expect(
            tx.savepoint(async () => {
              expect(await tx.claimRecordId(accountId, "pf-r-failed", T0)).toBe(true);
              await tx.insertProfile(accountId, blankProfile());
              throw new Error("the record fails after its claim");
            }),
          ).rejects.toThrow("the record fails after its claim");
          await expect(
            tx.savepoint(async () => {
              await tx.savepoint(() => tx.claimRecordId(accountId, "pf-r-nest", T0));
              await tx.listTombstones(accountId, newId());
              throw new Error("the outer record fails");
            }),
          ).rejects.toThrow("the outer record fails");
          expect(await tx.savepoint(() => tx.claimRecordId(accountId, "pf-r-nest", T0))).toBe(true);
          // An id the prefetch did not name is claimed as usual.
          expect(await tx.savepoint(() => tx.claimRecordId(accountId, "pf-r-unnamed", T0))).toBe(true);
          expect(await tx.savepoint(() => tx.claimRecordId(accountId, "pf-r-unnamed", T0))).toBe(false);
        });
        const claimAgain = (recordId: string) =>
          store.write(accountId, async (tx) => {
            await prefetch(tx, accountId, handles([recordId]));
            return tx.savepoint(() => tx.claimRecordId(accountId, recordId, T0));
          });
        expect(await claimAgain("pf-r-stored")).toBe(false);
        expect(await claimAgain("pf-r-twice")).toBe(false);
        expect(await claimAgain("pf-r-unnamed")).toBe(false);
        expect(await claimAgain("pf-r-nest")).toBe(false);
        expect(await claimAgain("pf-r-failed")).toBe(true);
        expect(await claimAgain("pf-r-failed")).toBe(false);
      });

      it("keeps a prefetch truthful across a merge's moves of devices, identities and events", async () => {
        const accountId = await freshAccount();
        const [target, source] = await insertProfiles(accountId, blankProfile(), blankProfile());
        await store.write(accountId, async (tx) => {
          await tx.upsertDevice(accountId, device("pf-m-dev", source!));
          await tx.claimIdentity(accountId, "Email", "pf-m@example.com", source!);
        });
        const moved = await store.write(accountId, async (tx) => {
          await prefetch(tx, accountId, {
            deviceIds: ["pf-m-dev"],
            identities: [{ key: "Email", value: "pf-m@example.com" }],
            profileIds: [target!],
          });
          const seqs = await tx.insertEvents(accountId, [event(source!, T0), event(source!, T0 + 1)]);
          // What a merge does to the source's handles and events (pipeline/merge.ts).
          await tx.upsertDevice(accountId, device("pf-m-dev", target!));
          await tx.releaseIdentity(accountId, "Email", "pf-m@example.com", source!);
          await tx.claimIdentity(accountId, "Email", "pf-m@example.com", target!);
          expect(await tx.listEventSeqs(accountId, source!)).toEqual(seqs);
          await tx.moveEvents(accountId, seqs, target!);
          await tx.updateProfile(accountId, { ...blankProfile(source), mergedInto: target! });
          expect(await tx.findDevice(accountId, "pf-m-dev")).toEqual(device("pf-m-dev", target!));
          expect(await tx.findProfileByIdentity(accountId, "Email", "pf-m@example.com")).toBe(target);
          expect(await tx.listEventSeqs(accountId, target!)).toEqual(seqs);
          expect((await tx.lockProfile(accountId, source!))?.mergedInto).toBe(target);
          return seqs;
        });
        expect((await store.reader.findDevice(accountId, "pf-m-dev"))?.profileId).toBe(target);
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "pf-m@example.com")).toBe(target);
        const { events } = await store.reader.listEvents(accountId, [target!], { limit: 10 });
        expect(events.map((e) => e.seq)).toEqual([...moved].reverse());
      });

      it("rolls back a record that fails after writing, events included, and keeps the records before and after it", async () => {
        const accountId = await freshAccount();
        const [p1] = await insertProfiles(accountId, blankProfile());
        await store.write(accountId, (tx) => tx.upsertDevice(accountId, device("pf-r-dev", p1!)));
        const failure = new Error("bad record");
        const outcome = await store.write(accountId, async (tx) => {
          await prefetch(tx, accountId, {
            deviceIds: ["pf-r-dev", "pf-r-new"],
            identities: [{ key: "Email", value: "pf-r@example.com" }],
            profileIds: [],
          });
          const first = await tx.savepoint(async () => {
            const owner = (await tx.findDevice(accountId, "pf-r-dev"))!.profileId;
            const state = (await tx.lockProfile(accountId, owner))!;
            const seqs = await tx.insertEvents(accountId, [event(owner, T0, "First")]);
            await tx.updateProfile(accountId, { ...state, bucket: 1 });
            return seqs;
          });
          const bad = await tx
            .savepoint(async () => {
              await tx.insertEvents(accountId, [event(p1!, T0 + 1, "Lost")]);
              expect(await tx.claimDevice(accountId, device("pf-r-new", p1!))).toBe(p1);
              expect(await tx.claimIdentity(accountId, "Email", "pf-r@example.com", p1!)).toBe(p1);
              await tx.upsertDevice(accountId, device("pf-r-dev", newId()));
              await tx.updateProfile(accountId, { ...blankProfile(p1), bucket: 99 });
              await tx.insertEvents(accountId, [event(p1!, T0 + 2, "Lost")]);
              throw failure;
            })
            .catch((error: unknown) => error);
          // Inside the transaction the failed record is gone, look-ups and events included.
          expect(await tx.findDevice(accountId, "pf-r-new")).toBeNull();
          expect(await tx.findDevice(accountId, "pf-r-dev")).toEqual(device("pf-r-dev", p1!));
          expect(await tx.findProfileByIdentity(accountId, "Email", "pf-r@example.com")).toBeNull();
          expect((await tx.lockProfile(accountId, p1!))?.bucket).toBe(1);
          const after = await tx.savepoint(() => tx.insertEvents(accountId, [event(p1!, T0 + 3, "After")]));
          const seen = await tx.listEvents(accountId, [p1!], { limit: 10 });
          return { first, bad, after, seen: seen.events.map((e) => e.name) };
        });
        expect(outcome.bad).toBe(failure);
        expect(outcome.seen).toEqual(["After", "First"]);
        expect(outcome.after[0]!).toBeGreaterThan(outcome.first[0]!);
        const { events } = await store.reader.listEvents(accountId, [p1!], { limit: 10 });
        expect(events.map((e) => e.name)).toEqual(["After", "First"]);
        expect(await store.reader.maxEventSeq(accountId)).toBe(outcome.after[0]);
        expect((await store.reader.getProfile(accountId, p1!))?.bucket).toBe(1);
        expect(await store.reader.findDevice(accountId, "pf-r-new")).toBeNull();
        expect(await store.reader.findDevice(accountId, "pf-r-dev")).toEqual(device("pf-r-dev", p1!));
        expect(await store.reader.findProfileByIdentity(accountId, "Email", "pf-r@example.com")).toBeNull();
      });

      it("keeps earlier records when one fails before writing anything, or after only adding events", async () => {
        const accountId = await freshAccount();
        const [p1] = await insertProfiles(accountId, blankProfile());
        const seqs = await store.write(accountId, async (tx) => {
          await prefetch(tx, accountId, { deviceIds: [], identities: [], profileIds: [p1!] });
          const kept = await tx.savepoint(async () => {
            const state = (await tx.lockProfile(accountId, p1!))!;
            await tx.updateProfile(accountId, { ...state, bucket: 3 });
            return tx.insertEvents(accountId, [event(p1!, T0, "Kept")]);
          });
          await expect(
            tx.savepoint(async () => {
              await tx.findDevice(accountId, "pf-nothing");
              await tx.lockProfile(accountId, p1!);
              throw new Error("refused before writing");
            }),
          ).rejects.toThrow("refused before writing");
          await expect(
            tx.savepoint(async () => {
              await tx.insertEvents(accountId, [event(p1!, T0 + 1, "Dropped")]);
              throw new Error("refused after adding an event");
            }),
          ).rejects.toThrow("refused after adding an event");
          expect(await tx.maxEventSeq(accountId)).toBe(kept[0]);
          return kept;
        });
        const { events } = await store.reader.listEvents(accountId, [p1!], { limit: 10 });
        expect(events.map((e) => e.name)).toEqual(["Kept"]);
        expect(await store.reader.maxEventSeq(accountId)).toBe(seqs[0]);
        expect((await store.reader.getProfile(accountId, p1!))?.bucket).toBe(3);
      });

      it("reads back events still written behind, in order, inside the transaction that added them", async () => {
        const accountId = await freshAccount();
        const [p1, p2] = await insertProfiles(accountId, blankProfile(), blankProfile());
        const [before] = await store.write(accountId, (tx) => tx.insertEvents(accountId, [event(p1!, T0)]));
        await store.write(accountId, async (tx) => {
          const seqs = await tx.insertEvents(accountId, [event(p1!, T0 + 1), event(p2!, T0 + 2), event(p1!, T0 + 3)]);
          expect(seqs[0]!).toBeGreaterThan(before!);
          expect(seqs[1]!).toBeGreaterThan(seqs[0]!);
          expect(seqs[2]!).toBeGreaterThan(seqs[1]!);
          expect(await tx.maxEventSeq(accountId)).toBe(seqs[2]);
          expect((await tx.listEventsBySeq(accountId, seqs)).map((e) => e.seq)).toEqual(seqs);
          expect(await tx.listEventSeqs(accountId, p1!)).toEqual([before, seqs[0], seqs[2]]);
          await tx.deleteEvents(accountId, [seqs[1]!]);
          expect(await tx.listEventSeqs(accountId, p2!)).toEqual([]);
        });
        expect(await store.reader.maxEventSeq(accountId)).toBeGreaterThan(before!);
        expect((await store.reader.listEvents(accountId, [p2!], { limit: 5 })).events).toEqual([]);
      });

      it("loses no increment when 30 prefetching writers of one device's profile race", async () => {
        const accountId = await freshAccount();
        const state: ProfileState = { ...blankProfile(), props: { n: { v: 0, t: "number", ts: T0, counter: true } } };
        await insertProfiles(accountId, state);
        await store.write(accountId, (tx) => tx.upsertDevice(accountId, device("pf-hot", state.id)));
        await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            store.write(accountId, async (tx) => {
              await prefetch(tx, accountId, { deviceIds: ["pf-hot"], identities: [], profileIds: [] });
              await tx.savepoint(async () => {
                const owner = (await tx.findDevice(accountId, "pf-hot"))!.profileId;
                const current = (await tx.lockProfile(accountId, owner))!;
                const n = current.props.n?.v as number;
                await tx.insertEvents(accountId, [event(owner, T0 + i)]);
                await tx.updateProfile(accountId, {
                  ...current,
                  props: { ...current.props, n: { v: n + 1, t: "number", ts: T0, counter: true } },
                });
              });
            }),
          ),
        );
        expect((await store.reader.getProfile(accountId, state.id))?.props.n?.v).toBe(30);
        expect((await store.reader.listEvents(accountId, [state.id], { limit: 100 })).events).toHaveLength(30);
      });

      it("gives a new identity value raced by 20 prefetching logins to exactly one new profile", async () => {
        const accountId = await freshAccount();
        const results = await Promise.all(
          Array.from({ length: 20 }, () =>
            store.write(accountId, async (tx) => {
              const handle = { key: "Email" as const, value: "pf-race@example.com" };
              await prefetch(tx, accountId, { deviceIds: [], identities: [handle], profileIds: [] });
              const owner = await tx.findProfileByIdentity(accountId, handle.key, handle.value);
              if (owner !== null) return { created: null, owner };
              const mine = blankProfile();
              await tx.insertProfile(accountId, mine);
              return { created: mine.id, owner: await tx.claimIdentity(accountId, handle.key, handle.value, mine.id) };
            }),
          ),
        );
        // A look-up that found the value free holds it: the others wait, then find the first one's profile.
        const created = results.filter((r) => r.created !== null);
        expect(created).toHaveLength(1);
        expect(new Set(results.map((r) => r.owner))).toEqual(new Set([created[0]!.created]));
      });

      it("shows a record its new profile and the handles it claimed after a prefetch, and a failed record none of its", async () => {
        const accountId = await freshAccount();
        const [kept, lost] = [blankProfile(), blankProfile()];
        const withPlan = (state: ProfileState, plan: string): ProfileState => ({
          ...state,
          props: { ...state.props, Plan: { v: plan, t: "string", ts: T0 } },
        });
        await store.write(accountId, async (tx) => {
          await prefetch(tx, accountId, {
            deviceIds: ["wb-d1", "wb-d2"],
            identities: [
              { key: "Email", value: "wb-1@example.com" },
              { key: "Email", value: "wb-2@example.com" },
            ],
            profileIds: [],
          });
          await tx.savepoint(async () => {
            await tx.insertProfile(accountId, kept);
            expect(await tx.claimIdentity(accountId, "Email", "wb-1@example.com", kept.id)).toBe(kept.id);
            expect(await tx.claimDevice(accountId, device("wb-d1", kept.id))).toBe(kept.id);
            await tx.updateProfile(accountId, withPlan(kept, "pro"));
            // The transaction's own reads, answered from what it knows or by SQL, see all of it.
            expect(await tx.findProfileByIdentity(accountId, "Email", "wb-1@example.com")).toBe(kept.id);
            expect(await tx.findDevice(accountId, "wb-d1")).toEqual(device("wb-d1", kept.id));
            expect(await tx.getProfile(accountId, kept.id)).toEqual(withPlan(kept, "pro"));
            expect(await tx.listDevices(accountId, kept.id)).toEqual([device("wb-d1", kept.id)]);
            // A second claim of the same values by another profile loses to this one.
            expect(await tx.claimIdentity(accountId, "Email", "wb-1@example.com", lost.id)).toBe(kept.id);
          });
          await expect(
            tx.savepoint(async () => {
              await tx.insertProfile(accountId, lost);
              expect(await tx.claimIdentity(accountId, "Email", "wb-2@example.com", lost.id)).toBe(lost.id);
              await tx.upsertDevice(accountId, device("wb-d2", lost.id, "tok"));
              await tx.updateProfile(accountId, withPlan(lost, "free"));
              throw new Error("record fails");
            }),
          ).rejects.toThrow("record fails");
          expect(await tx.getProfile(accountId, lost.id)).toBeNull();
          expect(await tx.findProfileByIdentity(accountId, "Email", "wb-2@example.com")).toBeNull();
          expect(await tx.findDevice(accountId, "wb-d2")).toBeNull();
          // What the failed record had claimed is free again, for this transaction to claim.
          expect(await tx.claimDevice(accountId, device("wb-d2", kept.id))).toBe(kept.id);
        });
        const r = store.reader;
        expect(await r.getProfile(accountId, kept.id)).toEqual(withPlan(kept, "pro"));
        expect(await r.getProfile(accountId, lost.id)).toBeNull();
        expect(await r.findProfileByIdentity(accountId, "Email", "wb-1@example.com")).toBe(kept.id);
        expect(await r.findProfileByIdentity(accountId, "Email", "wb-2@example.com")).toBeNull();
        expect(await r.listDevices(accountId, kept.id)).toEqual([device("wb-d1", kept.id), device("wb-d2", kept.id)]);
      });

      it("gives a new device raced by 20 prefetching writers to exactly one new profile", async () => {
        const accountId = await freshAccount();
        const results = await Promise.all(
          Array.from({ length: 20 }, () =>
            store.write(accountId, async (tx) => {
              await prefetch(tx, accountId, { deviceIds: ["wb-race"], identities: [], profileIds: [] });
              return tx.savepoint(async () => {
                const found = await tx.findDevice(accountId, "wb-race");
                if (found !== null) return { created: null, owner: found.profileId };
                const mine = blankProfile();
                const owner = await tx.claimDevice(accountId, device("wb-race", mine.id));
                if (owner === mine.id) await tx.insertProfile(accountId, mine);
                return { created: owner === mine.id ? mine.id : null, owner };
              });
            }),
          ),
        );
        const created = results.filter((r) => r.created !== null);
        expect(created).toHaveLength(1);
        expect(new Set(results.map((r) => r.owner))).toEqual(new Set([created[0]!.created]));
        expect(await store.reader.listDevices(accountId, created[0]!.created!)).toHaveLength(1);
      });
    });

    describe("account isolation", () => {
      it("shows nothing of one account to another, even for the same ids", async () => {
        const [a, b] = [await freshAccount(), await freshAccount()];
        const id = newId();
        const ref: UserAccountRef = { compartmentId: "default", userAccountId: "shared-user" };
        const m = merge(id, newId(), T0);
        const seqs = await store.write(a, async (tx) => {
          await tx.insertProfile(a, { ...fullProfile(id), flags: { test: false, controlGroupExcluded: true } });
          await tx.insertProfile(a, { ...blankProfile(), orphanOf: id });
          await tx.insertProfile(a, { ...blankProfile(), mergedInto: id });
          await tx.claimIdentity(a, "Email", "shared@example.com", id);
          await tx.upsertDevice(a, { deviceId: "shared-device", profileId: id, pushToken: null, platform: null });
          await tx.claimUserAccount(a, ref, id);
          await tx.putDocument(a, { ...ref, profileId: id, body: {}, createdAt: T0, updatedAt: T0 });
          await tx.claimChargedId(a, id, "shared-order");
          await tx.registerType(a, "profile", "Plan", "string");
          await tx.insertMerge(a, m);
          await tx.appendJournal(a, m.id, profileRecord("shared-device", T0, "x"));
          await tx.claimRecordId(a, "shared-record", T0);
          return tx.insertEvents(a, [event(id, T0), event(id, T0 + 1)]);
        });

        const r = store.reader;
        expect(await r.getProfile(b, id)).toBeNull();
        expect(await r.findProfileByIdentity(b, "Email", "shared@example.com")).toBeNull();
        expect(await r.findDevice(b, "shared-device")).toBeNull();
        expect(await r.findProfileByUserAccount(b, ref)).toBeNull();
        expect(await r.listDevices(b, id)).toEqual([]);
        expect(await r.listUserAccounts(b, id)).toEqual([]);
        expect(await r.listOrphans(b, id)).toEqual([]);
        expect(await r.listTombstones(b, id)).toEqual([]);
        expect(await r.listEvents(b, [id], { limit: 10 })).toEqual({ events: [], next: null });
        expect(await r.getDocument(b, ref)).toBeNull();
        expect(await r.listDocuments(b, id)).toEqual([]);
        expect(await r.listChargedIds(b, id)).toEqual([]);
        expect(await r.listTypes(b)).toEqual([]);
        expect(await r.getMerge(b, m.id)).toBeNull();
        expect(await r.listMergesTouching(b, id)).toEqual([]);
        expect(await r.countControlGroupExcluded(b)).toBe(0);
        expect(await r.listProfileIds(b, null, 100)).toEqual([]);
        expect(await r.maxEventSeq(b)).toBe(0);
        expect(await store.listApiKeys(b)).toEqual([]);

        await store.write(b, async (tx) => {
          expect(await tx.lockProfile(b, id)).toBeNull();
          expect(await tx.listEventsBySeq(b, seqs)).toEqual([]);
          expect(await tx.listEventSeqs(b, id)).toEqual([]);
          expect(await tx.listJournal(b, m.id)).toEqual([]);
          // Writes of B never reach A's rows, and B's handles are its own.
          await tx.moveEvents(b, seqs, newId());
          await tx.deleteEvents(b, seqs);
          await tx.releaseIdentity(b, "Email", "shared@example.com", id);
          await tx.releaseIdentityKey(b, "Email");
          await tx.deleteDevice(b, "shared-device");
          await tx.releaseUserAccount(b, ref);
          expect(await tx.deleteDocument(b, ref)).toBe(false);
          await tx.releaseChargedIds(b, id);
          await tx.markMergeUndone(b, m.id, T0 + 1);
          await tx.deleteMergesTouching(b, id);
          await tx.changeType(b, "profile", "Plan", "multi");
          expect(await tx.deleteProfileData(b, id)).toEqual({ profiles: 0, events: 0, identities: 0, devices: 0 });
          await tx.insertProfile(b, blankProfile(id));
          expect(
            await tx.claimDevice(b, { deviceId: "shared-device", profileId: id, pushToken: "b", platform: null }),
          ).toBe(id);
          expect(await tx.claimIdentity(b, "Email", "shared@example.com", id)).toBe(id);
          expect(await tx.claimRecordId(b, "shared-record", T0)).toBe(true);
          expect(await tx.claimChargedId(b, id, "shared-order")).toBe(true);
          expect(await tx.registerType(b, "profile", "Plan", "number")).toBe("number");
        });

        expect(await r.getProfile(b, id)).toEqual(blankProfile(id));
        expect((await r.getProfile(a, id))?.props).toEqual(fullProfile(id).props);
        expect(await r.findProfileByIdentity(a, "Email", "shared@example.com")).toBe(id);
        expect(await r.findDevice(a, "shared-device")).toEqual({
          deviceId: "shared-device",
          profileId: id,
          pushToken: null,
          platform: null,
        });
        expect((await r.findDevice(b, "shared-device"))?.pushToken).toBe("b");
        expect(await r.findProfileByUserAccount(a, ref)).toBe(id);
        expect(await r.getDocument(a, ref)).not.toBeNull();
        expect(await r.listChargedIds(a, id)).toEqual(["shared-order"]);
        expect(await r.listTypes(a)).toEqual([{ scope: "profile", path: "Plan", type: "string" }]);
        expect(await r.getMerge(a, m.id)).toEqual({ ...m, seq: expect.any(Number) });
        expect(await r.countControlGroupExcluded(a)).toBe(1);
        expect(await r.maxEventSeq(a)).toBe(seqs[1]);
        expect((await r.listEvents(a, [id], { limit: 10 })).events.map((e) => e.seq)).toEqual([seqs[1], seqs[0]]);
        await store.write(a, async (tx) => {
          expect(await tx.listJournal(a, m.id)).toHaveLength(1);
          expect(await tx.claimRecordId(a, "shared-record", T0)).toBe(false);
        });
      });
    });
  });
}
