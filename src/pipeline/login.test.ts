/** SEMANTICS §3 Login, every case, and §5 orphans, through the service on each store (SQLite, PostgreSQL). */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { storesUnderTest } from "../test-support/postgres.js";

let h: Harness;

// PostgreSQL is left out (reason printed) when no server answers outside CI.
const stores = await storesUnderTest();

const ts = (s: number) => 1_790_000_000 + s;
const login = (deviceId: string, properties: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  type: "login",
  deviceId,
  properties,
  ...extra,
});
const event = (deviceId: string, name: string, extra: Record<string, unknown> = {}) => ({
  type: "event",
  deviceId,
  name,
  ...extra,
});

async function profileOf(deviceId: string) {
  const [p] = await h.portrait.findProfiles(h.account, { kind: "device", deviceId });
  return p;
}

describe.each(stores)("%s store", (store) => {
  beforeEach(async () => {
    h = await makeHarness({}, store);
  });
  afterEach(async () => {
    await h.close();
  });

  describe("login", () => {
    it("case 1: an anonymous device becomes identified and keeps its earlier events (Scenario 1)", async () => {
      const r1 = await h.ingest(
        event("d1", "Product Viewed", { ts: ts(1) }),
        event("d1", "Added To Cart", { ts: ts(2) }),
      );
      const anonId = r1.results[0]?.profileId;
      expect((await profileOf("d1"))?.type).toBe("anonymous");

      const r2 = await h.ingest(
        login("d1", { Identity: "u-1", Email: " Ana@X.io ", Name: "Ana" }, { ts: ts(3), context: { platform: "ios" } }),
      );
      expect(r2.results[0]).toMatchObject({ profileId: anonId, outcome: "identified" });
      const p = await profileOf("d1");
      expect(p?.id).toBe(anonId);
      expect(p?.type).toBe("identified");
      expect(p?.identities).toEqual({ Identity: "u-1", Email: "ana@x.io" });
      expect(p?.properties.Name).toBe("Ana");
      // 2 events + 2 Identity Set system events, all counted.
      expect(p?.stats.events).toBe(4);
      const timeline = await h.portrait.timeline(h.account, anonId as string, { limit: 10 });
      expect(timeline.events.filter((e) => !e.anonymous).map((e) => e.name)).toContain("Product Viewed");
      expect(timeline.events.every((e) => !e.anonymous)).toBe(true);
      // Portrait's own events store the device and platform of the record that caused them, as client events do.
      const identitySet = timeline.events.filter((e) => e.name === "Identity Set");
      expect(identitySet.map((e) => [e.deviceId, e.platform])).toEqual([
        ["d1", "ios"],
        ["d1", "ios"],
      ]);
    });

    it("case 2: an anonymous device that logs in as a known person switches; its events show as anonymous and do not count (Scenario 2)", async () => {
      const known = (await h.ingest(login("phone", { Identity: "u-1" }, { ts: ts(1) }))).results[0]
        ?.profileId as string;
      const before = (await h.portrait.requireProfile(h.account, known)).stats.events;
      const anon = (await h.ingest(event("laptop", "Product Viewed", { ts: ts(2) }))).results[0]?.profileId as string;

      const r = await h.ingest(login("laptop", { Identity: "u-1", Name: "Ana" }, { ts: ts(3) }));
      expect(r.results[0]).toMatchObject({ profileId: known, outcome: "switched" });
      expect((await profileOf("laptop"))?.id).toBe(known);

      const orphan = await h.portrait.requireProfile(h.account, anon);
      expect(orphan.orphanOf).toBe(known);
      expect(orphan.type).toBe("anonymous");
      const person = await h.portrait.requireProfile(h.account, known);
      expect(person.properties.Name).toBe("Ana");
      expect(person.stats.orphans).toBe(1);
      expect(person.stats.events).toBe(before);
      const timeline = await h.portrait.timeline(h.account, known, { limit: 10 });
      const viewed = timeline.events.find((e) => e.name === "Product Viewed");
      expect(viewed).toMatchObject({ anonymous: true, profileId: anon });
    });

    it("case 2: an orphan's Charged events make nobody a customer, and its own stats count none of them (§2, §5)", async () => {
      const known = (await h.ingest(login("phone", { Identity: "u-c" }, { ts: ts(1) }))).results[0]
        ?.profileId as string;
      const charged = event("tablet", "Charged", { ts: ts(2), properties: { Amount: 42 } });
      const anon = (await h.ingest(charged)).results[0]?.profileId as string;
      expect((await h.portrait.requireProfile(h.account, anon)).type).toBe("customer"); // counted while its own
      await h.ingest(login("tablet", { Identity: "u-c" }, { ts: ts(3) }));

      const orphan = await h.portrait.requireProfile(h.account, anon);
      expect(orphan.orphanOf).toBe(known);
      expect(orphan.type).toBe("anonymous");
      expect(orphan.stats).toMatchObject({ events: 0, revenue: 0 });
      const person = await h.portrait.requireProfile(h.account, known);
      expect(person.type).toBe("identified");
      expect(person.stats.revenue).toBe(0);
    });

    it("case 2 with a device never seen before switches without leaving an empty orphan", async () => {
      const known = (await h.ingest(login("phone", { Email: "a@x.io" }))).results[0]?.profileId;
      const r = await h.ingest(login("fresh", { Email: "A@x.io" }));
      expect(r.results[0]).toMatchObject({ profileId: known, outcome: "switched" });
      expect((await h.portrait.requireProfile(h.account, known as string)).stats.orphans).toBe(0);
    });

    it("case 3: a login carrying one of Cur's values appends the rest, leaving other people's values unapplied", async () => {
      const other = (await h.ingest(login("d2", { Email: "b@x.io" }))).results[0]?.profileId;
      const me = (await h.ingest(login("d1", { Identity: "u-1" }))).results[0]?.profileId;
      const r = await h.ingest(login("d1", { Identity: "u-1", Email: "b@x.io", Name: "Ana" }));
      expect(r.results[0]).toMatchObject({
        profileId: me,
        outcome: "appended",
        unapplied: [{ key: "Email", code: "IDENTITY_CONFLICT" }],
      });
      const p = await h.portrait.requireProfile(h.account, me as string);
      expect(p.identities).toEqual({ Identity: "u-1" });
      expect(p.properties.Name).toBe("Ana");
      expect((await h.portrait.requireProfile(h.account, other as string)).identities).toEqual({ Email: "b@x.io" });
    });

    it("case 4: an identified device logging in as someone new creates a new person and leaves Cur untouched", async () => {
      const first = (await h.ingest(login("shared", { Identity: "u-1", Name: "Ana" }))).results[0]?.profileId;
      const r = await h.ingest(login("shared", { Identity: "u-2", Name: "Bo" }));
      expect(r.results[0]?.outcome).toBe("created");
      const second = r.results[0]?.profileId;
      expect(second).not.toBe(first);
      expect((await profileOf("shared"))?.id).toBe(second);
      const cur = await h.portrait.requireProfile(h.account, first as string);
      expect(cur.properties.Name).toBe("Ana");
      expect(cur.devices).toEqual([]);
    });

    it("case 4: an identified device logging in as another known person switches to them", async () => {
      const bo = (await h.ingest(login("bo-phone", { Identity: "u-2" }))).results[0]?.profileId;
      await h.ingest(login("shared", { Identity: "u-1" }));
      const r = await h.ingest(login("shared", { Identity: "u-2" }));
      expect(r.results[0]).toMatchObject({ profileId: bo, outcome: "switched" });
      expect((await h.portrait.requireProfile(h.account, bo as string)).devices.sort()).toEqual(["bo-phone", "shared"]);
    });

    it("values owned by two different profiles never merge them: the first by key priority wins", async () => {
      const byIdentity = (await h.ingest(login("a", { Identity: "u-1" }))).results[0]?.profileId;
      await h.ingest(login("b", { Email: "b@x.io" }));
      const r = await h.ingest(login("c", { Email: "b@x.io", Identity: "u-1" }));
      expect(r.results[0]).toMatchObject({
        profileId: byIdentity,
        outcome: "switched",
        unapplied: [{ key: "Email", code: "IDENTITY_CONFLICT" }],
      });
    });

    it("refuses a login without identity values, with junk identities, or without a device", async () => {
      const r = await h.ingest(
        login("d", { Name: "x" }),
        // §11: a junk value is INVALID_IDENTITY, but MISSING_IDENTITY when it was the login's only one.
        login("d", { Identity: "anonymous", Name: "x" }),
        login("d", { Identity: "NULL", Email: " undefined " }),
        login("d", { FBID: "0" }),
        login("d", { Identity: "u-9", Email: "null" }),
        login("d", { Email: "a@x.io", FBID: "nan" }),
        login("d", { Email: "not-an-email" }),
        { type: "login", identity: { Email: "a@x.io" }, properties: { Email: "a@x.io" } },
      );
      expect(r.status).toBe("fail");
      expect(r.unprocessed.map((u) => [u.code, u.field])).toEqual([
        ["MISSING_IDENTITY", "properties"],
        ["MISSING_IDENTITY", "properties.Identity"],
        ["MISSING_IDENTITY", "properties.Identity"],
        ["MISSING_IDENTITY", "properties.FBID"],
        ["INVALID_IDENTITY", "properties.Email"],
        ["INVALID_IDENTITY", "properties.FBID"],
        ["INVALID_EMAIL", "properties.Email"],
        ["INVALID_HANDLE", "deviceId"],
      ]);
      expect(await profileOf("d")).toBeUndefined();
      expect(await h.portrait.findProfiles(h.account, { kind: "identity", key: "Identity", value: "u-9" })).toEqual([]);
    });

    it("parallel logins with one new identity on different devices create exactly one profile", async () => {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => h.ingest(login(`dev-${i}`, { Identity: "same-person" }))),
      );
      const ids = new Set(results.map((r) => r.results[0]?.profileId));
      expect(ids.size).toBe(1);
      const [p] = await h.portrait.findProfiles(h.account, { kind: "identity", key: "Identity", value: "same-person" });
      expect(p?.devices).toHaveLength(20);
    });
  });

  it("answers system.location in API.md's key order on every store", async () => {
    const location = { lat: 48.85, lon: 2.35, city: "Paris", region: "IDF", country: "FR" };
    await h.ingest(login("loc-1", { Identity: "loc-1" }, { ts: ts(1), context: { location } }));
    const p = await profileOf("loc-1");
    expect(Object.keys(p?.system.location ?? {})).toEqual(["city", "region", "country", "lat", "lon"]);
    expect(p?.system.location).toEqual(location);
  });

  it("leaves Timezone to context after a client write that lost on ts, not after one that won (§11)", async () => {
    const zone = async () => (await profileOf("tz-1"))?.system.timezone;
    await h.ingest(event("tz-1", "Opened", { ts: ts(100), context: { timezone: "Europe/Paris" } }));
    await h.ingest({ type: "profile", deviceId: "tz-1", ts: ts(10), properties: { Timezone: "Asia/Tokyo" } });
    expect(await zone()).toBe("Europe/Paris");
    await h.ingest(event("tz-1", "Opened", { ts: ts(200), context: { timezone: "Europe/Berlin" } }));
    expect(await zone()).toBe("Europe/Berlin");
    await h.ingest({ type: "profile", deviceId: "tz-1", ts: ts(300), properties: { Timezone: "Asia/Tokyo" } });
    await h.ingest(event("tz-1", "Opened", { ts: ts(400), context: { timezone: "Europe/Oslo" } }));
    expect(await zone()).toBe("Asia/Tokyo");
  });

  describe("an identity key's $delete (SEMANTICS §4 ordering)", () => {
    const push = (properties: Record<string, unknown>, at: number) => ({
      type: "profile",
      identity: { Identity: "del-1" },
      ts: ts(at),
      properties,
    });
    const byEmail = (value: string) => h.portrait.findProfiles(h.account, { kind: "identity", key: "Email", value });

    it("keeps out an Email older than the delete, through a profile push or a login", async () => {
      await h.ingest(push({ Email: "first@x.io" }, 10), login("dd-1", { Identity: "del-1" }, { ts: ts(11) }));
      await h.ingest(push({ Email: { $delete: true } }, 30));
      const late = await h.ingest(
        push({ Email: "older@x.io" }, 20),
        login("dd-1", { Identity: "del-1", Email: "older-login@x.io" }, { ts: ts(25) }),
      );
      expect(late.results.map((r) => r.outcome)).toEqual(["updated", "appended"]);
      const [p] = await h.portrait.findProfiles(h.account, { kind: "identity", key: "Identity", value: "del-1" });
      expect(p?.identities).toEqual({ Identity: "del-1" });
      expect(p?.properties.Email).toBeUndefined();
      expect(await byEmail("older@x.io")).toEqual([]);
      expect(await byEmail("older-login@x.io")).toEqual([]);
      // Another person may take the value the delete kept out.
      const other = await h.ingest(login("dd-2", { Email: "older@x.io" }, { ts: ts(40) }));
      expect(other.results[0]?.outcome).toBe("identified");
      expect((await byEmail("older@x.io"))[0]?.id).toBe(other.results[0]?.profileId);
    });

    it("lets an Email newer than the delete in", async () => {
      await h.ingest(push({ Email: "first@x.io" }, 10));
      await h.ingest(push({ Email: { $delete: true } }, 30), push({ Email: "newer@x.io" }, 31));
      const [p] = await byEmail("newer@x.io");
      expect(p?.identities).toEqual({ Identity: "del-1", Email: "newer@x.io" });
      expect(p?.properties.Email).toBe("newer@x.io");
    });
  });
});
