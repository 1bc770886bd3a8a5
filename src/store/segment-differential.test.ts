/**
 * The differential test of segments (issue 4): random profiles (properties of every type, DOB, flags, bucket, events,
 * documents, devices, orphans and tombstones) are written through the Store, random conditions are counted and
 * paged by each adapter's SQL, and the result must be exactly the set the reference evaluator (engine/segment/
 * evaluate.ts `isMember`) accepts for the same subjects — on SQLite and on PostgreSQL.
 *
 * Profiles are written in the ways the pipeline writes them: inserted whole, inserted blank then updated, and updated
 * from other properties after a locked read (so the property index is rewritten path by path).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newProfileState } from "../engine/profile.js";
import {
  ARB_NOW,
  ARB_PARSE_OPTIONS,
  ARB_SEGMENTS,
  arbConditionJson,
  arbContext,
  arbSubject,
} from "../engine/segment/arbitrary.js";
import type { Condition, Json } from "../engine/segment/condition.js";
import { type EvaluateContext, isMember, type Subject } from "../engine/segment/evaluate.js";
import { parseCondition, referencedSegments } from "../engine/segment/parse.js";
import type { ProfileState, PropertyEntry } from "../engine/types.js";
import { createTestDatabase, type StoreKind, storesUnderTest, type TestDatabase } from "../test-support/postgres.js";
import { blankProfile, newAccount, newId } from "./conformance/fixtures.js";
import { PostgresStore } from "./postgres/postgres-store.js";
import { sqlitePlanning } from "./sqlite/sqlite-segments.js";
import { SqliteStore } from "./sqlite/sqlite-store.js";
import type { Store } from "./store.js";

const stores = await storesUnderTest();

/**
 * SQLite's planner picks a starting set and each leaf's form (sqlite-segments.ts); results must not depend on it, so
 * on SQLite every check runs under each forced choice as well as the planner's own.
 */
const PLANS: Array<typeof sqlitePlanning.force> = [
  undefined,
  { driver: false, forms: "set" },
  { driver: false, forms: "row" },
  { driver: true, forms: "set" },
  { driver: true, forms: "row" },
];

async function underEveryPlan(kind: StoreKind, check: (plan: string) => Promise<void>): Promise<void> {
  if (kind !== "sqlite") return check("");
  try {
    for (const force of PLANS) {
      sqlitePlanning.force = force;
      await check(force ? ` [plan ${JSON.stringify(force)}]` : "");
    }
  } finally {
    sqlitePlanning.force = undefined;
  }
}

const SEGMENTS = new Map(Object.entries(ARB_SEGMENTS).map(([id, j]) => [id, parseCondition(j, ARB_PARSE_OPTIONS)]));
const CTX: EvaluateContext = arbContext((id) => SEGMENTS.get(id));

/** How a subject reaches the store (see the header). */
type WriteMode = 0 | 1 | 2;

async function writeSubject(
  store: Store,
  accountId: string,
  s: Subject,
  mode: WriteMode,
  other: Subject,
): Promise<Subject> {
  const id = newId();
  const state: ProfileState = { ...structuredClone(s.state), id };
  await store.write(accountId, async (tx) => {
    if (mode === 0) {
      await tx.insertProfile(accountId, state);
    } else {
      await tx.insertProfile(accountId, mode === 1 ? blankProfile(id) : { ...structuredClone(other.state), id });
    }
  });
  if (mode !== 0) {
    await store.write(accountId, async (tx) => {
      if (mode === 2) await tx.lockProfile(accountId, id);
      await tx.updateProfile(accountId, state);
    });
  }
  const events = s.events.map((e) => ({ ...e, profileId: id }));
  const documents = s.documents.map((d, i) => ({ ...d, profileId: id, userAccountId: `${id}-${i}` }));
  await store.write(accountId, async (tx) => {
    if (events.length > 0) {
      const seqs = await tx.insertEvents(
        accountId,
        events.map(({ seq: _seq, ...e }) => e),
      );
      seqs.forEach((seq, i) => {
        (events[i] as { seq: number }).seq = seq;
      });
    }
    for (const d of documents) await tx.putDocument(accountId, d);
    for (const [i, d] of s.devices.entries()) {
      await tx.upsertDevice(accountId, {
        deviceId: `${id}-d${i}`,
        profileId: id,
        pushToken: d.pushToken,
        platform: null,
      });
    }
  });
  return { state, events, documents, devices: s.devices };
}

