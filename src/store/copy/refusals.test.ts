/**
 * What copy-store refuses, and that a refusal or a failure at any point leaves the target as it was: a target that is
 * not empty (unchanged afterwards), a source that is missing or at another schema version, a URL that is not
 * PostgreSQL's, a row PostgreSQL refuses half-way through (caught before sending, or refused by PostgreSQL itself),
 * Ctrl-C, and a source written to during the copy. The running-server refusal needs another process: cli/copy-store.test.ts.
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Accounts } from "../../pipeline/accounts.js";
import { createTestDatabase, storesUnderTest, type TestDatabase } from "../../test-support/postgres.js";
import { makeSqliteStore } from "../../test-support/sqlite-store.js";
import { openStore } from "../open.js";
import { MIGRATIONS } from "../sqlite/schema.js";
import { CopyError } from "./copy-error.js";
import { type CopyStoreOptions, copyStore } from "./copy-store.js";
import { PostgresTarget } from "./postgres-target.js";
import { SqliteSource } from "./sqlite-source.js";
import { POSTGRES_TABLES } from "./tables.js";
import { verifyCopy } from "./verify.js";

const postgres = (await storesUnderTest()).includes("postgres");

const temp: string[] = [];
const databases: TestDatabase[] = [];
/** A store of 6,000 people with 2 events each (and their Identity Set): two chunks of profiles, four of events. */
let source: string;

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "portrait-copy-refusals-"));
  temp.push(dir);
  return dir;
}

/** A fresh, empty database. */
async function database(): Promise<TestDatabase> {
  const db = (await createTestDatabase())!;
  databases.push(db);
  return db;
}

/** A copy of the source store to change (the source itself stays as made). */
function sourceCopy(): string {
  const dir = tempDir();
  cpSync(path.join(source, "portrait.db"), path.join(dir, "portrait.db"));
  return dir;
}

async function query<R extends pg.QueryResultRow>(url: string, text: string): Promise<R[]> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}

/** Every table of the database's schema with its row count, and its functions: what a copy must not change. */
async function contents(url: string): Promise<Record<string, number | string>> {
  const tables = await query<{ name: string }>(
    url,
    "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'",
  );
  const out: Record<string, number | string> = {};
  for (const { name } of tables) {
    const [row] = await query<{ n: string }>(url, `SELECT count(*) AS n FROM "${name}"`);
    out[name] = Number(row?.n);
  }
  const functions = await query<{ name: string }>(
    url,
    "SELECT proname AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
  );
  for (const { name } of functions) out[`function ${name}`] = "present";
  return out;
}

/** The copy's refusal: its code, and its message matching `pattern`. */
async function refused(opts: CopyStoreOptions, code: string, pattern: RegExp): Promise<void> {
  const error = await copyStore(opts).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CopyError);
  expect((error as CopyError).code, (error as Error).message).toBe(code);
  expect((error as Error).message).toMatch(pattern);
}

beforeAll(async () => {
  source = tempDir();
  await makeSqliteStore(source, 6_000, 2);
}, 120_000);

