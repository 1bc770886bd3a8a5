/**
 * A SQLite store with some of everything in it (test-support/rich-store.ts, made through the HTTP API), copied into
 * PostgreSQL; then a server on the SQLite store and one on the copy must give the same answers to every read, and go
 * on behaving alike: undoing a merge made before the move, a record id sent again, the keys, new events, merges and
 * imports after it.
 */
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Accounts } from "../../pipeline/accounts.js";
import { queuedImportRow, runImport } from "../../test-support/imports.js";
import { createTestDatabase, storesUnderTest, type TestDatabase } from "../../test-support/postgres.js";
import { fillRichStore, type RichStore } from "../../test-support/rich-store.js";
import { PUBLIC, SECRET, startTestServer, type TestServer } from "../../test-support/server.js";
import { SqliteStore } from "../sqlite/sqlite-store.js";
import { type CopySummary, copyStore } from "./copy-store.js";
import { POSTGRES_TABLES } from "./tables.js";

const postgres = (await storesUnderTest()).includes("postgres");

// biome-ignore lint/suspicious/noExplicitAny: response bodies of every shape
type AnyBody = any;

let dir: string;
/** The dashboard login the first start made. */
let dashboardPassword: string;
let postgresDir: string | undefined;
let db: TestDatabase;
let rich: RichStore;
let summary: CopySummary;
let onSqlite: TestServer;
let onPostgres: TestServer;
/** The source's files before and after the copy. */
const fingerprints: string[] = [];

function fingerprint(): string {
  const file = path.join(dir, "portrait.db");
  const wal = `${file}-wal`;
  const walBytes = existsSync(wal) ? readFileSync(wal) : Buffer.alloc(0);
  return `${createHash("sha256").update(readFileSync(file)).digest("hex")} wal ${walBytes.length}`;
}

/** Rows of the SQLite store as it was copied (the servers change it afterwards), read directly. */
function sqliteRows<T>(sql: string): T[] {
  const sqlite = new Database(path.join(dir, "copied.db"), { readonly: true });
  try {
    return sqlite.prepare<[], T>(sql).all();
  } finally {
    sqlite.close();
  }
}

/** A request as `key` (the bootstrap secret key by default), answered as {status, body}; text bodies stay text. */
async function call(s: TestServer, method: string, p: string, body?: unknown, key = SECRET) {
  return s.api(method, p, body, { authorization: `Bearer ${key}` });
}

/**
 * A body without the fields named (at any depth): what the two servers' clocks put there when they answer or write at
 * different moments (an export's exportedAt; a profile's updatedAt after a write made after the copy).
 */
function without(value: unknown, keys: readonly string[]): unknown {
  if (Array.isArray(value)) return value.map((v) => without(v, keys));
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([k]) => !keys.includes(k))
      .map(([k, v]) => [k, without(v, keys)]),
  );
}

/**
 * A CSV export with each JSON object cell in one key order: PostgreSQL keeps objects in jsonb order, SQLite as
 * written (docs/scaling.md, "Where the two stores differ"), which the copy does not change.
 */
function canonicalCsv(csv: string): unknown[][] {
  const sorted = (v: unknown): unknown =>
    v === null || typeof v !== "object" || Array.isArray(v)
      ? v
      : Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, sorted((v as Record<string, unknown>)[k])]),
        );
  return (parse(csv) as string[][]).map((row) =>
    row.map((cell) => (cell.startsWith("{") ? JSON.stringify(sorted(JSON.parse(cell))) : cell)),
  );
}

type Normalise = (body: unknown) => unknown;
const asIs: Normalise = (body) => body;
const withoutExportMoment: Normalise = (body) => without(body, ["exportedAt"]);

/** The same request to both servers: the same answer (once `normalise`d). */
async function same(
  method: string,
  p: string,
  body?: unknown,
  key = SECRET,
  normalise: Normalise = asIs,
): Promise<AnyBody> {
  const a = await call(onSqlite, method, p, body, key);
  const b = await call(onPostgres, method, p, body, key);
  expect(normalise(b), `${method} ${p}`).toEqual(normalise(a));
  return a.body;
}

