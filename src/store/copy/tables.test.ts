/**
 * The copy's plan (tables.ts) against the schemas the two adapters' migrations really create: every table of each is
 * accounted for, and every column of a table copied row for row is read, so a migration that adds a table or a
 * column fails here until the copy says what happens to it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, storesUnderTest, type TestDatabase } from "../../test-support/postgres.js";
import { migrate as migratePostgres } from "../postgres/schema.js";
import { migrate as migrateSqlite } from "../sqlite/schema.js";
import { PROFILE_COLUMNS } from "./profiles-step.js";
import { POSTGRES_TABLES, SEQUENCES, SQLITE_TABLES, TABLE_COPIES } from "./tables.js";

const postgres = (await storesUnderTest()).includes("postgres");

/** SQLite columns a row-for-row copy does not carry over as such, and what stands for them on PostgreSQL. */
const TRANSLATED_COLUMNS: Record<string, string[]> = {
  // profile_pk becomes the profile's account_id and id (the events copy joins profiles).
  events: ["profile_pk"],
};

/** PostgreSQL columns the copy leaves to their default or generation. */
const DEFAULTED_COLUMNS: Record<string, string[]> = {
  // No process has remembered a device of the new database: 0 is right (postgres/device-owners.ts).
  profiles: ["handles_rev"],
  // Generated from path and str (postgres-segments.ts SEGMENT_KEYS_SCHEMA).
  segment_values: ["path_key", "str_key"],
};

let dir: string;
let sqlite: Database.Database;

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), "portrait-copy-tables-"));
  sqlite = new Database(path.join(dir, "portrait.db"));
  migrateSqlite(sqlite);
});

afterAll(() => {
  sqlite.close();
  rmSync(dir, { recursive: true, force: true });
});

function sqliteColumns(table: string): string[] {
  return sqlite
    .prepare<[], { name: string }>(`PRAGMA table_info(${table})`)
    .all()
    .map((c) => c.name);
}

describe("the SQLite schema", () => {
  it("has exactly the tables the copy accounts for", () => {
    // sqlite_sequence appears with the first AUTOINCREMENT table, as in every store.
    const tables = sqlite.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all();
    expect(tables.sort()).toEqual(Object.keys(SQLITE_TABLES).sort());
  });

  it("answers every query of the copy, and each copied table's columns are all read", () => {
    for (const copy of TABLE_COPIES) {
      expect(() => sqlite.prepare(copy.select).all(), copy.table).not.toThrow();
      expect(sqlite.prepare(copy.count).pluck().get(), copy.table).toBe(0);
      const read = new Set(copy.columns.map((c) => c.name));
      const skipped = TRANSLATED_COLUMNS[copy.table] ?? [];
      const unread = sqliteColumns(copy.table).filter((c) => !read.has(c) && !skipped.includes(c));
      expect(unread, `${copy.table} columns the copy does not read`).toEqual([]);
    }
    for (const s of SEQUENCES) expect(sqlite.prepare(s.highest).pluck().get(), s.table).toBe(0);
    // Profiles: pk is the adapter's own key; journal_merge_id mirrors the state document, which PostgreSQL reads.
    const profileColumns = new Set(PROFILE_COLUMNS.map((c) => c.name));
    expect(sqliteColumns("profiles").filter((c) => !profileColumns.has(c))).toEqual(["pk", "journal_merge_id"]);
    expect(sqliteColumns("profile_activity").filter((c) => !profileColumns.has(c))).toEqual(["pk"]);
  });
});

describe.skipIf(!postgres)("the PostgreSQL schema", () => {
  let db: TestDatabase;
  let client: pg.Client;

  beforeAll(async () => {
    db = (await createTestDatabase())!;
    const pool = new pg.Pool({ connectionString: db.url, max: 1 });
    await migratePostgres(pool);
    await pool.end();
    client = new pg.Client(db.url);
    await client.connect();
  });

  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  async function postgresColumns(table: string): Promise<string[]> {
    const r = await client.query<{ name: string }>(
      `SELECT column_name AS name FROM information_schema.columns
       WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
      [table],
    );
    return r.rows.map((c) => c.name);
  }

  it("has exactly the tables the copy accounts for", async () => {
    const r = await client.query<{ name: string }>(
      "SELECT tablename AS name FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
    );
    expect(r.rows.map((t) => t.name).sort()).toEqual(Object.keys(POSTGRES_TABLES).sort());
  });

  it("gets every column from the copy, but those left to their default or generation", async () => {
    const written: Record<string, string[]> = { profiles: PROFILE_COLUMNS.map((c) => c.name) };
    for (const copy of TABLE_COPIES) written[copy.table] = copy.columns.map((c) => c.name);
    written.segment_values = ["account_id", "profile_id", "path", "ord", "kind", "many", "str", "num"];
    for (const [table, planned] of Object.entries(POSTGRES_TABLES)) {
      if (planned.how === "schema") continue;
      const columns = written[table];
      expect(columns, `${table} is written by no step`).toBeDefined();
      const missing = (await postgresColumns(table)).filter(
        (c) => !columns?.includes(c) && !(DEFAULTED_COLUMNS[table] ?? []).includes(c),
      );
      expect(missing, `${table} columns the copy does not write`).toEqual([]);
    }
  });
});