afterAll(async () => {
  for (const db of databases) await db.drop();
  for (const dir of temp) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!postgres)("copy-store refuses", () => {
  it("a target where a server started (its account default), and leaves it as it was", async () => {
    const db = await database();
    const store = await openStore({ dataDir: tempDir(), databaseUrl: db.url });
    try {
      await new Accounts(store).create("default", {}, "default");
    } finally {
      await store.close();
    }
    const before = await contents(db.url);
    await refused(
      { dataDir: source, to: db.url },
      "TARGET_NOT_EMPTY",
      /holds a Portrait store already \(accounts default\), with rows in accounts: 1, api_keys: 2.*new, empty database/,
    );
    expect(await contents(db.url)).toEqual(before);
  });

  it("a target whose tables are named as Portrait's without its schema, and leaves them alone", async () => {
    const db = await database();
    await query(db.url, "CREATE TABLE profiles (name text); INSERT INTO profiles VALUES ('not ours')");
    const before = await contents(db.url);
    await refused({ dataDir: source, to: db.url }, "TARGET_NOT_EMPTY", /tables named as Portrait's \(profiles\)/);
    expect(await contents(db.url)).toEqual(before);
  });

  it("a missing source, a URL that is not PostgreSQL's, and a source of another schema version", async () => {
    const db = await database();
    await refused({ dataDir: tempDir(), to: db.url }, "NO_STORE", /no Portrait store at .*portrait\.db/);
    await refused({ dataDir: source, to: "mysql://root@localhost/portrait" }, "INVALID_URL", /must be a postgres/);
    const newer = sourceCopy();
    const file = new Database(path.join(newer, "portrait.db"));
    file.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)").run();
    file.close();
    await refused({ dataDir: newer, to: db.url }, "UNKNOWN_SCHEMA_VERSION", /version 99, newer than this Portrait/);
    const older = tempDir();
    const old = new Database(path.join(older, "portrait.db"));
    old.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
    for (const m of MIGRATIONS.slice(0, 7)) {
      old.exec(m.sql);
      old.prepare("INSERT INTO schema_migrations VALUES (?, 0)").run(m.version);
    }
    old.close();
    await refused({ dataDir: older, to: db.url }, "UNKNOWN_SCHEMA_VERSION", /version 7, older .* accounts list/);
    const unreachable = "postgres://postgres@127.0.0.1:1/portrait";
    await refused({ dataDir: source, to: unreachable }, "CANNOT_CONNECT", /cannot reach PostgreSQL at 127\.0\.0\.1:1/);
    expect(await contents(db.url)).toEqual({});
  });
});

describe.skipIf(!postgres)("a copy that fails half-way leaves the target empty", () => {
  it("when an event holds text PostgreSQL cannot store, found before it is sent", async () => {
    const dir = sourceCopy();
    const file = new Database(path.join(dir, "portrait.db"));
    file.prepare(`UPDATE events SET properties = '{"Page":"a\\u0000b"}' WHERE seq = 11000`).run();
    file.close();
    const db = await database();
    const tables: string[] = [];
    await refused(
      { dataDir: dir, to: db.url, progress: (p) => tables.push(p.table) },
      "UNSTORABLE_ROW",
      /events 11000: its properties holds the character U\+0000/,
    );
    // Profiles, their index and events were on their way when the row came up: all of it is gone.
    expect(tables).toContain("profiles");
    expect(tables).toContain("events");
    expect(await contents(db.url)).toEqual({});
  });

  it("when a text column holds U+0000, found before it is sent", async () => {
    const dir = sourceCopy();
    const file = new Database(path.join(dir, "portrait.db"));
    file.prepare("UPDATE identities SET value = 'u-' || char(0) || '-5000' WHERE value = 'u-5000'").run();
    file.close();
    const db = await database();
    await refused(
      { dataDir: dir, to: db.url },
      "UNSTORABLE_ROW",
      /^identities default \/ Identity \/ "u-\\u0000-5000": its value holds the character U\+0000/,
    );
    expect(await contents(db.url)).toEqual({});
  });

  it("when PostgreSQL itself refuses a row (an event's properties that are not JSON)", async () => {
    const dir = sourceCopy();
    const file = new Database(path.join(dir, "portrait.db"));
    file.prepare(`UPDATE events SET properties = '{"Page": ' WHERE seq = 17000`).run();
    file.close();
    const db = await database();
    await refused(
      { dataDir: dir, to: db.url },
      "COPY_FAILED",
      /^invalid input syntax for type json .*while writing events; nothing was copied \(the transaction was rolled back\)$/,
    );
    expect(await contents(db.url)).toEqual({});
  });

  it("when interrupted (Ctrl-C)", async () => {
    const db = await database();
    const interrupt = new AbortController();
    await refused(
      { dataDir: source, to: db.url, signal: interrupt.signal, progress: () => interrupt.abort() },
      "INTERRUPTED",
      /rolled back/,
    );
    expect(await contents(db.url)).toEqual({});
  });

  it("when the source is written to during the copy", async () => {
    const dir = sourceCopy();
    const db = await database();
    let written = false;
    const write = () => {
      if (written) return;
      written = true;
      const writer = new Database(path.join(dir, "portrait.db"));
      writer.prepare("UPDATE accounts SET name = 'renamed'").run();
      writer.close();
    };
    await refused(
      { dataDir: dir, to: db.url, progress: write },
      "STORE_IN_USE",
      /written or opened by another process during the copy/,
    );
    expect(await contents(db.url)).toEqual({});
  });
});

describe.skipIf(!postgres)("the verification", () => {
  it("refuses a target that does not hold what the source gave (VERIFY_FAILED), before anything commits", async () => {
    const db = await database();
    const { source: sqlite } = SqliteSource.open(source);
    const target = await PostgresTarget.open(db.url, "--to");
    try {
      await target.migrate();
      const ctx = { source: sqlite, target, progress: () => undefined };
      // Nothing was copied: every count and the activity totals disagree.
      const claimed = { table: "profiles", from: "profiles", how: "translated" as const, rows: 6_000, seconds: 0 };
      const error = await verifyCopy(ctx, [{ ...claimed, expected: 6_000 }]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CopyError);
      expect((error as CopyError).code).toBe("VERIFY_FAILED");
      expect((error as Error).message).toMatch(
        /^the copy does not match the source: profiles holds 0 rows, 6000 expected; profile activity/,
      );
    } finally {
      await target.close();
      sqlite.close();
    }
    expect(await contents(db.url)).toEqual({});
  });
});

describe.skipIf(!postgres)("copy-store takes", () => {
  it("a target with Portrait's schema and no rows (migrated, never started), and copies into it", async () => {
    const db = await database();
    const store = await openStore({ dataDir: tempDir(), databaseUrl: db.url });
    await store.close();
    const summary = await copyStore({ dataDir: source, to: db.url });
    expect(summary.tables.find((t) => t.table === "profiles")?.rows).toBe(6_000);
    // Each person's two events and the Identity Set that Portrait wrote when their Identity came.
    expect(summary.tables.find((t) => t.table === "events")?.rows).toBe(18_000);
    const planned = Object.keys(POSTGRES_TABLES);
    expect(
      Object.keys(await contents(db.url))
        .filter((k) => !k.startsWith("function "))
        .sort(),
    ).toEqual(planned.sort());
  });

  it("an empty SQLite store (one account, no people)", async () => {
    const dir = tempDir();
    await makeSqliteStore(dir, 0, 0);
    writeFileSync(path.join(dir, "unrelated.txt"), "the data directory may hold other files");
    const db = await database();
    const summary = await copyStore({ dataDir: dir, to: db.url });
    expect(summary.tables.find((t) => t.table === "accounts")?.rows).toBe(1);
    expect(summary.sequences.find((s) => s.table === "events")?.next).toBe(1);
  });
});