/**
 * What differs between the two servers' answers after they both wrote the same thing, by how servers work: the moment
 * of the write (a profile's updatedAt; the time of the events Portrait writes itself) and the ids each process makes
 * (events without a client id: clock.ts eventId; merges). Taken out before comparing writes made after the copy.
 */
function withoutWriteMoment(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutWriteMoment);
  if (value === null || typeof value !== "object") return value;
  const system = ["Profile Merged", "Profile Demerged"].includes((value as { name?: string }).name ?? "");
  return Object.fromEntries(
    Object.entries(value)
      .filter(([k]) => !["updatedAt", "mergeId", "Merge ID"].includes(k) && !(system && k === "ts"))
      .map(([k, v]) => [k, k === "id" && typeof v === "string" && /^e-[0-9a-f]+-[0-9a-z]+$/.test(v) ? "e-…" : v])
      .map(([k, v]) => [k, withoutWriteMoment(v)]),
  );
}

/** Every page of a profile's timeline, two events a page, on both servers. */
async function sameTimeline(id: string, key = SECRET, normalise: Normalise = asIs): Promise<AnyBody[]> {
  const events: AnyBody[] = [];
  let cursor: string | null = null;
  do {
    const page: AnyBody = await same(
      "GET",
      `/v1/profiles/${id}/events?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
      undefined,
      key,
      normalise,
    );
    events.push(...(page.events ?? []));
    cursor = page.nextCursor ?? null;
  } while (cursor !== null);
  return events;
}

/**
 * An import uploaded and not yet run when the server stopped: its row queued, its file waiting in imports/. In an
 * account of its own, so that what each server makes of it after the copy (new people, drawn ids) stays out of the
 * comparisons of the other accounts.
 */
const QUEUED_IMPORT = "f".repeat(32);
let queuedAccountKey: string;

async function queueImport(dataDir: string): Promise<void> {
  const csv = "Identity,Plan\nu-queued,team\nu-queued-2,free\n";
  writeFileSync(path.join(dataDir, "imports", QUEUED_IMPORT), csv);
  const store = SqliteStore.open(path.join(dataDir, "portrait.db"));
  try {
    const created = await new Accounts(store).create("imports at the move");
    queuedAccountKey = created.secretKey;
    await store.imports.insertImport(
      queuedImportRow(created.account.id, QUEUED_IMPORT, { bytes: csv.length, createdAt: Date.now() - 60_000 }),
    );
  } finally {
    await store.close();
  }
}

describe.skipIf(!postgres)("copy-store, SQLite to PostgreSQL", () => {
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "portrait-copy-"));
    // With the SFTP drop point, whose host key the store keeps (meta).
    const first = await startTestServer({ PORTRAIT_DATA_DIR: dir, PORTRAIT_SFTP_PORT: "0" });
    dashboardPassword = first.server.firstRun?.dashboardPassword ?? "";
    try {
      rich = await fillRichStore(first);
    } finally {
      // The procedure: stop the server first.
      await first.close();
    }
    await queueImport(dir);
    db = (await createTestDatabase())!;
    fingerprints.push(fingerprint());
    summary = await copyStore({ dataDir: dir, to: db.url });
    fingerprints.push(fingerprint());
    // The server stopped cleanly, so the database file holds everything (its WAL, if any, is empty).
    cpSync(path.join(dir, "portrait.db"), path.join(dir, "copied.db"));
    // PostgreSQL's node keeps import uploads in its data directory: a copy of this one (the procedure keeps the same
    // directory; here each server has its own, so that they do not both run the queued import on one file).
    postgresDir = mkdtempSync(path.join(tmpdir(), "portrait-copy-pg-"));
    cpSync(path.join(dir, "imports"), path.join(postgresDir, "imports"), { recursive: true });
    onSqlite = await startTestServer({ PORTRAIT_DATA_DIR: dir, PORTRAIT_SFTP_PORT: "0" });
    onPostgres = await startTestServer({
      PORTRAIT_DATA_DIR: postgresDir,
      PORTRAIT_DATABASE_URL: db.url,
      PORTRAIT_SFTP_PORT: "0",
    });
  }, 120_000);

  afterAll(async () => {
    await onSqlite?.close();
    await onPostgres?.close();
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
    if (postgresDir) rmSync(postgresDir, { recursive: true, force: true });
  });

  it("reads the source without writing it, and fills and verifies every table", () => {
    expect(fingerprints[1]).toBe(fingerprints[0]);
    const written = summary.tables.map((t) => t.table).sort();
    const planned = Object.entries(POSTGRES_TABLES).filter(([, p]) => p.how !== "schema");
    expect(written).toEqual(planned.map(([t]) => t).sort());
    expect(summary.verified).toBe(true);
    const count = (table: string) => sqliteRows<{ n: number }>(`SELECT count(*) AS n FROM ${table}`)[0]?.n;
    for (const t of summary.tables) {
      expect(t.rows, t.table).toBe(t.expected);
      if (t.how === "copied" && t.table !== "meta") expect(t.rows, t.table).toBe(count(t.table));
    }
    const rows = Object.fromEntries(summary.tables.map((t) => [t.table, t.rows]));
    expect(rows).toMatchObject({ profiles: count("profiles"), events: count("events"), merges: 2, imports: 3 });
    expect(rows.segment_values).toBe(count("segment_values"));
    expect(rows.merge_journal).toBeGreaterThan(0);
    expect(rows.import_failures).toBeGreaterThan(0);
    expect(rows.email_hashes).toBeGreaterThan(0);
    expect(rows.meta).toBeGreaterThan(0);
    // The deleted person's events were the newest: the sequence continues past the high-water, not past max(seq).
    const [highest] = sqliteRows<{ seq: number }>("SELECT max(seq) AS seq FROM event_seq_high_water");
    const [left] = sqliteRows<{ seq: number }>("SELECT max(seq) AS seq FROM events");
    expect(highest!.seq).toBeGreaterThan(left!.seq);
    expect(summary.sequences.find((s) => s.table === "events")?.next).toBe(highest!.seq + 1);
  });

  it("runs the import that was queued at the move, as SQLite does", async () => {
    const wait = async (server: TestServer) => {
      for (;;) {
        const r = await call(server, "GET", `/v1/imports/${QUEUED_IMPORT}`, undefined, queuedAccountKey);
        if (r.body.status === "done" || r.body.status === "failed") return r.body;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    };
    const [a, b] = [await wait(onSqlite), await wait(onPostgres)];
    expect(a).toMatchObject({ status: "done", processed: 2, failed: 0 });
    const moment = ["startedAt", "finishedAt"];
    expect(without(b, moment)).toEqual(without(a, moment));
    // The people it made were made after the copy, with ids and times of their own on each server.
    const person = async (server: TestServer) =>
      (await call(server, "GET", "/v1/profiles?identity=u-queued", undefined, queuedAccountKey)).body.profiles[0];
    const [p, q] = [await person(onSqlite), await person(onPostgres)];
    expect(q.properties).toEqual(p.properties);
    expect(p.properties.Plan).toBe("team");
  });

  it("answers alike for every profile: the profile, its timeline page by page, its export and documents", async () => {
    const profiles = sqliteRows<{ account_id: string; id: string }>("SELECT account_id, id FROM profiles");
    expect(profiles.length).toBeGreaterThan(10);
    for (const { account_id, id } of profiles) {
      const key = account_id === "default" ? SECRET : rich.other.secretKey;
      await same("GET", `/v1/profiles/${id}`, undefined, key);
      await sameTimeline(id, key);
      await same("GET", `/v1/profiles/${id}/export`, undefined, key, withoutExportMoment);
      await same("GET", `/v1/profiles/${id}/documents`, undefined, key);
    }
    // What those answers hold, beyond being equal.
    const ana = await same("GET", `/v1/profiles/${rich.ana}`);
    expect(ana).toMatchObject({
      type: "customer",
      flags: { test: false, controlGroupExcluded: true },
      stats: { orphans: 1 },
      properties: { Points: 12, Tags: ["vip"], Colors: ["red", "blue"], First: "one", Plan: "pro" },
    });
    expect(ana.properties.Gone).toBeUndefined();
    expect((await same("GET", `/v1/profiles/${rich.ben}`)).flags.test).toBe(true);
    const timeline = await sameTimeline(rich.ana);
    expect(timeline.filter((e: AnyBody) => e.name === "Charged")).toHaveLength(2);
    expect(timeline.some((e: AnyBody) => e.anonymous)).toBe(true);
  });

  it("finds people alike by every identity, device and user account", async () => {
    const find = (query: string, key = SECRET) => same("GET", `/v1/profiles?${query}`, undefined, key);
    const keyOf = (account: string) => (account === "default" ? SECRET : rich.other.secretKey);
    const identities = sqliteRows<{ account_id: string; key: string; value: string }>(
      "SELECT account_id, key, value FROM identities",
    );
    for (const i of identities) {
      const found = await find(`${i.key.toLowerCase()}=${encodeURIComponent(i.value)}`, keyOf(i.account_id));
      expect(found.profiles, `${i.key} ${i.value}`).toHaveLength(1);
    }
    for (const d of sqliteRows<{ account_id: string; device_id: string }>("SELECT * FROM devices")) {
      expect((await find(`deviceId=${d.device_id}`, keyOf(d.account_id))).profiles).toHaveLength(1);
    }
    for (const u of sqliteRows<{ compartment_id: string; user_account_id: string }>("SELECT * FROM user_accounts")) {
      await find(`compartmentId=${u.compartment_id}&userAccountId=${u.user_account_id}`);
    }
    expect(identities.length).toBeGreaterThan(8);
  });

  it("counts and lists segments alike, saved ones included", async () => {
    const conditions = [
      { property: "Plan", op: "eq", value: "pro" },
      { property: "Tags", op: "contains", value: "vip" },
      { property: "Address.city", op: "eq", value: "Paris" },
      { property: "Score", op: "gte", value: 3 },
      { property: "Age", op: "gt", value: 30 },
      { property: "tier", compartment: "7", op: "eq", value: "B" },
      { did: "Charged", sum: { property: "Amount", op: "gte", value: 70 } },
      { did: "Search", count: { op: "gte", value: 1 }, withinLast: { days: 30 } },
      { type: "identified" },
      { test: true },
      { controlGroupExcluded: true },
      { reachableBy: "email" },
      { not: { type: "anonymous" } },
    ];
    for (const where of conditions) {
      const r = await same("POST", "/v1/segments/query", { where, limit: 50 });
      expect(r.count, JSON.stringify(where)).toBeGreaterThan(0);
    }
    const saved = await same("GET", "/v1/segments");
    expect(saved.segments).toHaveLength(2);
    for (const segment of saved.segments) {
      await same("GET", `/v1/segments/${segment.id}`);
      await same("GET", `/v1/segments/${segment.id}/profiles`);
      const csv = async (s: TestServer) => (await call(s, "GET", `/v1/segments/${segment.id}/export.csv`)).body;
      expect(canonicalCsv(await csv(onPostgres))).toEqual(canonicalCsv(await csv(onSqlite)));
    }
  });

  it("lists imports, their failure reports, the keys, the SFTP keys and both accounts alike", async () => {
    const imports = await same("GET", "/v1/imports");
    expect(imports.imports).toHaveLength(2);
    for (const i of imports.imports) {
      await same("GET", `/v1/imports/${i.id}`);
      const report = await same("GET", `/v1/imports/${i.id}/failures.csv`);
      expect(report).toMatch(/Failure Description/);
    }
    expect((await same("GET", "/v1/keys")).keys.length).toBeGreaterThanOrEqual(5);
    expect((await same("GET", "/v1/sftp/keys")).keys).toHaveLength(1);
    expect((await same("GET", "/v1/account")).settings).toMatchObject({ timezone: "Europe/Paris" });
    expect((await same("GET", "/v1/account", undefined, rich.other.secretKey)).id).toBe(rich.other.id);
  });

  it("undoes a merge made before the move as SQLite does, records since routed by their handle", async () => {
    const undone = await same("POST", `/v1/merges/${rich.mergeId}/undo`, undefined, SECRET, withoutWriteMoment);
    expect(undone.source.id).toBe(rich.mergeSource);
    for (const id of [rich.mergeTarget, rich.mergeSource]) {
      await same("GET", `/v1/profiles/${id}`, undefined, SECRET, withoutWriteMoment);
      await sameTimeline(id, SECRET, withoutWriteMoment);
    }
    expect(
      (await same("GET", `/v1/profiles/${rich.mergeSource}`, undefined, SECRET, withoutWriteMoment)).properties.Level,
    ).toBe(3);
    await same("POST", `/v1/merges/${rich.mergeId}/undo`);
  });

  it("takes a record id seen before the move as a duplicate", async () => {
    const again = await same("POST", "/v1/ingest", { records: [rich.appliedRecord] });
    expect(again.results[0].outcome).toBe("duplicate");
    expect(
      (await same("GET", `/v1/profiles/${rich.ana}`, undefined, SECRET, withoutWriteMoment)).properties.Points,
    ).toBe(12);
  });

  it("knows the keys, logins and SFTP host key: the live ones authenticate, the revoked one does not", async () => {
    expect((await call(onPostgres, "GET", "/v1/account", undefined, rich.secretKey)).status).toBe(200);
    expect((await call(onPostgres, "GET", "/v1/account", undefined, rich.revokedKey)).status).toBe(401);
    await same("GET", "/v1/account", undefined, rich.revokedKey);
    // The public key, with the account's public properties.
    const sdk = await same("GET", `/v1/sdk/profile?key=${PUBLIC}&deviceId=d-lurker`);
    expect(sdk).toMatchObject({ properties: { Name: "Ana", Plan: "pro" } });
    // The SFTP host key: clients that trusted it before the move still do.
    const hostKey = await onSqlite.server.store.getMeta("sftp.hostKey");
    expect(hostKey).toMatch(/PRIVATE KEY/);
    expect(await onPostgres.server.store.getMeta("sftp.hostKey")).toBe(hostKey);
    for (const server of [onSqlite, onPostgres]) {
      const logins = new Accounts(server.server.store);
      expect(await logins.checkDashboardUser("admin", dashboardPassword)).toBe("default");
      expect(await logins.checkDashboardUser("admin", "wrong")).toBeNull();
    }
  });

  it("puts a new event after the copied ones, and makes and undoes new merges and imports alike", async () => {
    // At the same time as Ana's newest events: only a seq past the copied ones puts it first, as on SQLite.
    const late = { type: "event", identity: { Identity: "u-ana" }, name: "Late", id: "ev-late", ts: rich.anaNewestTs };
    await same("POST", "/v1/ingest", { records: [late] });
    const timeline = await sameTimeline(rich.ana, SECRET, withoutWriteMoment);
    expect(timeline[0].name).toBe("Late");

    // A merge after the move (new rows in merges and merge_journal), a record journalled, then undone.
    const idOf = async (identity: string) => (await same("GET", `/v1/profiles?identity=${identity}`)).profiles[0].id;
    const [eve, gus] = [await idOf("u-eve"), await idOf("u-gus")];
    const merge = async (s: TestServer) =>
      (await call(s, "POST", "/v1/profiles/merge", { targetId: eve, sourceId: gus })).body;
    const [m1, m2] = [await merge(onSqlite), await merge(onPostgres)];
    expect(withoutWriteMoment(m2.profile)).toEqual(withoutWriteMoment(m1.profile));
    const after = { type: "event", profileId: gus, name: "After", id: "ev-after", ts: rich.anaNewestTs };
    await same("POST", "/v1/ingest", { records: [after] });
    const undo = async (s: TestServer, id: string) => (await call(s, "POST", `/v1/merges/${id}/undo`)).body;
    expect(withoutWriteMoment(await undo(onPostgres, m2.mergeId))).toEqual(
      withoutWriteMoment(await undo(onSqlite, m1.mergeId)),
    );
    expect((await sameTimeline(gus, SECRET, withoutWriteMoment)).map((e: AnyBody) => e.name)).toContain("After");
    await sameTimeline(eve, SECRET, withoutWriteMoment);

    // An import after the move: listed first, as on SQLite.
    const csv = "Identity,Plan\nu-new-3,team\n";
    const [a, b] = [await runImport(onSqlite, "profiles", csv), await runImport(onPostgres, "profiles", csv)];
    const moment = ["id", "createdAt", "startedAt", "finishedAt"];
    expect(without(b, moment)).toEqual(without(a, moment));
    expect((await call(onPostgres, "GET", "/v1/imports")).body.imports[0].id).toBe(b.id);
  });
});
