/**
 * Segments stay exact while people change (issue 4): through the real pipeline on each store, the property index and
 * the event sets follow every write — properties set and deleted, merges (explicit and by conflict), undo with records
 * replayed after the merge, deletion, orphaning by a login switch. At each step every condition of a fixed list is
 * counted and paged by SQL and compared with the reference evaluator run on what the store holds, read back profile by
 * profile (own events only, SEMANTICS §5).
 */
import pg from "pg";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Json } from "../engine/segment/condition.js";
import { isMember, type Subject } from "../engine/segment/evaluate.js";
import { parseCondition } from "../engine/segment/parse.js";
import type { StoredEvent } from "../engine/types.js";
import { PostgresStore } from "../store/postgres/postgres-store.js";
import { type Harness, makeHarness, T0 } from "../test-support/portrait.js";
import { createTestDatabase, storesUnderTest, type TestDatabase } from "../test-support/postgres.js";
import { Segments } from "./segments.js";

const stores = await storesUnderTest();

const DAY = 86_400_000;
const ts = (daysAgo: number) => (T0 - daysAgo * DAY) / 1000;

const CONDITIONS: Json[] = [
  { did: "Charged" },
  { did: "Charged", count: { op: "gte", value: 2 } },
  { did: "Charged", count: { op: "eq", value: 3 }, withinLast: { days: 30 } },
  { did: "Charged", count: { op: "lt", value: 2 } },
  { did: "Charged", sum: { property: "Amount", op: "gte", value: 100 } },
  { did: "Charged", avg: { property: "Amount", op: "lt", value: 30 } },
  { did: "Charged", firstTime: { withinLast: { days: 3 } } },
  { did: "Charged", lastTime: { withinLast: { days: 1 } } },
  { didNot: "App Uninstalled" },
  { didAny: ["App Uninstalled", "Profile Merged"] },
  { did: "Profile Demerged" },
  { did: "Viewed", where: [{ property: "Product", op: "eq", value: "Shoe" }] },
  { property: "City", op: "eq", value: "Paris" },
  { property: "City", op: "neq", value: "Paris" },
  { property: "Plan", op: "exists" },
  { property: "Tags", op: "contains", value: "vip" },
  { property: "Points", op: "gte", value: 10 },
  { property: "Age", op: "between", value: [25, 35] },
  { type: "anonymous" },
  { type: "identified" },
  { type: "customer" },
  { reachableBy: "email" },
  {
    all: [
      { property: "City", op: "eq", value: "Paris" },
      { did: "Charged", count: { op: "gte", value: 2 } },
    ],
  },
  { any: [{ property: "City", op: "eq", value: "Lyon" }, { not: { did: "Viewed" } }] },
];

