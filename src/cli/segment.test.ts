/**
 * `portrait segment count --where '<json>'` as an operator runs it: the real command (src/cli/main.ts, bundled with
 * esbuild so that the test runs the source under test, not a stale dist/) in a child process, on a SQLite data
 * directory and on a PostgreSQL database written through the pipeline.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Accounts } from "../pipeline/accounts.js";
import { Portrait } from "../pipeline/portrait.js";
import { openStore } from "../store/open.js";
import { bundleCli, type Cli } from "../test-support/cli.js";
import { createTestDatabase, storesUnderTest, type TestDatabase } from "../test-support/postgres.js";

const stores = await storesUnderTest();

let cli: Cli;
beforeAll(async () => {
  cli = await bundleCli();
}, 60_000);
afterAll(() => cli?.remove());

const run = (...args: string[]) => cli.run(args);

describe.each(stores)("portrait segment count on %s", (kind) => {
  let dir: string;
  let database: TestDatabase | null = null;
  /** The store options of the command. */
  let where: string[];

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "portrait-cli-segment-"));
    if (kind === "postgres") {
      database = await createTestDatabase();
      where = ["--database-url", database!.url];
    } else {
      where = ["--data-dir", dir];
    }
    const store = await openStore({ dataDir: dir, databaseUrl: database?.url ?? null });
    try {
      const accounts = new Accounts(store);
      const { account } = await accounts.create("CLI", {}, "default");
      const other = await accounts.create("Other", {}, "other");
      const portrait = new Portrait(store);
      const now = Math.floor(Date.now() / 1000);
      const r = await portrait.ingest(account, {
        records: [
          { type: "login", deviceId: "d1", properties: { Identity: "u1", City: "Paris", Plan: "pro" } },
          { type: "login", deviceId: "d2", properties: { Identity: "u2", City: "Paris" } },
          { type: "login", deviceId: "d3", properties: { Identity: "u3", City: "Lyon", Plan: "pro" } },
          { type: "event", deviceId: "d1", name: "Charged", ts: now - 60, properties: { Amount: 10 } },
          { type: "event", deviceId: "d1", name: "Charged", ts: now - 30, properties: { Amount: 20 } },
          { type: "event", deviceId: "d3", name: "Charged", ts: now - 30, properties: { Amount: 5 } },
        ],
      });
      expect(r.status).toBe("success");
      const o = await portrait.ingest(other.account, {
        records: [{ type: "login", deviceId: "d9", properties: { Identity: "u9", City: "Paris" } }],
      });
      expect(o.status).toBe("success");
    } finally {
      await store.close();
    }
  }, 60_000);

  afterAll(async () => {
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("prints the exact count of a condition", async () => {
    const paris = await run(
      "segment",
      "count",
      ...where,
      "--where",
      '{"property": "City", "op": "eq", "value": "Paris"}',
    );
    expect(paris).toEqual({ code: 0, stdout: "2\n", stderr: "" });
    const canonical = JSON.stringify({
      all: [
        { property: "City", op: "eq", value: "Paris" },
        { did: "Charged", count: { op: "gte", value: 2 }, withinLast: { days: 30 } },
        { didNot: "App Uninstalled" },
      ],
    });
    expect((await run("segment", "count", ...where, "--where", canonical, "--json")).stdout).toBe('{"count":1}\n');
    expect((await run("segment", "count", ...where, "--where", '{"did": "Never Happened"}')).stdout).toBe("0\n");
    expect((await run("segment", "count", ...where, "--where", '{"property": "Nope", "op": "notExists"}')).stdout).toBe(
      "3\n",
    );
    // Another account's profiles, with --account.
    const other = await run("segment", "count", ...where, "--account", "other", "--where", '{"type": "identified"}');
    expect(other.stdout).toBe("1\n");
  }, 60_000);

  it("refuses a malformed condition with INVALID_SEGMENT and the JSON path of the fault, exit code 1", async () => {
    const bad = await run(
      "segment",
      "count",
      ...where,
      "--where",
      '{"all": [{"type": "customer"}, {"property": "City", "op": "equals", "value": "x"}]}',
    );
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toMatch(/^portrait: INVALID_SEGMENT: at where\.all\[1\]\.op: /);
    const notJson = await run("segment", "count", ...where, "--where", "{nope");
    expect(notJson.code).toBe(1);
    expect(notJson.stderr).toMatch(/^portrait: INVALID_SEGMENT: at where: --where is not valid JSON/);
    const missing = await run("segment", "count", ...where, "--where", '{"inSegment": "seg_nope"}');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^portrait: INVALID_SEGMENT: at where\.inSegment: /);
  }, 60_000);
});