async function allPages(store: Store, accountId: string, c: Condition, limit: number): Promise<string[]> {
  const ids: string[] = [];
  let after: string | null = null;
  for (let guard = 0; guard < 100; guard++) {
    const page = await store.segments.querySegment(accountId, c, CTX, { after, limit });
    ids.push(...page.ids);
    if (page.next === null) return ids;
    expect(page.ids.length).toBe(limit);
    after = page.next;
  }
  throw new Error("querySegment never ended");
}

async function streamed(store: Store, accountId: string, c: Condition): Promise<string[]> {
  const ids: string[] = [];
  for await (const batch of store.segments.streamSegment(accountId, c, CTX, { batchSize: 2 })) {
    ids.push(...batch.map((s) => s.id));
  }
  return ids;
}

/** A store of this kind for the describe block: opened before its tests, closed and removed after them. */
function useStore(kind: StoreKind, opened: (store: Store) => void): void {
  let store: Store | null = null;
  let dir: string | null = null;
  let database: TestDatabase | null = null;
  beforeAll(async () => {
    if (kind === "sqlite") {
      dir = mkdtempSync(path.join(tmpdir(), "portrait-segments-"));
      store = SqliteStore.open(path.join(dir, "portrait.db"));
    } else {
      // A locale's default collation, under which text compared without COLLATE "C" would order differently.
      database = await createTestDatabase({ icuLocale: "en-US" });
      if (database === null) throw new Error("no PostgreSQL server");
      store = await PostgresStore.connect(database.url);
      await store.migrate();
    }
    opened(store);
  });
  afterAll(async () => {
    await store?.close();
    await database?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
}

describe.each(stores)(
  "segments on %s: the SQL returns exactly the profiles the reference evaluator accepts",
  (kind: StoreKind) => {
    let store: Store;
    useStore(kind, (opened) => {
      store = opened;
    });

    async function freshAccount(): Promise<string> {
      const account = newAccount(ARB_NOW);
      await store.createAccount(account);
      for (const [id, where] of Object.entries(ARB_SEGMENTS)) {
        const refs = referencedSegments(SEGMENTS.get(id)!);
        const saved = await store.segments.insertSegment(account.id, { id, name: id, where, createdAt: ARB_NOW }, refs);
        expect(saved).toEqual({ inserted: true });
      }
      return account.id;
    }

    const subjects = fc.array(
      fc.record({
        subject: arbSubject({ unmatchable: true }),
        mode: fc.constantFrom<WriteMode>(0, 1, 2),
        other: arbSubject(),
      }),
      { minLength: 1, maxLength: 7 },
    );

    it("counts, pages and streams exactly the members, for random profiles and conditions", async () => {
      await fc.assert(
        fc.asyncProperty(
          subjects,
          fc.array(arbConditionJson(), { minLength: 1, maxLength: 6 }),
          async (list, wheres) => {
            const accountId = await freshAccount();
            const written: Subject[] = [];
            for (const { subject, mode, other } of list) {
              written.push(await writeSubject(store, accountId, subject, mode, other));
            }
            for (const where of wheres) {
              const c = parseCondition(where as Json, ARB_PARSE_OPTIONS);
              const expected = written
                .filter((s) => isMember(c, s, CTX))
                .map((s) => s.state.id)
                .sort();
              await underEveryPlan(kind, async (plan) => {
                const label = JSON.stringify(where) + plan;
                expect(await store.segments.countSegment(accountId, c, CTX), label).toBe(expected.length);
                expect(await allPages(store, accountId, c, 3), label).toEqual(expected);
              });
            }
          },
        ),
        { numRuns: kind === "sqlite" ? 250 : 120 },
      );
      // ≈ 8 s alone on PostgreSQL; several times that when the whole suite shares two cores.
    }, 180_000);

    it("sums and averages beyond the largest double answer as the evaluator does (Infinity), not fail", async () => {
      const accountId = await freshAccount();
      const charged = (Amount: number, n: number): Subject["events"][number] => ({
        profileId: "",
        seq: 0,
        id: `e-${n}`,
        name: "Charged",
        ts: ARB_NOW - n * 1000,
        properties: { Amount },
        deviceId: null,
        platform: null,
      });
      const written: Subject[] = [];
      for (const amounts of [
        [1e308, 1e308, 5],
        [-1e308, -1e308],
        [1e308, 4],
      ]) {
        const subject: Subject = {
          state: newProfileState("x", ARB_NOW - 1000, 1),
          events: amounts.map((a, i) => charged(a, i + 1)),
          documents: [],
          devices: [],
        };
        written.push(await writeSubject(store, accountId, subject, 0, subject));
      }
      const wheres: Json[] = [
        { did: "Charged", sum: { property: "Amount", op: "gte", value: 1 } },
        { did: "Charged", sum: { property: "Amount", op: "lt", value: -1 } },
        { did: "Charged", avg: { property: "Amount", op: "lt", value: 10 } },
        { did: "Charged", avg: { property: "Amount", op: "gt", value: 1e307 } },
        { didNot: "Charged", sum: { property: "Amount", op: "between", value: [0, 1e308] } },
      ];
      for (const where of wheres) {
        const c = parseCondition(where, ARB_PARSE_OPTIONS);
        const expected = written
          .filter((s) => isMember(c, s, CTX))
          .map((s) => s.state.id)
          .sort();
        await underEveryPlan(kind, async (plan) => {
          expect(await allPages(store, accountId, c, 10), JSON.stringify(where) + plan).toEqual(expected);
        });
      }
    });

    it("streams the members in id order", async () => {
      await fc.assert(
        fc.asyncProperty(subjects, arbConditionJson({ maxDepth: 3 }), async (list, where) => {
          const accountId = await freshAccount();
          const written: Subject[] = [];
          for (const { subject, mode, other } of list)
            written.push(await writeSubject(store, accountId, subject, mode, other));
          const c = parseCondition(where as Json, ARB_PARSE_OPTIONS);
          const expected = written
            .filter((s) => isMember(c, s, CTX))
            .map((s) => s.state.id)
            .sort();
          await underEveryPlan(kind, async (plan) => {
            expect(await streamed(store, accountId, c), JSON.stringify(where) + plan).toEqual(expected);
          });
        }),
        { numRuns: 40 },
      );
    }, 120_000);
  },
);

// ---------------------------------------------------------------------------------------------------------------
// Boundaries: random data rarely lands on a birthday or a midnight, so these profiles and conditions are made to.

const DAY = 86_400_000;

/** `YYYY-MM-DD` of the day `days` after `date`. */
function shiftDay(date: string, days: number): string {
  const t = new Date(`${date}T00:00:00Z`);
  t.setUTCDate(t.getUTCDate() + days);
  return t.toISOString().slice(0, 10);
}

function boundaryProfiles(today: string, now: number): ProfileState[] {
  const [y, m, d] = today.split("-");
  const out: ProfileState[] = [];
  const add = (props: Record<string, PropertyEntry>, patch: Partial<ProfileState> = {}) => {
    out.push({ ...newProfileState(newId(), now - 400 * DAY, 500), props, ...patch });
  };
  for (const years of [0, 1, 17, 18, 25, 26, 30, 31, 120]) {
    const birthday = `${String(Number(y) - years).padStart(4, "0")}-${m}-${d}`;
    for (const shift of [-1, 0, 1]) add({ DOB: { v: shiftDay(birthday, shift), t: "date", ts: 1 } });
  }
  // Placeholder birth dates of CRM data, and the ends of the calendar.
  for (const v of ["1900-01-01", "0001-01-01", "9999-12-31"]) add({ DOB: { v, t: "date", ts: 1 } });
  add({ DOB: { v: "2024-02-29", t: "date", ts: 1 } });
  add({ DOB: { v: "2000-02-29", t: "date", ts: 1 } });
  add({ DOB: { v: "not a date", t: "date", ts: 1 } });
  add({ DOB: { v: 1_000_000_000_000, t: "date", ts: 1 } });
  add({ Age: { v: 40, t: "number", ts: 1 } });
  add({ Age: { v: 40, t: "number", ts: 1 }, DOB: { v: shiftDay(today, -1), t: "date", ts: 1 } });
  add({ Signup: { v: now - 30 * DAY, t: "date", ts: 1 }, Tags: { v: [], t: "multi", ts: 1 } });
  add({ Signup: { v: now - 30 * DAY - 1, t: "date", ts: 1 }, Tags: { v: ["a"], t: "multi", ts: 1 } });
  add({ Signup: { v: now - 30 * DAY + 1, t: "date", ts: 1 } });
  add({ address: { v: { list: [{ x: 1 }], tags: [], when: new Date(now - DAY).toISOString() }, t: "object", ts: 1 } });
  add({ address: { v: { list: [1, "a", true], deep: { deeper: { deepest: "x" } } }, t: "object", ts: 1 } });
  add({ Email: { v: "a@x.io", t: "string", ts: 1 }, "MSG-email": { v: false, t: "boolean", ts: 1 } });
  add({ Email: { v: "a@x.io", t: "string", ts: 1 }, "MSG-dndEmail": { v: false, t: "boolean", ts: 1 } });
  add({ Phone: { v: "+33123456789", t: "string", ts: 1 }, "MSG-sms": { v: true, t: "boolean", ts: 1 } });
  add({ Phone: { v: "+33123456789", t: "string", ts: 1 }, "MSG-dndPhone": { v: true, t: "boolean", ts: 1 } });
  add({ Plan: { v: "pro\u{10FFFF}x", t: "string", ts: 1 } });
  add({ Plan: { v: "pro", t: "string", ts: 1 } });
  add({ Plan: { v: "prp", t: "string", ts: 1 } });
  add({ Plan: { v: "prn\u{10FFFF}", t: "string", ts: 1 } });
  add({ Plan: { v: "Zoë", t: "string", ts: 1 } }, { firstSeen: now - 7 * DAY, lastSeen: now });
  // Case and the characters whose order differs by code point, by UTF-16 code unit and by locale.
  add({ Plan: { v: "zoë", t: "string", ts: 1 } });
  add({ Plan: { v: "ｚ", t: "string", ts: 1 } });
  add({ Plan: { v: "𝒫ro", t: "string", ts: 1 } });
  // Longer than the PostgreSQL index holds of a value (256 characters) and of a path (120).
  const long = "é".repeat(300);
  const key = "k".repeat(120);
  add({
    Long: { v: `${long}a`, t: "string", ts: 1 },
    deep: { v: { [key]: { [key]: `${long}a` } }, t: "object", ts: 1 },
  });
  add({
    Long: { v: `${long}b`, t: "string", ts: 1 },
    deep: { v: { [key]: { [key]: `${long}b` } }, t: "object", ts: 1 },
  });
  // Around the prefix lengths the PostgreSQL compiler tests alone when a value or path is shorter (255 vs 256 code
  // points, astral characters counting one), and around a 120-character path.
  for (const text of [
    "a".repeat(255),
    "a".repeat(256),
    `${"a".repeat(255)}b`,
    `${"a".repeat(256)}c`,
    "😀".repeat(255),
    "😀".repeat(256),
    "😀".repeat(257),
  ]) {
    add({ Edge: { v: text, t: "string", ts: 1 } });
  }
  add({ ["q".repeat(119)]: { v: "x", t: "string", ts: 1 } });
  add({ ["q".repeat(120)]: { v: "x", t: "string", ts: 1 } });
  add({ ["q".repeat(121)]: { v: "x", t: "string", ts: 1 } });
  add(
    {},
    {
      firstSeen: now - 7 * DAY - 1,
      lastSeen: now - DAY,
      location: { city: "2024-11-19T12:00:00.000Z", region: null, country: "FR", lat: null, lon: null },
    },
  );
  return out;
}

function boundaryConditions(today: string): Json[] {
  const out: Json[] = [];
  const ages = [-1, 0, 1, 17, 18, 25, 26, 26.5, 30, 31, 120, 121];
  for (const op of ["eq", "neq", "gt", "gte", "lt", "lte"])
    for (const v of ages) out.push({ property: "Age", op, value: v });
  for (const [a, b] of [
    [25, 30],
    [18, 18],
    [0, 17],
    [26.5, 30.5],
    [31, 200],
  ]) {
    out.push({ property: "Age", op: "between", value: [a, b] } as Json);
  }
  out.push({ property: "Age", op: "in", value: [17, 26, 31] }, { property: "Age", op: "notIn", value: [0, 18] });
  out.push({ property: "Age", op: "exists" }, { property: "Age", op: "notExists" });
  const dobDays = [shiftDay(today, -1), today, shiftDay(today, 1)].map(
    (t) => `${String(Number(t.slice(0, 4)) - 26).padStart(4, "0")}${t.slice(4)}`,
  );
  const dobTexts = [
    ...dobDays,
    `${dobDays[1]}T00:00:00`,
    `${dobDays[1]}T00:00:00Z`,
    `${dobDays[0]}T23:00:00Z`,
    `${dobDays[0]}T22:59:59Z`,
    "2000-02-29",
    "2000-03-01",
    "1900-01-01",
    "1900-06-01",
    "1900-12-30",
    "0001-01-01",
    "9999-12-31",
    "$D_253402300798",
    "$D_-2208988800",
  ];
  for (const op of ["eq", "neq", "gt", "gte", "lt", "lte", "before", "after"]) {
    for (const value of dobTexts) out.push({ property: "DOB", op, value });
  }
  out.push({ property: "DOB", op: "between", value: [dobDays[0], dobDays[2]] } as Json);
  out.push({ property: "DOB", op: "withinLast", value: { days: 365 * 27 } } as Json);
  for (const op of ["exists", "notExists"]) {
    for (const property of [
      "DOB",
      "Tags",
      "address.list",
      "address.tags",
      "address.deep",
      "address.deep.deeper.deepest",
      "Email",
    ]) {
      out.push({ property, op });
    }
  }
  for (const days of [30, 29.99999, 30.00001, 7, 1]) {
    out.push(
      { property: "Signup", op: "withinLast", value: { days } },
      { system: "firstSeen", op: "withinLast", value: { days } },
    );
    out.push({ property: "address.when", op: "withinLast", value: { days } });
  }
  out.push({ property: "address.list", op: "eq", value: 1 }, { property: "address.list", op: "eq", value: true });
  out.push({ property: "address.list", op: "gt", value: 0 }, { property: "address.list", op: "contains", value: "a" });
  for (const value of ["pro", "prn", "pr", "", "pro\u{10FFFF}", "prn\u{10FFFF}", "Zo", "Zoe"]) {
    out.push({ property: "Plan", op: "startsWith", value }, { property: "Plan", op: "contains", value });
  }
  const long = "é".repeat(300);
  const deep = `deep.${"k".repeat(120)}.${"k".repeat(120)}`;
  for (const property of ["Long", deep]) {
    for (const value of [`${long}a`, `${long}b`, long, `${long}c`, "é".repeat(299)]) {
      out.push(
        { property, op: "eq", value },
        { property, op: "startsWith", value },
        { property, op: "contains", value },
      );
    }
    out.push({ property, op: "exists" }, { property, op: "in", value: [`${long}b`, "x"] });
  }
  for (const value of ["a".repeat(255), "a".repeat(256), `${"a".repeat(255)}b`, "a".repeat(254), "😀".repeat(255)]) {
    for (const op of ["eq", "startsWith", "gt", "gte", "lt", "lte", "neq"]) out.push({ property: "Edge", op, value });
  }
  out.push({ property: "Edge", op: "in", value: ["a".repeat(255), "😀".repeat(256)] });
  out.push({ property: "Edge", op: "startsWith", value: "😀".repeat(256) });
  for (const property of ["q".repeat(119), "q".repeat(120)]) {
    out.push({ property, op: "exists" }, { property, op: "eq", value: "x" });
  }
  out.push({ system: "city", op: "after", value: "2024-11-19" }, { system: "city", op: "eq", value: "2024-11-19" });
  for (const value of ["pro", "prn\u{10FFFF}", "Zo", "zo", "Zoë", "ｚ", "𝒫", "\u{10FFFF}", "", `${long}b`, long]) {
    for (const op of ["gt", "gte", "lt", "lte"]) {
      for (const property of ["Plan", "Long", deep, "Tags"]) out.push({ property, op, value });
    }
  }
  for (const value of [
    ["Zo", "zp"],
    ["pro", "ｚ"],
    ["ｚ", "𝒫"],
    [long, `${long}b`],
  ]) {
    for (const property of ["Plan", "Long", deep, "Tags"]) out.push({ property, op: "between", value });
  }
  out.push({ system: "city", op: "gt", value: "2024-11-19" }, { system: "city", op: "lt", value: "2024-11-19" });
  for (const reachableBy of ["email", "sms", "whatsapp", "push"]) out.push({ reachableBy });
  for (const type of ["anonymous", "identified", "customer"]) out.push({ type });
  return out;
}

describe.each(stores)(
  "segments on %s: boundaries (birthdays, midnights, window edges, empty values)",
  (kind: StoreKind) => {
    let store: Store;
    useStore(kind, (opened) => {
      store = opened;
    });

    // A summer and a winter day, late in the evening and just after midnight, in zones east and west of UTC.
    const cases: Array<[timezone: string, now: number]> = [
      ["Europe/Paris", ARB_NOW],
      ["Europe/Paris", Date.UTC(2024, 6, 14, 22, 30)],
      ["Pacific/Kiritimati", Date.UTC(2024, 2, 1, 10, 0)],
      ["America/Los_Angeles", Date.UTC(2024, 2, 1, 7, 59)],
      ["UTC", Date.UTC(2025, 1, 28, 23, 59, 59)],
    ];
    it.each(cases)("in %s at %s, every condition matches what the evaluator says", async (timezone, now) => {
      const account = newAccount(now);
      await store.createAccount(account);
      const today = new Intl.DateTimeFormat("en-CA", { timeZone: timezone }).format(now);
      const profiles = boundaryProfiles(today, now);
      await store.write(account.id, async (tx) => {
        for (const p of profiles) await tx.insertProfile(account.id, p);
      });
      const ctx: EvaluateContext = { now, timezone, segment: () => undefined };
      const opts = { timezone, now, types: (p: string) => (p === "Signup" ? ("date" as const) : undefined) };
      for (const where of boundaryConditions(today)) {
        let c: Condition;
        try {
          c = parseCondition(where, opts);
        } catch {
          continue; // a day that does not exist this year (29 February)
        }
        const expected = profiles
          .filter((state) => isMember(c, { state, events: [], documents: [], devices: [] }, ctx))
          .map((s) => s.id)
          .sort();
        await underEveryPlan(kind, async (plan) => {
          const page = await store.segments.querySegment(account.id, c, ctx, { after: null, limit: 1000 });
          expect(page.ids, JSON.stringify(where) + plan).toEqual(expected);
        });
      }
    });
  },
);
