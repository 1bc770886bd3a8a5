/**
 * `portrait copy-store` as an operator runs it (the bundled CLI in a child process, a real SQLite data directory, a
 * real PostgreSQL database): its output, its one-line refusals, a server still running on the store, and what Ctrl-C
 * and kill -9 in the middle of a copy leave behind (nothing).
 */
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleCli, type Cli, type CliResult } from "../test-support/cli.js";
import { createTestDatabase, storesUnderTest, type TestDatabase } from "../test-support/postgres.js";
import { makeSqliteStore } from "../test-support/sqlite-store.js";

const postgres = (await storesUnderTest()).includes("postgres");

let cli: Cli;
/** A store of 6,000 people with 2 events each. */
let source: string;
const temp: string[] = [];
const databases: TestDatabase[] = [];

beforeAll(async () => {
  cli = await bundleCli();
  source = tempDir();
  await makeSqliteStore(source, 6_000, 2);
}, 120_000);

afterAll(async () => {
  cli?.remove();
  for (const db of databases) await db.drop();
  for (const dir of temp) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "portrait-cli-copy-"));
  temp.push(dir);
  return dir;
}

async function database(): Promise<TestDatabase> {
  const db = (await createTestDatabase())!;
  databases.push(db);
  return db;
}

/** The tables in the database's schema: none after a copy that did not finish. */
async function tablesOf(url: string): Promise<string[]> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    const r = await client.query<{ name: string }>(
      "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'",
    );
    return r.rows.map((t) => t.name);
  } finally {
    await client.end();
  }
}

function expectOneLineError(result: CliResult, pattern: RegExp): void {
  expect(result.code, result.stderr).toBe(1);
  expect(result.stdout).toBe("");
  expect(result.stderr).toMatch(/^portrait: [^\n]*\n$/);
  expect(result.stderr).toMatch(pattern);
}

/** A child process with its output gathered (stdout and stderr apart). */
function started(child: ChildProcess) {
  const out = { stdout: "", stderr: "" };
  child.stdout?.on("data", (chunk: Buffer) => {
    out.stdout += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    out.stderr += chunk.toString();
  });
  const exit = once(child, "exit").then(([code]) => code as number | null);
  return { child, out, exit };
}

describe.skipIf(!postgres)("portrait copy-store", () => {
  it("copies, with progress per table on stderr and the summary on stdout, as text or JSON", async () => {
    const db = await database();
    const text = await cli.run(["copy-store", "--to", db.url, "--data-dir", source]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stderr).toMatch(/^profiles: 6,000 rows \(\d+\.\d s, [\d,]+ rows\/s\)$/m);
    expect(text.stderr).toMatch(/^events: 18,000 rows /m);
    expect(text.stdout).toMatch(/^copied .*portrait\.db into 127\.0\.0\.1:5432\/portrait_test_\w+ in \d+\.\d s$/m);
    expect(text.stdout).toMatch(/^ {2}events +18000 {2}translated from events \+ profiles$/m);
    expect(text.stdout).toMatch(/^verified: every table holds the rows expected/m);

    const again = await database();
    // The environment's data directory, as for every command; PORTRAIT_DATABASE_URL does not make it the source.
    const json = await cli.run(["copy-store", "--to", again.url, "--json"], {
      PORTRAIT_DATA_DIR: source,
      PORTRAIT_DATABASE_URL: again.url,
    });
    expect(json.code, json.stderr).toBe(0);
    const summary = JSON.parse(json.stdout);
    expect(summary).toMatchObject({ verified: true, source: path.join(source, "portrait.db") });
    expect(summary.tables.find((t: { table: string }) => t.table === "profiles")).toMatchObject({
      rows: 6_000,
      expected: 6_000,
      how: "translated",
    });
  }, 60_000);

  it("refuses a URL that is not PostgreSQL's, a missing store, and a target that is not empty", async () => {
    const db = await database();
    expectOneLineError(
      await cli.run(["copy-store", "--to", "sqlite:///tmp/x.db", "--data-dir", source]),
      /^portrait: INVALID_URL: --to must be a postgres:\/\/ or postgresql:\/\/ URL, got "sqlite:\/\/\/tmp\/x.db"$/m,
    );
    const missing = tempDir();
    expectOneLineError(
      await cli.run(["copy-store", "--to", db.url, "--data-dir", missing]),
      /^portrait: NO_STORE: no Portrait store at .*portrait\.db/,
    );
    expect(await tablesOf(db.url)).toEqual([]);
    expect((await cli.run(["copy-store", "--to", db.url, "--data-dir", source])).code).toBe(0);
    expectOneLineError(
      await cli.run(["copy-store", "--to", db.url, "--data-dir", source]),
      /^portrait: TARGET_NOT_EMPTY: the database 127\.0\.0\.1:5432\/\w+ holds a Portrait store already/,
    );
    const withoutTo = await cli.run(["copy-store", "--data-dir", source]);
    expect(withoutTo.code).toBe(1);
    expect(withoutTo.stderr).toMatch(/required option '--to <url>' not specified/);
  }, 60_000);

  it("refuses a store that a server still has open", async () => {
    const dir = tempDir();
    const served = started(
      cli.spawn(["serve"], { PORTRAIT_DATA_DIR: dir, PORTRAIT_PORT: "0", PORTRAIT_HOST: "127.0.0.1" }),
    );
    try {
      await expect.poll(() => served.out.stdout, { timeout: 30_000 }).toMatch(/Portrait is ready|listening/);
      const db = await database();
      expectOneLineError(
        await cli.run(["copy-store", "--to", db.url, "--data-dir", dir]),
        /^portrait: STORE_IN_USE: .*portrait\.db is open in another process \(pid \d+\): stop every `portrait serve`/,
      );
      expect(await tablesOf(db.url)).toEqual([]);
    } finally {
      served.child.kill("SIGTERM");
      await served.exit;
    }
  }, 60_000);

  it("leaves the target empty when interrupted with Ctrl-C or killed in the middle", async () => {
    for (const signal of ["SIGINT", "SIGKILL"] as const) {
      const db = await database();
      const copy = started(cli.spawn(["copy-store", "--to", db.url, "--data-dir", source]));
      // Profiles are copied first; events (18,000 rows) are still to come.
      await expect.poll(() => copy.out.stderr, { timeout: 30_000, interval: 20 }).toMatch(/^profiles: /m);
      copy.child.kill(signal);
      const code = await copy.exit;
      if (signal === "SIGINT") {
        expect(code).toBe(1);
        expect(copy.out.stderr).toMatch(/^portrait: INTERRUPTED: interrupted: the copy was rolled back/m);
      }
      expect(copy.out.stdout).toBe("");
      expect(await tablesOf(db.url)).toEqual([]);
    }
  }, 60_000);
});
