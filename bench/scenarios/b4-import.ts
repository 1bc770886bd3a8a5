/**
 * B4: CSV import of profiles through `portrait import` (the CLI, a client of a running server) on an empty store.
 * The file is seeded: 10 columns (Email handle, Name, City, Plan, Score<number>, Newsletter<boolean>,
 * Signup Date<dd/MM/yyyy>, Country, Tier, Points<number>), one new person per row.
 *
 * Figure: seconds per 1,000,000 rows, wall clock from starting the CLI to its exit (upload + import), target ≤ 10 s.
 * Quick mode imports 100,000 rows and scales; `--full` imports 1M and 4M rows. Rows B4-rss: the peak RSS of server +
 * CLI (VmHWM of each, summed), ≤ 250 MB; `--full` adds B4-flat, 4M peak / 1M peak ≤ 1.1.
 * Baseline: the raw store inserting the same profiles (profile row with JSON properties + Email identity row,
 * 1,000 per commit), as seconds per 1M rows; ratio = baseline seconds / figure seconds (the share of raw speed).
 */

import { spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import path from "node:path";
import { newProfileState } from "../../src/engine/profile.js";
import type { PropertyEntry } from "../../src/engine/types.js";
import { timeOrderedId } from "../../src/pipeline/clock.js";
import { CITIES, PLANS } from "../lib/data.js";
import { Prng, seedOf } from "../lib/prng.js";
import { REPO_ROOT, SECRET_KEY, startPortrait, tempDir } from "../lib/processes.js";
import { baselineRate, openRawStore, RAW_ACCOUNT } from "../lib/raw-store.js";
import { RssSampler } from "../lib/rss.js";
import type { BenchContext, ExtraRow, Scenario } from "../lib/scenario.js";

const COUNTRIES = ["FR", "DE", "ES", "PT", "IT", "NO", "IE", "AT", "CZ", "NL"] as const;
const TIERS = ["bronze", "silver", "gold", "platinum"] as const;
const HEADER =
  "Email,Name,City,Plan,Score<number>,Newsletter<boolean>,Signup Date<dd/MM/yyyy>,Country,Tier,Points<number>";
const PER_MILLION = 1_000_000;

function row(rng: Prng, n: number): string {
  const day = String(1 + rng.int(28)).padStart(2, "0");
  const month = String(1 + rng.int(12)).padStart(2, "0");
  return [
    `b4-person-${n}@example.com`,
    `Person ${n}`,
    rng.pick(CITIES),
    rng.pick(PLANS),
    rng.int(1000),
    rng.next() < 0.5 ? "true" : "false",
    `${day}/${month}/${2015 + rng.int(10)}`,
    rng.pick(COUNTRIES),
    rng.pick(TIERS),
    rng.int(100_000),
  ].join(",");
}

/** Writes the seeded CSV with backpressure (4M rows never sit in memory). */
async function writeCsv(file: string, rows: number): Promise<void> {
  const out = createWriteStream(file);
  const rng = new Prng(seedOf("b4", rows));
  out.write(`${HEADER}\n`);
  let chunk = "";
  for (let n = 0; n < rows; n++) {
    chunk += `${row(rng, n)}\n`;
    if (chunk.length > 1 << 20) {
      if (!out.write(chunk)) await once(out, "drain");
      chunk = "";
    }
  }
  out.end(chunk);
  await once(out, "finish");
}

interface ImportRun {
  rows: number;
  seconds: number;
  peakMb: number;
  serverPeakMb: number;
  cliPeakMb: number;
  summary: string;
  failed: boolean;
}

/** An empty server, then `portrait import FILE` against it; wall time and the peak RSS of both processes. */
async function importOnce(ctx: BenchContext, rows: number): Promise<ImportRun> {
  const dir = tempDir(ctx, `portrait-b4-${rows}`);
  const file = path.join(dir, `profiles-${rows}.csv`);
  await writeCsv(file, rows);
  const server = await startPortrait(ctx, `B4-${rows}`);
  const serverRss = new RssSampler(server.pid).start();
  const started = performance.now();
  const cli = spawn(
    process.execPath,
    [
      path.join(REPO_ROOT, "bin", "portrait.js"),
      "import",
      file,
      "--kind",
      "profiles",
      "--url",
      server.url,
      "--key",
      SECRET_KEY,
    ],
    { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  const cliRss = new RssSampler(cli.pid ?? 0).start();
  let stdout = "";
  cli.stdout?.on("data", (c: Buffer) => {
    stdout += c.toString();
  });
  cli.stderr?.on("data", () => undefined);
  const [code] = (await once(cli, "exit")) as [number | null];
  const seconds = (performance.now() - started) / 1000;
  const cliPeak = cliRss.stop();
  const serverPeak = serverRss.stop();
  await server.stop();
  const summary = stdout.trim().split("\n")[0] ?? "";
  ctx.log(`B4 ${rows} rows: ${seconds.toFixed(1)} s; ${summary}`);
  return {
    rows,
    seconds,
    serverPeakMb: serverPeak.peakMb,
    cliPeakMb: cliPeak.peakMb,
    peakMb: serverPeak.peakMb + cliPeak.peakMb,
    summary,
    failed: code !== 0 || !/ done in .* 0 failed/.test(summary),
  };
}

/** Raw: the same profiles as profile rows with JSON properties plus an Email identity row, 1,000 per commit. */
async function rawSecondsPerMillion(ctx: BenchContext): Promise<number> {
  const store = await openRawStore(ctx, "B4");
  const rng = new Prng(seedOf("b4-raw"));
  let n = 0;
  const rate = await baselineRate(ctx, "B4", async () => {
    const now = Date.now();
    const states = Array.from({ length: 1000 }, () => {
      const state = newProfileState(timeOrderedId(), now, rng.int(1000));
      const cells = row(rng, n++).split(",");
      const props: Record<string, string | number | boolean> = {
        Email: cells[0] as string,
        Name: cells[1] as string,
        City: cells[2] as string,
        Plan: cells[3] as string,
        Score: Number(cells[4]),
        Newsletter: cells[5] === "true",
        "Signup Date": now,
        Country: cells[7] as string,
        Tier: cells[8] as string,
        Points: Number(cells[9]),
      };
      for (const [key, v] of Object.entries(props)) {
        const entry: PropertyEntry = { v, t: typeof v as "string" | "number" | "boolean", ts: now };
        state.props[key] = entry;
      }
      state.identities.Email = [{ value: props.Email as string, ts: now }];
      return state;
    });
    await store.write(RAW_ACCOUNT, async (tx) => {
      for (const state of states) {
        await tx.insertProfile(RAW_ACCOUNT, state);
        await tx.claimIdentity(RAW_ACCOUNT, "Email", state.identities.Email![0]!.value, state.id);
      }
    });
    return 1000;
  });
  return PER_MILLION / rate;
}

export const scenario: Scenario = {
  name: "B4",
  title: "CSV import of profiles (10 columns) through `portrait import`, empty store",
  unit: "s/1M rows",
  target: { kind: "max", value: 10 },
  stores: ["sqlite", "postgres"],
  async run(ctx) {
    const baseline = ctx.store === "sqlite" ? await rawSecondsPerMillion(ctx) : null;
    const sizes = ctx.mode === "full" ? [1_000_000, 4_000_000] : [100_000];
    const runs: ImportRun[] = [];
    for (const rows of sizes) runs.push(await importOnce(ctx, rows));
    const first = runs[0] as ImportRun;
    const figure = (first.seconds * PER_MILLION) / first.rows;
    const errors = runs.filter((r) => r.failed).length;
    const peak = Math.max(...runs.map((r) => r.peakMb));
    const extra: ExtraRow[] = [
      {
        scenario: "B4-rss",
        unit: "MB",
        target: { kind: "max", value: 250 },
        figure: Math.round(peak * 10) / 10,
        baseline: null,
        errors,
        note: runs
          .map((r) => `${r.rows} rows: server ${Math.round(r.serverPeakMb)} MB + CLI ${Math.round(r.cliPeakMb)} MB`)
          .join("; "),
      },
    ];
    if (runs.length > 1) {
      const last = runs[runs.length - 1] as ImportRun;
      extra.push({
        scenario: "B4-flat",
        unit: "× 1M peak",
        target: { kind: "max", value: 1.1 },
        figure: Math.round((last.peakMb / first.peakMb) * 100) / 100,
        baseline: null,
        errors,
        note: `peak RSS ${Math.round(last.peakMb)} MB at ${last.rows} rows vs ${Math.round(first.peakMb)} MB at ${first.rows}`,
      });
    }
    return {
      figure,
      baseline,
      ratio: baseline === null ? null : baseline / figure,
      errors,
      runs: runs.map((r) => (r.seconds * PER_MILLION) / r.rows),
      note:
        `${runs.map((r) => `${r.rows} rows in ${r.seconds.toFixed(1)} s`).join(", ")}` +
        (ctx.mode === "quick" ? " (quick: scaled to 1M)" : "") +
        `; ${first.summary}`,
      extra,
    };
  },
};