describe.each(stores)("segments follow the data through merges, undo, deletion and orphaning on %s", (store) => {
  let h: Harness;
  let segments: Segments;

  beforeEach(async () => {
    h = await makeHarness({}, store);
    segments = new Segments(h.portrait);
  });
  afterEach(async () => {
    await h.close();
  });

  /** Every profile of the account as the evaluator needs it, read back from the store. */
  async function subjects(): Promise<Subject[]> {
    const r = h.store.reader;
    const out: Subject[] = [];
    let after: string | null = null;
    for (;;) {
      const ids: string[] = await r.listProfileIds(h.account.id, after, 100);
      if (ids.length === 0) return out;
      for (const id of ids) {
        const state = (await r.getProfile(h.account.id, id))!;
        const events: StoredEvent[] = [];
        let before: { ts: number; seq: number } | null = null;
        for (;;) {
          const page = await r.listEvents(h.account.id, [id], { before, limit: 500 });
          events.push(...page.events);
          if (!page.next) break;
          before = page.next;
        }
        const documents = await r.listDocuments(h.account.id, id);
        const devices = await r.listDevices(h.account.id, id);
        out.push({ state, events, documents, devices });
      }
      after = ids[ids.length - 1]!;
    }
  }

  /** SQL = evaluator for every condition; returns the members of each, for the test's own expectations. */
  async function check(step: string): Promise<Map<string, string[]>> {
    const all = await subjects();
    const ctx = { now: h.clock.now(), timezone: h.account.settings.timezone, segment: () => undefined };
    const out = new Map<string, string[]>();
    for (const where of CONDITIONS) {
      const c = parseCondition(where, { timezone: h.account.settings.timezone });
      const expected = all
        .filter((s) => isMember(c, s, ctx))
        .map((s) => s.state.id)
        .sort();
      const label = `${step}: ${JSON.stringify(where)}`;
      const page = await segments.query(h.account, { where, limit: 1000 });
      expect(
        page.profiles.map((p) => p.id),
        label,
      ).toEqual(expected);
      expect(page.count, label).toBe(expected.length);
      out.set(JSON.stringify(where), expected);
    }
    return out;
  }

  const members = (m: Map<string, string[]>, where: Json) => m.get(JSON.stringify(where));

  async function login(deviceId: string, properties: Record<string, unknown>): Promise<string> {
    const r = await h.ingest({ type: "login", deviceId, properties, ts: ts(10) });
    expect(r.status).toBe("success");
    return r.results[0]!.profileId as string;
  }

  async function events(
    deviceId: string,
    list: Array<[name: string, daysAgo: number, props?: Record<string, unknown>]>,
  ) {
    const r = await h.ingest(
      ...list.map(([name, daysAgo, properties]) => ({ type: "event", deviceId, name, ts: ts(daysAgo), properties })),
    );
    expect(r.status).toBe("success");
  }

  it("merge → undo (with records after the merge replayed) → delete", async () => {
    const p = await login("dev-p", {
      Identity: "u-p",
      Email: "p@x.io",
      City: "Paris",
      Plan: "pro",
      DOB: "1995-06-01",
      Tags: ["vip"],
    });
    const q = await login("dev-q", { Identity: "u-q", City: "Lyon", Points: 5 });
    await events("dev-p", [
      ["Charged", 2, { Amount: 40 }],
      ["Charged", 5, { Amount: 20 }],
      ["Viewed", 1, { Product: "Shoe" }],
    ]);
    await events("dev-q", [
      ["Charged", 0.5, { Amount: 50 }],
      ["App Uninstalled", 3],
    ]);
    let m = await check("before the merge");
    expect(members(m, { did: "Charged", count: { op: "gte", value: 2 } })).toEqual([p]);
    expect(members(m, { didNot: "App Uninstalled" })).toEqual([p]);

    const { mergeId } = await h.portrait.merge(h.account, p, q);
    m = await check("after the merge");
    // Q's events moved to P: three purchases, the uninstall, and Profile Merged; Q is a tombstone, never a member.
    expect(members(m, { did: "Charged", count: { op: "eq", value: 3 }, withinLast: { days: 30 } })).toEqual([p]);
    expect(members(m, { didNot: "App Uninstalled" })).toEqual([]);
    expect(members(m, { property: "Points", op: "gte", value: 10 })).toEqual([]);

    // Records after the merge are journalled and replayed by the undo, each to the profile its handle names.
    await h.ingest(
      { type: "profile", deviceId: "dev-q", properties: { Points: { $incr: 7 } }, ts: ts(0.2) },
      { type: "event", deviceId: "dev-q", name: "Charged", ts: ts(0.1), properties: { Amount: 5 } },
      { type: "profile", deviceId: "dev-p", properties: { City: "Paris", Plan: { $delete: true } }, ts: ts(0.2) },
    );
    m = await check("records after the merge");
    expect(members(m, { property: "Points", op: "gte", value: 10 })).toEqual([p]);
    expect(members(m, { property: "Plan", op: "exists" })).toEqual([]);

    await h.portrait.undoMerge(h.account, mergeId);
    m = await check("after the undo");
    expect(members(m, { property: "Points", op: "gte", value: 10 })).toEqual([q]);
    expect(members(m, { did: "Profile Demerged" })).toEqual([p, q].sort());
    expect(members(m, { did: "Charged", count: { op: "gte", value: 2 } })).toEqual([p, q].sort());

    await h.portrait.deleteProfile(h.account, q);
    m = await check("after deleting Q");
    expect(members(m, { property: "City", op: "neq", value: "Paris" })).toEqual([]);
    expect(members(m, { did: "Charged" })).toEqual([p]);

    await h.portrait.deleteProfile(h.account, p);
    m = await check("after deleting P");
    for (const list of m.values()) expect(list).toEqual([]);
  });

  it("a merge by conflict (mergePolicy merge) and a repeated Charged ID", async () => {
    await h.settings({ mergePolicy: "merge" });
    const a = await login("dev-a", { Email: "a@x.io", City: "Paris" });
    await h.ingest({
      type: "event",
      deviceId: "dev-b",
      name: "Charged",
      ts: ts(1),
      properties: { Amount: 30, "Charged ID": "c-1" },
    });
    await events("dev-a", [["Charged", 1, { Amount: 30, "Charged ID": "c-1" }]]);
    await check("before the conflict");
    // dev-b's anonymous profile claims a@x.io: it is merged into its owner, the repeated Charged ID dropped.
    const r = await h.ingest({ type: "profile", deviceId: "dev-b", properties: { Email: "a@x.io", Tags: ["vip"] } });
    expect(r.status).toBe("success");
    const m = await check("after the conflict");
    expect(members(m, { property: "Tags", op: "contains", value: "vip" })).toEqual([a]);
    expect(members(m, { did: "Charged", count: { op: "lt", value: 2 } })).toEqual([a]);
  });

  it("orphans (a login switch) are never members and their events never count", async () => {
    const person = await login("dev-main", { Identity: "u-1", City: "Paris", Email: "one@x.io" });
    await events("dev-main", [["Charged", 1, { Amount: 10 }]]);
    await events("dev-anon", [
      ["Charged", 1, { Amount: 500 }],
      ["Charged", 2, { Amount: 500 }],
      ["App Uninstalled", 1],
    ]);
    let m = await check("an anonymous device");
    expect(members(m, { type: "customer" })).toHaveLength(2);
    const switched = await h.ingest({ type: "login", deviceId: "dev-anon", properties: { Identity: "u-1" } });
    expect(switched.results[0]).toMatchObject({ outcome: "switched", profileId: person });
    m = await check("after the switch");
    expect(members(m, { type: "customer" })).toEqual([person]);
    expect(members(m, { did: "Charged", count: { op: "gte", value: 2 } })).toEqual([]);
    expect(members(m, { didNot: "App Uninstalled" })).toEqual([person]);
    expect(members(m, { type: "anonymous" })).toEqual([]);
    expect(members(m, { did: "Charged", sum: { property: "Amount", op: "gte", value: 100 } })).toEqual([]);
    // Deleting the person cascades to the orphan (SEMANTICS §10).
    await h.portrait.deleteProfile(h.account, person);
    m = await check("after deleting the person");
    for (const list of m.values()) expect(list).toEqual([]);
  });

  it("follows property edits, including a record that fails inside a batch", async () => {
    const p = await login("dev-p", { Identity: "u-p", City: "Paris", Tags: ["a"] });
    await check("created");
    const r = await h.ingest(
      { type: "profile", deviceId: "dev-p", properties: { City: "Lyon", Tags: { $add: "vip" } }, ts: ts(5) },
      // Fails (a number for a string key): nothing of it applies, the record before it stays applied.
      { type: "profile", deviceId: "dev-p", properties: { City: 5, Tags: { $remove: "vip" } }, ts: ts(4) },
      { type: "profile", deviceId: "dev-p", properties: { Points: { $incr: 12 } }, ts: ts(4) },
    );
    expect(r.unprocessed).toHaveLength(1);
    let m = await check("edited");
    expect(members(m, { property: "Tags", op: "contains", value: "vip" })).toEqual([p]);
    expect(members(m, { property: "City", op: "neq", value: "Paris" })).toEqual([p]);
    expect(members(m, { property: "Points", op: "gte", value: 10 })).toEqual([p]);
    await h.portrait.patchProfile(h.account, p, { City: { $delete: true }, Tags: { $remove: ["a", "vip"] } });
    m = await check("deleted keys");
    expect(members(m, { property: "City", op: "neq", value: "Paris" })).toEqual([p]);
    expect(members(m, { property: "Tags", op: "contains", value: "vip" })).toEqual([]);
  });
});

