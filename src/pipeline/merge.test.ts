/** SEMANTICS §7: conflicts under both merge policies, explicit merges, and undo that truly restores both people. */
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PortraitError } from "../engine/errors.js";
import { PostgresStore } from "../store/postgres/postgres-store.js";
import type { StoreReader } from "../store/store.js";
import { deferred } from "../test-support/deferred.js";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { Portrait } from "./portrait.js";

let h: Harness;

// PostgreSQL is left out (reason printed) when no server answers outside CI.
const stores = await storesUnderTest();

const ts = (s: number) => 1_790_000_000 + s;

async function person(deviceId: string, properties: Record<string, unknown>, at = 1) {
  const r = await h.ingest({ type: "login", deviceId, properties, ts: ts(at) });
  return r.results[0]?.profileId as string;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    if (e instanceof PortraitError) return e.code;
    throw e;
  }
  return "no error";
}

/** Polls until `reached` holds: a state to wait for (a lock waiter, a queued request), not a time. */
async function until(reached: () => Promise<boolean>): Promise<void> {
  for (let tries = 0; tries < 2_000; tries++) {
    if (await reached()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("the state waited for never came");
}

/** Everything a person is, for before/after comparisons. */
async function portraitOf(id: string) {
  const p = await h.portrait.requireProfile(h.account, id);
  const events = await h.portrait.timeline(h.account, id, { limit: 1000 });
  const { updatedAt: _u, ...system } = p.system as Record<string, unknown>;
  // Profile Merged / Profile Demerged are counted events of their own; compare everything else.
  const demerged = events.events.filter((e) => e.name === "Profile Demerged").length;
  return {
    ...p,
    system,
    stats: { ...p.stats, events: p.stats.events - demerged },
    devices: [...p.devices].sort(),
    events: events.events
      .filter((e) => e.name !== "Profile Demerged" && e.name !== "Profile Merged")
      .map((e) => [e.name, e.ts, e.anonymous]),
  };
}

describe.each(stores)("%s store", (store) => {
  beforeEach(async () => {
    h = await makeHarness({}, store);
  });
  afterEach(async () => {
    await h.close();
  });

  describe("identity conflicts", () => {
    it("mergePolicy reject refuses the whole record and applies nothing of it", async () => {
      await person("a", { Email: "a@x.io" });
      const b = await person("b", { Identity: "u-b" });
      const r = await h.ingest({ type: "profile", deviceId: "b", properties: { Plan: "pro", Email: "a@x.io" } });
      expect(r.unprocessed[0]).toMatchObject({ index: 0, code: "IDENTITY_CONFLICT", field: "properties.Email" });
      const p = await h.portrait.requireProfile(h.account, b);
      expect(p.properties.Plan).toBeUndefined();
      expect(p.identities).toEqual({ Identity: "u-b" });
    });

    it("mergePolicy merge merges the pushing profile into the owner of the identity and logs it", async () => {
      await h.settings({ mergePolicy: "merge" });
      const a = await person("a", { Email: "a@x.io", Name: "Ana" });
      const b = await person("b", { Identity: "u-b" }, 2);
      const r = await h.ingest({
        type: "profile",
        deviceId: "b",
        properties: { Plan: "pro", Email: "a@x.io" },
        ts: ts(3),
      });
      expect(r.results[0]?.profileId).toBe(a);
      const merged = await h.portrait.requireProfile(h.account, a);
      expect(merged.identities).toEqual({ Identity: "u-b", Email: "a@x.io" });
      expect(merged.properties).toMatchObject({ Plan: "pro", Name: "Ana" });
      expect(merged.devices.sort()).toEqual(["a", "b"]);
      // The tombstone's id acts on and returns the target.
      expect((await h.portrait.requireProfile(h.account, b)).id).toBe(a);
      const timeline = await h.portrait.timeline(h.account, a, { limit: 50 });
      expect(timeline.events.map((e) => e.name)).toContain("Profile Merged");
    });

    it("mergePolicy merge through an unknown identity handle: the new value's Identity Set moves with it, and undo brings both back", async () => {
      await h.settings({ mergePolicy: "merge" });
      const a = await person("a", { Email: "a@x.io" });
      const r = await h.ingest({
        type: "profile",
        identity: { Identity: "u-new" },
        properties: { Email: "a@x.io" },
        ts: ts(3),
      });
      // The profile the handle created is merged away at once: the record updated the owner.
      expect(r.results[0]).toMatchObject({ profileId: a, outcome: "updated" });
      const merged = await h.portrait.requireProfile(h.account, a);
      expect(merged.identities).toEqual({ Identity: "u-new", Email: "a@x.io" });
      const setEvents = async (id: string) =>
        (await h.portrait.timeline(h.account, id, { limit: 50 })).events
          .filter((e) => e.name === "Identity Set")
          .map((e) => e.properties.Value);
      expect((await setEvents(a)).sort()).toEqual(["a@x.io", "u-new"]);
      // Counted like every system event: the login's Identity Set, the handle's, Profile Merged.
      expect(merged.stats.events).toBe(3);

      const mergedEvent = (await h.portrait.timeline(h.account, a, { limit: 50 })).events.find(
        (e) => e.name === "Profile Merged",
      );
      const undone = await h.portrait.undoMerge(h.account, mergedEvent?.properties["Merge ID"] as string);
      const source = undone.source.id;
      expect(await setEvents(a)).toEqual(["a@x.io"]);
      expect(await setEvents(source)).toEqual(["u-new"]);
      expect((await h.portrait.requireProfile(h.account, source)).identities).toEqual({ Identity: "u-new" });
    });
  });

  describe("explicit merge and undo", () => {
    it("an identity value and its property agree after a merge of values with the same ts (the target's wins)", async () => {
      const a = await person("a", { Email: "t1@x.io" }, 7);
      const b = await person("b", { Email: "t2@x.io" }, 7);
      const { profile } = await h.portrait.merge(h.account, a, b);
      expect(profile.identities).toEqual({ Email: "t1@x.io" });
      expect(profile.properties.Email).toBe("t1@x.io");
      const found = await h.portrait.findProfiles(h.account, { kind: "identity", key: "Email", value: "t1@x.io" });
      expect(found.map((p) => p.id)).toEqual([a]);
      expect(await h.portrait.findProfiles(h.account, { kind: "identity", key: "Email", value: "t2@x.io" })).toEqual(
        [],
      );
    });

    it("an undo stores a replayed event that came without an id under the id it was given, not a new one", async () => {
      const t = await person("idT", { Identity: "id-t" }, 1);
      const s = await person("idS", { Identity: "id-s" }, 2);
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      await h.ingest({ type: "event", deviceId: "idS", name: "Viewed", ts: ts(10), properties: { Page: "home" } });
      const viewed = async (id: string) =>
        (await h.portrait.timeline(h.account, id, { limit: 100 })).events.filter((e) => e.name === "Viewed");
      const [given] = await viewed(t);
      expect(given?.id).toEqual(expect.any(String));

      await h.portrait.undoMerge(h.account, mergeId);
      // Replayed through the source's device: the source's again, with the id its timeline showed before.
      expect((await viewed(s)).map((e) => e.id)).toEqual([given!.id]);
      expect(await viewed(t)).toEqual([]);
    });

    it("undoing an older merge keeps the Profile Demerged that a later merge's undo wrote on the person", async () => {
      const a = await person("pdA", { Identity: "pd-a" }, 1);
      const b = await person("pdB", { Identity: "pd-b" }, 2);
      const c = await person("pdC", { Identity: "pd-c" }, 3);
      const m1 = (await h.portrait.merge(h.account, b, a)).mergeId;
      const m2 = (await h.portrait.merge(h.account, c, b)).mergeId;
      await h.portrait.undoMerge(h.account, m2);
      await h.portrait.undoMerge(h.account, m1);
      const events = (await h.portrait.timeline(h.account, b, { limit: 100 })).events;
      const demerged = events.filter((e) => e.name === "Profile Demerged").map((e) => e.properties["Merge ID"]);
      expect(demerged.sort()).toEqual([m1, m2].sort());
      // Counted, as every event is.
      expect((await h.portrait.requireProfile(h.account, b)).stats.events).toBe(events.length);
    });

    it("an undo writes a document that came after the merge back with its own times, not the undo's", async () => {
      const t = await person("docT", { Identity: "doc-t" }, 1);
      const s = await person("docS", { Identity: "doc-s" }, 2);
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      h.clock.advance(1_000);
      const written = h.clock.now();
      const ref = { compartmentId: "crm", userAccountId: "crm-9" };
      await h.portrait.applyAtPath(h.account, {
        type: "document",
        ts: written,
        handle: { kind: "profile", profileId: s },
        ...ref,
        mode: "put",
        body: { plan: "gold" },
      });
      h.clock.advance(60_000);
      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.unapplied).toBeUndefined();
      // Written through the source's id: the source's again, as it was written.
      expect(await h.portrait.getDocument(h.account, s, ref)).toMatchObject({
        plan: "gold",
        $creation_ts: written,
        $last_modified_ts: written,
      });
    });

    it("a value older than the other side's delete of its key goes with the merge: identities and properties agree", async () => {
      for (const swapped of [false, true]) {
        const tag = swapped ? "b" : "a";
        const profileVia = async (deviceId: string, at: number, properties: Record<string, unknown>) =>
          (await h.ingest({ type: "profile", deviceId, ts: ts(at), properties })).results[0]?.profileId as string;
        const a = await profileVia(`dA-${tag}`, 10, { Identity: `u0-${tag}`, Name: "A" });
        await profileVia(`dA-${tag}`, 100, { Identity: { $delete: true } });
        const b = await profileVia(`dB-${tag}`, 50, { Identity: `u1-${tag}`, Name: "B" });
        const [target, source] = swapped ? [b, a] : [a, b];
        const { mergeId, profile } = await h.portrait.merge(h.account, target, source);
        expect(profile.identities).toEqual({});
        expect(profile.properties.Identity).toBeUndefined();
        expect(await h.store.reader.findProfileByIdentity(h.account.id, "Identity", `u1-${tag}`)).toBeNull();
        // The undo gives the value back to the side it came from.
        const undone = await h.portrait.undoMerge(h.account, mergeId);
        const restoredB = swapped ? undone.target : undone.source;
        expect(restoredB.identities).toEqual({ Identity: `u1-${tag}` });
        expect(restoredB.properties.Identity).toBe(`u1-${tag}`);
        expect(await h.store.reader.findProfileByIdentity(h.account.id, "Identity", `u1-${tag}`)).toBe(b);
      }
    });

    it("merge combines by per-key ts, sums counters, unions sets; undo restores both people exactly", async () => {
      const a = await person("a", { Identity: "u-a", Name: "Old", Points: { $incr: 5 }, Tags: ["x"] }, 1);
      await h.ingest({
        type: "event",
        deviceId: "a",
        name: "Charged",
        ts: ts(2),
        properties: { Amount: 10, "Charged ID": "c1" },
      });
      const b = await person("b", { Identity: "u-b", Points: { $incr: 7 }, Tags: ["y"] }, 3);
      await h.ingest({ type: "profile", deviceId: "b", ts: ts(4), properties: { Name: "New" } });
      await h.ingest({
        type: "event",
        deviceId: "b",
        name: "Charged",
        ts: ts(5),
        properties: { Amount: 10, "Charged ID": "c1" },
      });
      await h.ingest({
        type: "event",
        deviceId: "b",
        name: "Charged",
        ts: ts(6),
        properties: { Amount: 4, "Charged ID": "c2" },
      });
      const beforeA = await portraitOf(a);
      const beforeB = await portraitOf(b);

      const { mergeId, profile } = await h.portrait.merge(h.account, a, b);
      expect(profile.id).toBe(a);
      expect(profile.properties).toMatchObject({ Name: "New", Points: 12, Tags: ["x", "y"] });
      // Identity keeps one value: the newest by ts (u-b), and u-a is released (SEMANTICS §7).
      expect(profile.identities).toEqual({ Identity: "u-b" });
      expect(await h.portrait.findProfiles(h.account, { kind: "identity", key: "Identity", value: "u-a" })).toEqual([]);
      expect(profile.type).toBe("customer");
      // The repeated Charged ID c1 counts once.
      expect(profile.stats.revenue).toBe(14);

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.target.id).toBe(a);
      expect(undone.source.id).toBe(b);
      expect(await portraitOf(a)).toEqual(beforeA);
      expect(await portraitOf(b)).toEqual(beforeB);
      expect(await codeOf(h.portrait.undoMerge(h.account, mergeId))).toBe("ALREADY_UNDONE");
    });

    it("undo lists the values it could not give back in the account's identity key order, on every store", async () => {
      await h.settings({ identityKeys: ["Identity", "Email"], identityLimits: { Identity: 1, Email: 1 } });
      const t = await person("dT", { Identity: "uT", Email: "t@x.io" }, 10);
      // Email first: the source's snapshot holds its keys in this order on SQLite, and jsonb's order on PostgreSQL.
      const s = await person("dS", { Email: "s@x.io", Identity: "uS" }, 1);
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      await person("dX", { Email: "s@x.io", Identity: "uS" }, 20);
      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.unapplied?.map((u) => [u.profileId, u.key, u.value])).toEqual([
        [s, "Identity", "uS"],
        [s, "Email", "s@x.io"],
      ]);
    });

    it("undo replays a purchase that was a duplicate only because of the merge onto the side it came through", async () => {
      const t = await person("dt", { Identity: "t" }, 1);
      const s = await person("ds", { Identity: "s" }, 2);
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      const charged = (deviceId: string, at: number) =>
        h.ingest({
          type: "event",
          deviceId,
          name: "Charged",
          ts: ts(at),
          properties: { Amount: 30, "Charged ID": "o2" },
        });
      expect((await charged("ds", 3)).results[0]?.outcome).toBe("stored");
      expect((await charged("dt", 4)).results[0]?.outcome).toBe("duplicate");
      // A true retry on one side stays a duplicate after the undo as well.
      expect((await charged("ds", 5)).results[0]?.outcome).toBe("duplicate");

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.unapplied ?? []).toEqual([]);
      for (const id of [t, s]) {
        const p = await h.portrait.requireProfile(h.account, id);
        expect(p.type, id).toBe("customer");
        expect(p.stats.revenue, id).toBe(30);
        const timeline = await h.portrait.timeline(h.account, id, { limit: 50 });
        const when = new Date(ts(id === t ? 4 : 3) * 1000).toISOString();
        expect(
          timeline.events.filter((e) => e.name === "Charged").map((e) => e.ts),
          id,
        ).toEqual([when]);
      }
    });

    it("undo never makes a person identified before the merge an orphan, though someone took their only value since", async () => {
      const a = await person("dA", { Identity: "a" }, 1);
      await h.ingest({ type: "event", deviceId: "dA", name: "A-own", ts: ts(2) });
      const b = await person("dB", { Identity: "b" }, 3);
      const { mergeId } = await h.portrait.merge(h.account, a, b);
      // The merge keeps the newest Identity (b) and releases a, which a new person then takes; dA logs in as b on
      // the merged person (case 3).
      const c = await person("dC", { Identity: "a" }, 4);
      const login = await h.ingest({ type: "login", deviceId: "dA", properties: { Identity: "b" }, ts: ts(5) });
      expect(login.results[0]?.outcome).toBe("appended");

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.unapplied).toContainEqual(expect.objectContaining({ key: "Identity", value: "a" }));
      const pa = await h.portrait.requireProfile(h.account, a);
      // A keeps its own history, counted: it is no orphan of B. Its device went to B, whom it logged in as.
      expect(pa.orphanOf).toBeNull();
      expect(pa.stats.events).toBeGreaterThanOrEqual(2);
      expect((await h.portrait.requireProfile(h.account, b)).devices.sort()).toEqual(["dA", "dB"]);
      expect((await h.portrait.requireProfile(h.account, c)).identities).toEqual({ Identity: "a" });
      const timeline = await h.portrait.timeline(h.account, a, { limit: 50 });
      expect(timeline.events.find((e) => e.name === "A-own")?.anonymous).toBe(false);
    });

    it("undo restores identities under the settings of now: a key removed since is a property, a lowered limit keeps the newest", async () => {
      await h.settings({ identityKeys: ["Identity", "Email", "Phone"], identityLimits: { Email: 2 } });
      const a = await person("a", { Identity: "u-a", Phone: "+33612345678" }, 1);
      await h.ingest({ type: "profile", deviceId: "a", ts: ts(2), properties: { Email: "old@x.io" } });
      await h.ingest({ type: "profile", deviceId: "a", ts: ts(3), properties: { Email: "new@x.io" } });
      const b = await person("b", { Identity: "u-b" }, 4);
      const { mergeId } = await h.portrait.merge(h.account, a, b);
      await h.settings({ identityKeys: ["Identity", "Email"], identityLimits: { Email: 1 } });

      await h.portrait.undoMerge(h.account, mergeId);
      const pa = await h.portrait.requireProfile(h.account, a);
      expect(pa.identities).toEqual({ Identity: "u-a", Email: "new@x.io" });
      expect(pa.properties.Phone).toBe("+33612345678");
      expect(await h.portrait.findProfiles(h.account, { kind: "identity", key: "Email", value: "old@x.io" })).toEqual(
        [],
      );
      // No row of the removed key is left behind to refuse it when it comes back.
      await h.settings({ identityKeys: ["Identity", "Email", "Phone"] });
      const [byPhone] = await h.portrait.findProfiles(h.account, {
        kind: "identity",
        key: "Phone",
        value: "+33612345678",
      });
      expect(byPhone?.id).toBe(a);
    });

    it("undo replays records that arrived after the merge, routed by their handle", async () => {
      const a = await person("a", { Identity: "u-a" });
      const b = await person("b", { Identity: "u-b" });
      const { mergeId } = await h.portrait.merge(h.account, a, b);
      await h.ingest(
        { type: "event", deviceId: "b", name: "Viewed", ts: ts(10) },
        { type: "profile", deviceId: "a", ts: ts(11), properties: { Plan: "pro" } },
        { type: "profile", profileId: b, ts: ts(12), properties: { Color: "red" } },
      );
      const merged = await h.portrait.requireProfile(h.account, a);
      expect(merged.properties).toMatchObject({ Plan: "pro", Color: "red" });

      await h.portrait.undoMerge(h.account, mergeId);
      const pa = await h.portrait.requireProfile(h.account, a);
      const pb = await h.portrait.requireProfile(h.account, b);
      expect(pa.properties.Plan).toBe("pro");
      expect(pa.properties.Color).toBeUndefined();
      expect(pb.properties.Color).toBe("red");
      expect(pb.devices).toEqual(["b"]);
      const bEvents = await h.portrait.timeline(h.account, b, { limit: 50 });
      expect(bEvents.events.map((e) => e.name)).toContain("Viewed");
      const aEvents = await h.portrait.timeline(h.account, a, { limit: 50 });
      expect(aEvents.events.map((e) => e.name)).not.toContain("Viewed");
    });

    it("undo replays a login that took a device after the merge from where it took it", async () => {
      const a = await person("a", { Identity: "u-a" });
      const b = await person("b", { Identity: "u-b" }, 2);
      const p = await person("p", { Identity: "u-p" });
      const { mergeId } = await h.portrait.merge(h.account, a, b);
      // Case 2 after the merge: an anonymous visitor logs in as b's Identity, now the merged person's.
      const visitor = (await h.ingest({ type: "event", deviceId: "v", name: "Browsed", ts: ts(10) })).results[0]!
        .profileId as string;
      expect(
        (await h.ingest({ type: "login", deviceId: "v", ts: ts(11), properties: { Identity: "u-b" } })).results,
      ).toMatchObject([{ profileId: a, outcome: "switched" }]);
      // Case 4 after the merge: p's device logs in as b, so it leaves p for the merged person.
      await h.ingest({ type: "login", deviceId: "p", ts: ts(12), properties: { Identity: "u-b" } });
      expect((await h.portrait.requireProfile(h.account, visitor)).orphanOf).toBe(a);
      expect((await h.portrait.requireProfile(h.account, a)).devices.sort()).toEqual(["a", "b", "p", "v"]);

      await h.portrait.undoMerge(h.account, mergeId);
      // Replayed from where they started, both logins now reach b, who holds u-b again.
      expect((await h.portrait.requireProfile(h.account, visitor)).orphanOf).toBe(b);
      const pa = await h.portrait.requireProfile(h.account, a);
      const pb = await h.portrait.requireProfile(h.account, b);
      expect(pa.devices).toEqual(["a"]);
      expect(pa.stats.orphans).toBe(0);
      expect([...pb.devices].sort()).toEqual(["b", "p", "v"]);
      expect(pb.stats.orphans).toBe(1);
      expect((await h.portrait.requireProfile(h.account, p)).devices).toEqual([]);
      const timelineOf = async (id: string) =>
        (await h.portrait.timeline(h.account, id, { limit: 50 })).events
          .filter((e) => e.name === "Browsed")
          .map((e) => e.anonymous);
      expect(await timelineOf(b)).toEqual([true]);
      expect(await timelineOf(a)).toEqual([]);
    });

    it("a source's device that logged in as someone else after the merge stays with that person through the undo", async () => {
      const t = await person("T2", { Identity: "tgt2" }, 1);
      const s = await person("S2", { Identity: "src2" }, 2);
      const x = await person("X2", { Identity: "x2" }, 3);
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      // Still the merged person's: journalled, and the undo gives it to s, whose device it was then.
      await h.ingest({ type: "event", deviceId: "S2", name: "Browsed", ts: ts(10) });
      const login = await h.ingest({ type: "login", deviceId: "S2", ts: ts(11), properties: { Identity: "x2" } });
      expect(login.results).toMatchObject([{ profileId: x, outcome: "switched" }]);
      await h.ingest({ type: "token", deviceId: "S2", channel: "push", token: "tok-x", ts: ts(12) });

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.source.devices).toEqual([]);
      expect(undone.target.devices).toEqual(["T2"]);
      expect([...(await h.portrait.requireProfile(h.account, x)).devices].sort()).toEqual(["S2", "X2"]);
      expect(await h.store.reader.findDevice(h.account.id, "S2")).toMatchObject({ profileId: x, pushToken: "tok-x" });
      const names = async (id: string) =>
        (await h.portrait.timeline(h.account, id, { limit: 50 })).events.map((e) => e.name);
      expect(await names(s)).toContain("Browsed");
      const next = await h.ingest({ type: "event", deviceId: "S2", name: "Later", ts: ts(13) });
      expect(next.results[0]?.profileId).toBe(x);
      expect(undone.unapplied).toEqual([{ profileId: s, key: "deviceId", value: "S2", code: "DEVICE_MOVED" }]);
    });

    it("a target's device that logged in as someone else after the merge stays with that person through the undo", async () => {
      const t = await person("T2", { Identity: "tgt2" }, 1);
      const s = await person("S2", { Identity: "src2" }, 2);
      const x = await person("X2", { Identity: "x2" }, 3);
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      await h.ingest({ type: "login", deviceId: "T2", ts: ts(11), properties: { Identity: "x2" } });

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.target.devices).toEqual([]);
      expect(undone.source.devices).toEqual(["S2"]);
      expect([...(await h.portrait.requireProfile(h.account, x)).devices].sort()).toEqual(["T2", "X2"]);
      const next = await h.ingest({ type: "event", deviceId: "T2", name: "Later", ts: ts(13) });
      expect(next.results[0]?.profileId).toBe(x);
      expect(undone.unapplied).toEqual([{ profileId: t, key: "deviceId", value: "T2", code: "DEVICE_MOVED" }]);
    });

    it("a device that joined the merged person after the merge and left again is not taken back by the replay", async () => {
      const t = await person("T2", { Identity: "tgt2" }, 1);
      const s = await person("S2", { Identity: "src2" }, 2);
      const x = await person("X2", { Identity: "x2" }, 3);
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      const visitor = (await h.ingest({ type: "event", deviceId: "v", name: "Browsed", ts: ts(10) })).results[0]!
        .profileId as string;
      // Case 2 onto the merged person (journalled), then case 4 away to x (not).
      await h.ingest({ type: "login", deviceId: "v", ts: ts(11), properties: { Identity: "src2" } });
      await h.ingest({ type: "login", deviceId: "v", ts: ts(12), properties: { Identity: "x2" } });

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.unapplied).toBeUndefined();
      expect([...(await h.portrait.requireProfile(h.account, x)).devices].sort()).toEqual(["X2", "v"]);
      // The replayed login reached s, who holds src2 again: the visitor is s's orphan, as it would have been.
      expect((await h.portrait.requireProfile(h.account, visitor)).orphanOf).toBe(s);
      expect(undone.source.devices).toEqual(["S2"]);
      expect(undone.target.devices).toEqual(["T2"]);
    });

    it("a device released by deleting the person it went to after the merge stays released through the undo", async () => {
      const t = await person("T2", { Identity: "tgt2" }, 1);
      const s = await person("S2", { Identity: "src2" }, 2);
      const x = await person("X2", { Identity: "x2" }, 3);
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      await h.ingest({ type: "login", deviceId: "S2", ts: ts(11), properties: { Identity: "x2" } });
      await h.portrait.deleteProfile(h.account, x);

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.source.devices).toEqual([]);
      expect(await h.store.reader.findDevice(h.account.id, "S2")).toBeNull();
      const next = await h.ingest({ type: "event", deviceId: "S2", name: "Later", ts: ts(13) });
      expect([t, s, x]).not.toContain(next.results[0]?.profileId);
      expect(undone.unapplied).toEqual([{ profileId: s, key: "deviceId", value: "S2", code: "DEVICE_MOVED" }]);
    });

    it("undo leaves an identity value the merge released with whoever holds it now, and says so", async () => {
      const t = await person("T2", { Identity: "tgt" }, 5);
      const s = await person("S2", { Identity: "src", Name: "Sam" }, 1);
      const { mergeId, profile } = await h.portrait.merge(h.account, t, s);
      // Limit 1: the newer value (tgt) stays, src is released (SEMANTICS §7), and a record may then give it to anyone.
      expect(profile.identities).toEqual({ Identity: "tgt" });
      const n = (
        await h.ingest({ type: "profile", identity: { Identity: "src" }, ts: ts(10), properties: { Name: "Nina" } })
      ).results[0]?.profileId as string;
      expect([t, s]).not.toContain(n);

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.source.identities).toEqual({});
      // The value's property goes with it: a person never shows an identity another person holds.
      expect(undone.source.properties.Identity).toBeUndefined();
      expect(undone.source.properties.Name).toBe("Sam");
      expect(undone.source.devices).toEqual(["S2"]);
      expect(undone.target.identities).toEqual({ Identity: "tgt" });
      const found = await h.portrait.findProfiles(h.account, { kind: "identity", key: "Identity", value: "src" });
      expect(found.map((p) => p.id)).toEqual([n]);
      expect((await h.portrait.requireProfile(h.account, n)).properties).toMatchObject({
        Identity: "src",
        Name: "Nina",
      });
      expect(undone.unapplied).toEqual([{ profileId: s, key: "Identity", value: "src", code: "IDENTITY_CONFLICT" }]);
    });

    it("undo does not replay a record that came through an identity value another person holds now", async () => {
      const t = await person("T2", { Identity: "tgt" }, 5);
      const s = await person("S2", { Identity: "src" }, 1);
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      await h.ingest(
        { type: "profile", identity: { Identity: "tgt" }, ts: ts(10), properties: { Plan: "pro" } },
        { type: "profile", deviceId: "T2", ts: ts(11), properties: { Identity: "tgt-new" } },
      );
      // tgt was released by the second record: a new person takes it.
      const n = (
        await h.ingest({ type: "profile", identity: { Identity: "tgt" }, ts: ts(12), properties: { Name: "Nina" } })
      ).results[0]?.profileId as string;

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect((await h.portrait.requireProfile(h.account, n)).properties.Plan).toBeUndefined();
      expect(undone.target.identities).toEqual({ Identity: "tgt-new" });
      expect(undone.source.identities).toEqual({ Identity: "src" });
      // The record is not lost silently: it reached the merged person, and its value's holder is someone else now.
      expect(undone.unapplied).toEqual([
        { profileId: t, key: "Identity", value: "tgt", code: "IDENTITY_CONFLICT" },
        { profileId: t, key: "profile", value: "tgt", code: "RECORD_NOT_REPLAYED", reason: "IDENTITY_CONFLICT" },
      ]);
    });

    it("undo does not replay a login that would now reach the person who took its value since", async () => {
      const t = await person("T2", { Identity: "tgt" }, 5);
      const s = await person("S2", { Identity: "src" }, 1);
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      await h.ingest(
        { type: "login", deviceId: "T2", ts: ts(10), properties: { Identity: "tgt", Plan: "pro" } },
        { type: "profile", deviceId: "T2", ts: ts(11), properties: { Identity: "tgt-new" } },
      );
      const n = (await h.ingest({ type: "profile", identity: { Identity: "tgt" }, ts: ts(12), properties: {} }))
        .results[0]?.profileId as string;

      // t comes back without tgt, so with no identity: replayed, the login would switch T2 to n and orphan t.
      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.target.orphanOf).toBeNull();
      expect(undone.target.devices).toEqual(["T2"]);
      expect(undone.target.identities).toEqual({ Identity: "tgt-new" });
      expect((await h.portrait.requireProfile(h.account, n)).devices).toEqual([]);
    });

    it("under mergePolicy merge, a replayed record that conflicts is left out: the undo never merges the two again", async () => {
      await h.settings({ mergePolicy: "merge" });
      const profileVia = async (deviceId: string, at: number, properties: Record<string, unknown>) =>
        (await h.ingest({ type: "profile", deviceId, ts: ts(at), properties })).results[0]?.profileId as string;
      const t = await profileVia("dT", 10, { Identity: "t" });
      const s = await profileVia("dS", 20, { Email: "s@x.io" });
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      // The merged person holds t already: no conflict then. Replayed through dS onto s, t is T's: a conflict.
      expect(await profileVia("dS", 30, { Identity: "t", Plan: "pro" })).toBe(t);

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.source).toMatchObject({ id: s, mergedInto: null, identities: { Email: "s@x.io" } });
      expect(undone.target).toMatchObject({ id: t, mergedInto: null, identities: { Identity: "t" } });
      expect(undone.unapplied).toEqual([
        { profileId: s, key: "profile", value: "dS", code: "RECORD_NOT_REPLAYED", reason: "IDENTITY_CONFLICT" },
      ]);
      // As the next reads say: two people, and no merge but the one undone.
      expect((await h.portrait.requireProfile(h.account, s)).mergedInto).toBeNull();
      expect(await h.store.reader.listMergesTouching(h.account.id, s)).toEqual([
        expect.objectContaining({ id: mergeId, undoneAt: expect.any(Number) }),
      ]);
    });

    it("the record that caused a merge is replayed by its undo like any later one, and named when it cannot be", async () => {
      await h.settings({ mergePolicy: "merge" });
      const a = (await h.ingest({ type: "profile", identity: { Identity: "ca" }, ts: ts(1), properties: {} }))
        .results[0]?.profileId as string;
      const viaB = (properties: Record<string, unknown>, at: number, id?: string) =>
        h.ingest({ type: "profile", deviceId: "cdB", ts: ts(at), properties, ...(id && { id }) });
      const b = (await viaB({ Email: "cb@x.io" }, 2)).results[0]?.profileId as string;
      const caused = await viaB({ Identity: "ca", Plan: "pro", Pts: { $incr: 5 } }, 3, "rec-1");
      expect(caused.results[0]).toMatchObject({ profileId: a, outcome: "updated" });
      const [merge] = await h.store.reader.listMergesTouching(h.account.id, a);

      // Replayed onto b, whose device it came through, its Identity is a's again: left out, and said so.
      const undone = await h.portrait.undoMerge(h.account, merge!.id);
      expect(undone.source.properties.Plan).toBeUndefined();
      expect(undone.unapplied).toEqual([
        { profileId: b, key: "profile", value: "cdB", code: "RECORD_NOT_REPLAYED", reason: "IDENTITY_CONFLICT" },
      ]);
    });

    it("a replayed record whose handle names nobody after the restore creates nobody and takes no device", async () => {
      const s = await person("d1", { Identity: "u2" }, 1);
      const t = (await h.ingest({ type: "profile", identity: { Email: "e1@x.io" }, ts: ts(2), properties: {} }))
        .results[0]?.profileId as string;
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      // Both reach the merged person: the PATCH gives it u1, then a login through S's device and a purchase come
      // through u1. Replayed, the PATCH conflicts (e1 is T's again), so u1 is nobody's.
      await h.portrait.patchProfile(h.account, s, { Identity: "u1", Email: "e1@x.io" });
      const login = await h.ingest({ type: "login", deviceId: "d1", ts: ts(20), properties: { Identity: "u1" } });
      expect(login.results[0]).toMatchObject({ profileId: t, outcome: "appended" });
      const charged = await h.ingest({
        type: "event",
        identity: { Identity: "u1" },
        id: "order-1",
        name: "Charged",
        ts: ts(21),
        properties: { Amount: 30 },
      });
      expect(charged.results[0]).toMatchObject({ profileId: t, outcome: "stored" });

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.source).toMatchObject({ id: s, devices: ["d1"], identities: { Identity: "u2" } });
      expect(await h.store.reader.findProfileByIdentity(h.account.id, "Identity", "u1")).toBeNull();
      expect((await h.store.reader.findDevice(h.account.id, "d1"))?.profileId).toBe(s);
      // Each is named, none vanished.
      expect(undone.unapplied?.map((u) => [u.key, u.code, u.reason])).toEqual([
        ["profile", "RECORD_NOT_REPLAYED", "IDENTITY_CONFLICT"],
        ["login", "RECORD_NOT_REPLAYED", "IDENTITY_CONFLICT"],
        ["event", "RECORD_NOT_REPLAYED", "UNKNOWN_PROFILE"],
      ]);
      expect((await h.portrait.requireProfile(h.account, t)).stats).toMatchObject({ revenue: 0 });
    });

    it("an undo racing writes to the merged person loses none of them; racing undos of one merge: one wins", async () => {
      const t = await person("t", { Identity: "u-t" });
      const s = await person("s", { Identity: "u-s" });
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      await h.ingest({ type: "profile", profileId: t, ts: ts(5), properties: { Cnt: 1000 } });
      const writes = Array.from({ length: 30 }, (_, i) =>
        h.ingest(
          { type: "profile", profileId: t, ts: ts(10 + i), properties: { Cnt: { $incr: 1 } } },
          { type: "event", profileId: t, ts: ts(10 + i), name: "Raced", id: `raced-${i}` },
        ),
      );
      const undos = [0, 1, 2].map(async (i) => {
        await new Promise((resolve) => setTimeout(resolve, i * 5));
        return codeOf(h.portrait.undoMerge(h.account, mergeId));
      });
      const [written, undone] = await Promise.all([Promise.all(writes), Promise.all(undos)]);
      for (const w of written) expect(w.unprocessed).toEqual([]);
      expect(undone.filter((c) => c === "no error")).toHaveLength(1);
      expect(undone.filter((c) => c !== "no error")).toEqual(["ALREADY_UNDONE", "ALREADY_UNDONE"]);
      // The writes named t's id: before the undo they were journalled and replayed onto t, after it they went there.
      const pt = await h.portrait.requireProfile(h.account, t);
      expect(pt.properties.Cnt).toBe(1030);
      const raced = (await h.portrait.timeline(h.account, t, { limit: 200 })).events.filter((e) => e.name === "Raced");
      expect(raced).toHaveLength(30);
      const ps = await h.portrait.requireProfile(h.account, s);
      expect((await h.portrait.timeline(h.account, s, { limit: 200 })).events.map((e) => e.name)).not.toContain(
        "Raced",
      );
      expect(ps.mergedInto).toBeNull();
    });

    it("under mergePolicy merge, a push of a value whose owner is being merged away merges into the live owner", async () => {
      await h.settings({ identityKeys: ["Identity", "Email"], mergePolicy: "merge" });
      for (let round = 0; round < 6; round++) {
        const q = await person(`q${round}`, { Email: `q${round}@x.io` });
        const r = await person(`r${round}`, { Identity: `u-r${round}` });
        const p = await person(`p${round}`, { Identity: `u-p${round}` });
        const [, pushed] = await Promise.all([
          h.portrait.merge(h.account, r, q),
          h.ingest({ type: "profile", profileId: p, properties: { Email: `q${round}@x.io` } }),
        ]);
        expect(pushed.unprocessed).toEqual([]);
        const [owner] = await h.portrait.findProfiles(h.account, {
          kind: "identity",
          key: "Email",
          value: `q${round}@x.io`,
        });
        // Whichever came first, one live person holds the value, and p, q and r all read as that person.
        for (const id of [p, q, r]) expect((await h.portrait.requireProfile(h.account, id)).id).toBe(owner?.id);
      }
    });

    it("exports the whole merge history of a chain: its tombstones' merges too", async () => {
      const a = await person("a", { Identity: "u-a" });
      const b = await person("b", { Identity: "u-b" });
      const c = await person("c", { Identity: "u-c" });
      const first = await h.portrait.merge(h.account, a, b);
      const second = await h.portrait.merge(h.account, c, a);
      const exported = (await h.portrait.exportProfile(h.account, c)) as {
        tombstones: string[];
        merges: Array<{ id: string; targetId: string; sourceId: string }>;
      };
      expect([...exported.tombstones].sort()).toEqual([a, b].sort());
      expect(exported.merges).toMatchObject([
        { id: first.mergeId, targetId: a, sourceId: b },
        { id: second.mergeId, targetId: c, sourceId: a },
      ]);
    });

    it("a login that cannot be replayed leaves the device with the visitor it took it from, no orphan", async () => {
      await h.settings({ identityKeys: ["Identity", "Email"] });
      const a = await person("a", { Identity: "u-a", Email: "a@x.io" });
      const b = await person("b", { Identity: "u-b" }, 2);
      const { mergeId } = await h.portrait.merge(h.account, a, b);
      const visitor = (await h.ingest({ type: "event", deviceId: "v", name: "Browsed", ts: ts(10) })).results[0]!
        .profileId as string;
      await h.ingest({ type: "login", deviceId: "v", ts: ts(11), properties: { Identity: "u-b" } });
      // Identity stops being an identity key: the journalled login, which named only u-b, is now MISSING_IDENTITY.
      await h.settings({ identityKeys: ["Email"] });

      await h.portrait.undoMerge(h.account, mergeId);
      const v = await h.portrait.requireProfile(h.account, visitor);
      expect(v.orphanOf).toBeNull();
      expect(v.devices).toEqual(["v"]);
      expect((await h.portrait.requireProfile(h.account, a)).stats.orphans).toBe(0);
    });

    it("refuses merging a profile with itself, a tombstone or an orphan; only the latest merge can be undone", async () => {
      const a = await person("a", { Identity: "u-a" });
      const b = await person("b", { Identity: "u-b" });
      const c = await person("c", { Identity: "u-c" });
      const orphan = (await h.ingest({ type: "event", deviceId: "x", name: "Viewed" })).results[0]?.profileId as string;
      await h.ingest({ type: "login", deviceId: "x", properties: { Identity: "u-c" } });

      expect(await codeOf(h.portrait.merge(h.account, a, a))).toBe("INVALID_MERGE");
      expect(await codeOf(h.portrait.merge(h.account, a, orphan))).toBe("INVALID_MERGE");
      const m1 = await h.portrait.merge(h.account, a, b);
      // b is a tombstone now: §7 refuses it on either side, even beside a third person, rather than acting on a.
      expect(await codeOf(h.portrait.merge(h.account, a, b))).toBe("INVALID_MERGE");
      expect(await codeOf(h.portrait.merge(h.account, b, c))).toBe("INVALID_MERGE");
      expect(await codeOf(h.portrait.merge(h.account, c, b))).toBe("INVALID_MERGE");
      expect((await h.portrait.getProfile(h.account, c))?.mergedInto).toBeNull();
      const m2 = await h.portrait.merge(h.account, a, c);
      expect(await codeOf(h.portrait.undoMerge(h.account, m1.mergeId))).toBe("MERGE_NOT_UNDOABLE");
      expect(await codeOf(h.portrait.undoMerge(h.account, "nope"))).toBe("UNKNOWN_MERGE");
      await h.portrait.undoMerge(h.account, m2.mergeId);
      await h.portrait.undoMerge(h.account, m1.mergeId);
      expect((await h.portrait.requireProfile(h.account, b)).identities).toEqual({ Identity: "u-b" });
      expect((await h.portrait.requireProfile(h.account, c)).stats.orphans).toBe(1);
    });

    it("identity values over a key's limit keep the newest by ts after a merge", async () => {
      await h.settings({ identityKeys: ["Identity", "Email"], identityLimits: { Email: 2 } });
      const a = await person("a", { Email: "a1@x.io" }, 1);
      await h.ingest({ type: "profile", deviceId: "a", ts: ts(5), properties: { Email: "a2@x.io" } });
      const b = await person("b", { Email: "b1@x.io" }, 3);
      const { profile } = await h.portrait.merge(h.account, a, b);
      expect(profile.identities.Email).toEqual(["b1@x.io", "a2@x.io"]);
      const [released] = await h.portrait.findProfiles(h.account, { kind: "identity", key: "Email", value: "a1@x.io" });
      expect(released).toBeUndefined();
    });
  });

  // SEMANTICS §7: "only the latest merge touching either profile can be undone".
  describe("the latest merge", () => {
    const identitiesOf = async (id: string) =>
      [(await h.portrait.requireProfile(h.account, id)).identities.Identity].flat().sort();

    it("is the one written last, though another process whose clock is behind stamped it earlier", async () => {
      await h.settings({ identityLimits: { Identity: 5 } });
      const [x, y, z] = [
        await person("x", { Identity: "x" }),
        await person("y", { Identity: "y" }),
        await person("z", { Identity: "z" }),
      ];
      // A second process on the same store, its clock 10 s behind this one's.
      const behind = new Portrait(h.store, { now: () => h.clock.now() - 10_000 });
      const m1 = await h.portrait.merge(h.account, x, y);
      const m2 = await behind.merge(h.account, x, z);
      // The export lists them in the order they were written, whatever their createdAt.
      expect((await h.portrait.exportProfile(h.account, x)).merges).toMatchObject([
        { id: m1.mergeId },
        { id: m2.mergeId },
      ]);

      expect(await codeOf(h.portrait.undoMerge(h.account, m1.mergeId))).toBe("MERGE_NOT_UNDOABLE");
      // Undoing m2 restores x as it was after m1: with y's identity, which an undo of m2's snapshot taken before m1
      // would have lost.
      await h.portrait.undoMerge(h.account, m2.mergeId);
      expect(await identitiesOf(x)).toEqual(["x", "y"]);
      expect(await identitiesOf(z)).toEqual(["z"]);
      await h.portrait.undoMerge(h.account, m1.mergeId);
      expect(await identitiesOf(x)).toEqual(["x"]);
      expect(await identitiesOf(y)).toEqual(["y"]);
    });

    it.runIf(store === "postgres")(
      "is the one written last, though the other was asked for first and then waited for a connection",
      async () => {
        // The audit's repro: node 1's pool is full of writes waiting for a row lock someone holds, so a merge sent there
        // takes its time, then waits; a merge into the same target through node 2, asked for later, is written first.
        const counted = async (deviceId: string, n: number) =>
          (await h.ingest({ type: "profile", deviceId, properties: { n: { $incr: n } } })).results[0]!.profileId!;
        const [x, y, z, w] = [
          await counted("x", 1),
          await counted("y", 2),
          await counted("z", 4),
          await counted("w", 0),
        ];
        const url = h.databaseUrl!;
        const node1 = await PostgresStore.connect(url, { max: 2, concurrentWriters: 1 });
        const holder = new pg.Client({ connectionString: url });
        await holder.connect();
        try {
          await holder.query("BEGIN");
          await holder.query("SELECT id FROM profiles WHERE id = $1 FOR UPDATE", [w]);
          const held = [1, 2].map(() => node1.write(h.account.id, (tx) => tx.lockProfile(h.account.id, w)));
          await until(async () => {
            // Inside a transaction the activity view is read once and kept: cleared to see it as it is now.
            await holder.query("SELECT pg_stat_clear_snapshot()");
            const { rows } = await holder.query(
              "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            );
            return rows[0].n === 2;
          });
          const m1 = new Portrait(node1, h.clock).merge(h.account, x, y);
          await until(async () => node1.connections().waiting === 1);
          h.clock.advance(1_000);
          const m2 = await h.portrait.merge(h.account, x, z);
          await holder.query("ROLLBACK");
          await Promise.all(held);
          const { mergeId } = await m1;
          expect((await h.portrait.requireProfile(h.account, x)).properties.n).toBe(7);

          // m1 was written last: only it can be undone, and its undo gives y back and leaves x with z.
          expect(await codeOf(h.portrait.undoMerge(h.account, m2.mergeId))).toBe("MERGE_NOT_UNDOABLE");
          const undone = await h.portrait.undoMerge(h.account, mergeId);
          expect([undone.target.properties.n, undone.source.properties.n]).toEqual([5, 2]);
          const then = await h.portrait.undoMerge(h.account, m2.mergeId);
          expect([then.target.properties.n, then.source.properties.n]).toEqual([1, 4]);
        } finally {
          await holder.end();
          await node1.close();
        }
      },
    );
  });

  describe("answers", () => {
    /** Runs `landing` right after the next write transaction commits, before its caller hears of that. */
    function afterNextCommit(landing: () => Promise<unknown>): void {
      const write = h.store.write.bind(h.store);
      h.store.write = async (accountId, fn) => {
        h.store.write = write;
        const result = await write(accountId, fn);
        await landing();
        return result;
      };
    }

    it("an undo answers both people as it restored them, though one is deleted right after it commits", async () => {
      const a = await person("a", { Identity: "u-a" });
      const b = await person("b", { Identity: "u-b" });
      const { mergeId } = await h.portrait.merge(h.account, a, b);
      afterNextCommit(() => h.portrait.deleteProfile(h.account, b));
      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect([undone.target.id, undone.target.identities]).toEqual([a, { Identity: "u-a" }]);
      expect([undone.source.id, undone.source.identities]).toEqual([b, { Identity: "u-b" }]);
      // The delete did land after it.
      expect(await h.portrait.getProfile(h.account, b)).toBeNull();
    });

    it("a merge answers the merged person, though they are deleted right after it commits", async () => {
      const a = await person("a", { Identity: "u-a" });
      const b = await person("b", { Email: "b@x.io" });
      afterNextCommit(() => h.portrait.deleteProfile(h.account, a));
      const merged = await h.portrait.merge(h.account, a, b);
      expect([merged.profile.id, merged.profile.identities]).toEqual([a, { Identity: "u-a", Email: "b@x.io" }]);
      expect(await h.portrait.getProfile(h.account, a)).toBeNull();
    });

    it("a PATCH and a flag change answer the person as written, though deleted right after the commit", async () => {
      const a = await person("a", { Identity: "u-a" });
      afterNextCommit(() => h.portrait.deleteProfile(h.account, a));
      const patched = await h.portrait.patchProfile(h.account, a, { Plan: "pro" });
      expect([patched.id, patched.properties.Plan]).toEqual([a, "pro"]);
      expect(await h.portrait.getProfile(h.account, a)).toBeNull();

      const b = await person("b", { Identity: "u-b" });
      afterNextCommit(() => h.portrait.deleteProfile(h.account, b));
      const flagged = await h.portrait.setFlags(h.account, b, { test: true });
      expect([flagged.id, flagged.properties.is_test_user]).toEqual([b, "Yes"]);
      expect(await h.portrait.getProfile(h.account, b)).toBeNull();
    });
  });

  // SEMANTICS §9: at most 20 excluded profiles, counting only those that can be placed in a control group.
  describe("control-group exclusions", () => {
    const exclude = (id: string) => h.portrait.setFlags(h.account, id, { controlGroupExcluded: true });
    const excludedCount = () => h.store.reader.countControlGroupExcluded(h.account.id);

    async function excludedPeople(n: number, prefix: string): Promise<string[]> {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) ids.push(await person(`${prefix}${i}`, { Identity: `${prefix}-u${i}` }));
      for (const id of ids) await exclude(id);
      return ids;
    }

    /**
     * `first` through this process, held after it has counted and written, before its COMMIT; meanwhile `second`
     * through another process (a second store on the database), until it ends or waits for a lock; then `first`
     * commits. Their outcomes (error codes, or "no error") and the answer of `second`.
     */
    async function atOnce<T>(first: () => Promise<unknown>, second: (other: Portrait) => Promise<T>) {
      const store = await PostgresStore.connect(h.databaseUrl!, { max: 2, concurrentWriters: 1 });
      const watcher = new pg.Client({ connectionString: h.databaseUrl! });
      await watcher.connect();
      try {
        const counted = deferred();
        const held = deferred();
        const write = h.store.write.bind(h.store);
        h.store.write = (accountId, fn) => {
          h.store.write = write;
          return write(accountId, async (tx) => {
            const value = await fn(tx);
            counted.resolve();
            await held.promise;
            return value;
          });
        };
        const one = codeOf(first());
        await counted.promise;
        let answer: T | undefined;
        let settled = false;
        const two = codeOf(
          second(new Portrait(store, h.clock)).then((value) => {
            answer = value;
          }),
        );
        void two.finally(() => {
          settled = true;
        });
        await until(async () => {
          if (settled) return true;
          const { rows } = await watcher.query(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
          );
          return rows[0].n > 0;
        });
        held.resolve();
        return { codes: [await one, await two], answer };
      } finally {
        await watcher.end();
        await store.close();
      }
    }

    it.runIf(store === "postgres")("holds against two exclusions at once through two processes", async () => {
      await excludedPeople(19, "ex");
      const [p, q] = [await person("p", { Identity: "p" }), await person("q", { Identity: "q" })];
      // The other process's exclusion of q must not count 19 as well while p's is being written.
      const { codes } = await atOnce(
        () => exclude(p),
        (other) => other.setFlags(h.account, q, { controlGroupExcluded: true }),
      );
      expect(codes).toEqual(["no error", "CONTROL_GROUP_EXCLUSION_LIMIT"]);
      expect(await excludedCount()).toBe(20);
    });

    it.runIf(store === "postgres")("holds against an exclusion and an undo at once through two processes", async () => {
      const [t, s] = (await excludedPeople(19, "ex")) as [string, string];
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      expect(await excludedCount()).toBe(18);
      const p = await person("p", { Identity: "p" });
      await exclude(await person("o", { Identity: "o" }));
      // p's exclusion takes the 20th slot; the undo, which would give s its slot back, must count it.
      const { codes, answer } = await atOnce(
        () => exclude(p),
        (other) => other.undoMerge(h.account, mergeId),
      );
      expect(codes).toEqual(["no error", "no error"]);
      expect(answer?.unapplied).toEqual([
        { profileId: s, key: "controlGroupExcluded", value: "true", code: "CONTROL_GROUP_EXCLUSION_LIMIT" },
      ]);
      expect(await excludedCount()).toBe(20);
    });

    it("an undo that would pass the limit leaves the source not excluded and says so", async () => {
      const [t, s] = (await excludedPeople(20, "ex")) as [string, string];
      const { mergeId } = await h.portrait.merge(h.account, t, s);
      // The tombstone frees its slot, and someone takes it.
      await exclude(await person("late", { Identity: "late" }));
      expect(await excludedCount()).toBe(20);

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.unapplied).toEqual([
        { profileId: s, key: "controlGroupExcluded", value: "true", code: "CONTROL_GROUP_EXCLUSION_LIMIT" },
      ]);
      expect(undone.target.flags.controlGroupExcluded).toBe(true);
      expect(undone.source.flags.controlGroupExcluded).toBe(false);
      expect(await excludedCount()).toBe(20);
    });

    it("an orphan or a tombstone does not use a slot, and one that comes back by an undo takes it again", async () => {
      await excludedPeople(18, "ex");
      const k = await person("k", { Identity: "k" });
      const visitor = (await h.ingest({ type: "event", deviceId: "v", name: "Browsed", ts: ts(2) })).results[0]!
        .profileId as string;
      await exclude(visitor);
      const s = await person("s", { Identity: "s" });
      await exclude(s);
      expect(await excludedCount()).toBe(20);
      // Login case 2: the excluded visitor becomes k's orphan, which is in no segment or audience (§5).
      await h.ingest({ type: "login", deviceId: "v", ts: ts(3), properties: { Identity: "k" } });
      expect((await h.portrait.requireProfile(h.account, visitor)).orphanOf).toBe(k);
      expect(await excludedCount()).toBe(19);
      await exclude(k);
      const { mergeId } = await h.portrait.merge(h.account, k, s);
      expect(await excludedCount()).toBe(19);
      await exclude(await person("late", { Identity: "late" }));
      expect(await excludedCount()).toBe(20);

      const undone = await h.portrait.undoMerge(h.account, mergeId);
      expect(undone.unapplied).toEqual([
        { profileId: s, key: "controlGroupExcluded", value: "true", code: "CONTROL_GROUP_EXCLUSION_LIMIT" },
      ]);
      expect(await excludedCount()).toBe(20);
    });
  });

  // SEMANTICS §10: "as one JSON document".
  describe("export", () => {
    it("is one snapshot: an event written while it reads is in none of it or all of it", async () => {
      const a = await person("a", { Identity: "u-a" });
      await h.ingest({ type: "event", deviceId: "a", name: "Viewed", ts: ts(5) });
      const before = (await h.portrait.requireProfile(h.account, a)).stats.events;
      // The moment the export first reads events, wherever it reads them, another event of a's is written first.
      let landed = false;
      const hooked = <R extends StoreReader>(r: R): R => {
        const listEvents = r.listEvents.bind(r);
        r.listEvents = async (...args) => {
          if (!landed) {
            landed = true;
            expect((await h.ingest({ type: "event", deviceId: "a", name: "Viewed", ts: ts(6) })).processed).toBe(1);
          }
          return listEvents(...args);
        };
        return r;
      };
      const { reader, snapshot } = h.store;
      const listEvents = reader.listEvents;
      hooked(reader);
      const snapshotOf = snapshot.bind(h.store);
      h.store.snapshot = (accountId, fn) => snapshotOf(accountId, (r) => fn(hooked(r)));
      let exported: { profile: { stats: { events: number } }; events: Array<{ anonymous: boolean }> };
      try {
        exported = (await h.portrait.exportProfile(h.account, a)) as typeof exported;
      } finally {
        reader.listEvents = listEvents;
        h.store.snapshot = snapshot;
      }
      expect(landed).toBe(true);
      expect(exported.profile.stats.events).toBe(before);
      expect(exported.events.filter((e) => !e.anonymous)).toHaveLength(before);
      expect((await h.portrait.requireProfile(h.account, a)).stats.events).toBe(before + 1);
    });
  });

  describe("delete", () => {
    it("removes the person with orphans and tombstones, releases devices, and a later event starts fresh", async () => {
      const a = await person("a", { Identity: "u-a" });
      const b = await person("b", { Identity: "u-b" });
      await h.ingest({ type: "event", deviceId: "x", name: "Viewed" });
      await h.ingest({ type: "login", deviceId: "x", properties: { Identity: "u-a" } });
      await h.portrait.merge(h.account, a, b);
      const deleted = await h.portrait.deleteProfile(h.account, a);
      expect(deleted.profiles).toBe(3);
      // u-a was released by the merge (u-b is newer), so one identity row remains to delete.
      expect(deleted.identities).toBe(1);
      expect(deleted.devices).toBe(3);
      expect(await h.portrait.getProfile(h.account, a)).toBeNull();
      expect(await h.portrait.getProfile(h.account, b)).toBeNull();
      const again = await h.ingest({ type: "event", deviceId: "a", name: "Viewed" });
      expect(again.results[0]?.profileId).not.toBe(a);
      expect((await h.portrait.requireProfile(h.account, again.results[0]?.profileId as string)).type).toBe(
        "anonymous",
      );
    });
  });
});
