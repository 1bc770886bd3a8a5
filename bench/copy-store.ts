/**
 * `npm run bench:copy-store` — how fast `portrait copy-store` moves a SQLite store into PostgreSQL, and its peak RSS
 * (docs/moving-to-postgres.md quotes the figures).
 *
 *   npm run build && npm run bench:copy-store                          100,000 people, 1,000,000 events
 *   npm run bench:copy-store -- --profiles 10000 --events-each 10      smaller
 *
 * The store is made in this process (lib/copy-store-data.ts). The copy runs as the operator runs it, `portrait copy-store --json` in a child process,
 * into a fresh database on $PORTRAIT_BENCH_PG_URL's server (dropped after), its memory sampled from /proc.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import type { CopySummary } from "../src/store/copy/copy-store.js";
import { makeStore } from "./lib/copy-store-data.js";
import { REPO_ROOT } from "./lib/processes.js";
import { RssSampler } from "./lib/rss.js";

const ADMIN_URL = process.env.PORTRAIT_BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/postgres";
async function admin(sql: string): Promise<void> {
  const client = new pg.Client(ADMIN_URL);
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { profiles: { type: "string", default: "100000" }, "events-each": { type: "string", default: "10" } },
  });
  const profiles = Number(values.profiles);
  const eventsEach = Number(values["events-each"]);
  const dir = mkdtempSync(path.join(tmpdir(), "portrait-bench-copy-"));
  const database = `portrait_bench_copy_${randomBytes(4).toString("hex")}`;
  try {
    const made = performance.now();
    await makeStore(dir, profiles, eventsEach);
    const size = statSync(path.join(dir, "portrait.db")).size;
    process.stderr.write(
      `store: ${profiles} people, ${profiles * eventsEach} events, ${(size / 1e6).toFixed(0)} MB, made in ` +
        `${((performance.now() - made) / 1000).toFixed(0)} s\n`,
    );
    await admin(`CREATE DATABASE ${database}`);
    const url = new URL(ADMIN_URL);
    url.pathname = `/${database}`;
    const start = performance.now();
    const child = spawn(
      process.execPath,
      [path.join(REPO_ROOT, "bin/portrait.js"), "copy-store", "--to", url.toString(), "--data-dir", dir, "--json"],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const sampler = new RssSampler(child.pid as number, 50).start();
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    const [code] = await once(child, "exit");
    const memory = sampler.stop();
    if (code !== 0) throw new Error(`copy-store exited with ${code}`);
    const wall = (performance.now() - start) / 1000;
    const summary = JSON.parse(out) as CopySummary;
    const rows = summary.tables.reduce((n, t) => n + t.rows, 0);
    process.stdout.write(
      `copy-store: ${rows} rows in ${wall.toFixed(1)} s (${Math.round(rows / wall)} rows/s overall)\n`,
    );
    for (const t of summary.tables.filter((t) => t.rows >= 1000)) {
      process.stdout.write(`  ${t.table}: ${t.rows} rows, ${t.seconds} s, ${Math.round(t.rows / t.seconds)} rows/s\n`);
    }
    process.stdout.write(`peak RSS of the copy: ${memory.peakMb.toFixed(0)} MB\n`);
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