describe.each(stores)("a saved segment of many members on %s: paging and the CSV export", (store) => {
  let h: Harness;
  let segments: Segments;
  /** PostgreSQL: the test's own database, so that its sessions can be watched. */
  let database: TestDatabase | null = null;
  /** Member ids, in id order. */
  let members: string[];
  let segmentId: string;

  beforeEach(async () => {
    if (store === "postgres") {
      database = await createTestDatabase();
      h = await makeHarness({}, await PostgresStore.connect(database!.url));
    } else {
      h = await makeHarness({}, store);
    }
    segments = new Segments(h.portrait);
    // 1,800 profiles, two in three of them in Paris: members and non-members interleave in id order.
    const ids: string[] = [];
    for (let batch = 0; batch < 3; batch++) {
      const r = await h.ingest(
        ...Array.from({ length: 600 }, (_, i) => ({
          type: "profile",
          deviceId: `dev-${batch}-${i}`,
          properties: { City: i % 3 === 2 ? "Lyon" : "Paris", Rank: batch * 600 + i },
        })),
      );
      expect(r.status).toBe("success");
      ids.push(...r.results.map((x, i) => (i % 3 === 2 ? "" : (x.profileId as string))));
    }
    members = ids.filter((id) => id !== "").sort();
    expect(members).toHaveLength(1200);
    segmentId = (
      await segments.create(h.account, { name: "Paris", where: { property: "City", op: "eq", value: "Paris" } })
    ).id;
  });
  afterEach(async () => {
    await h.close();
    await database?.drop();
    database = null;
  });

  it("pages the members with the cursor: every member exactly once, in id order, over many pages", async () => {
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    for (;;) {
      const page = await segments.profiles(h.account, segmentId, { limit: 37, cursor });
      pages++;
      expect(page.count).toBe(1200);
      expect(page.profiles.length).toBe(page.nextCursor === null ? 1200 % 37 : 37);
      seen.push(...page.profiles.map((p) => p.id));
      cursor = page.nextCursor;
      if (cursor === null) break;
      expect(pages).toBeLessThan(100);
    }
    expect(pages).toBe(Math.ceil(1200 / 37));
    expect(seen).toEqual(members);
    expect(new Set(seen).size).toBe(1200);
    // A page past the last member is empty and ends there.
    const last = await segments.profiles(h.account, segmentId, { limit: 1000, cursor: null });
    const after = await segments.profiles(h.account, segmentId, { limit: 1000, cursor: last.nextCursor });
    expect(after.profiles.map((p) => p.id)).toEqual(members.slice(1000));
    expect(after.nextCursor).toBeNull();
  });

  it("streams the CSV: each batch of rows is written as the store reads it, from one cursor", async () => {
    // Watch the store's stream (the real one, on the real database) to see how far it has been read.
    const real = h.store.segments.streamSegment.bind(h.store.segments);
    let batchesRead = 0;
    const spy = vi.spyOn(h.store.segments, "streamSegment").mockImplementation(async function* (...args) {
      for await (const batch of real(...args)) {
        batchesRead++;
        yield batch;
      }
    } as typeof h.store.segments.streamSegment);
    /** Sessions holding the export's cursor open (PostgreSQL). */
    const openCursors = async (): Promise<number> => {
      const client = new pg.Client(database!.url);
      await client.connect();
      try {
        const r = await client.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND state = 'idle in transaction' AND query LIKE 'FETCH % FROM segment_export'`,
        );
        return r.rows[0].n as number;
      } finally {
        await client.end();
      }
    };
    try {
      const lines = (await segments.export(h.account, segmentId))[Symbol.asyncIterator]();
      const header = await lines.next();
      expect(header.value).toBe("id,type,Identity,Email,City,Rank\r\n");
      const first = await lines.next();
      // One batch (500 members) read, one written: nothing collected ahead of the reader.
      expect(batchesRead).toBe(1);
      const firstRows = (first.value as string).split("\r\n").slice(0, -1);
      expect(firstRows).toHaveLength(500);
      if (store === "postgres") expect(await openCursors()).toBe(1);
      const rows = [...firstRows];
      for (;;) {
        const next = await lines.next();
        if (next.done) break;
        expect(batchesRead).toBe(1 + rows.length / 500);
        rows.push(...(next.value as string).split("\r\n").slice(0, -1));
      }
      expect(batchesRead).toBe(3);
      expect(rows.map((r) => r.split(",")[0])).toEqual(members);
      expect(rows[0]).toMatch(/^[0-9a-f]{32},anonymous,,,Paris,\d+$/);
      if (store === "postgres") expect(await openCursors()).toBe(0);

      // A reader that stops early releases the cursor.
      const early = (await segments.export(h.account, segmentId))[Symbol.asyncIterator]();
      await early.next();
      await early.next();
      await early.return?.(undefined);
      if (store === "postgres") expect(await openCursors()).toBe(0);
      expect(spy).toHaveBeenCalledTimes(2);
    } finally {
      spy.mockRestore();
    }
  });
});
