/**
 * `npm run bench` — PERFORMANCE.md's scenarios against a real server in a child process.
 *
 *   npm run bench                         quick profile of every scenario (reduced sizes and runs, < 3 min)
 *   npm run bench -- --full               the spec's sizes and timing: median of 3 runs of 30 s after 10 s warm-up
 *   npm run bench -- --only B1,B5         some scenarios
 *   npm run bench -- --store postgres     the server on $PORTRAIT_DATABASE_URL (scenarios that support it)
 *   npm run bench -- --cpu-prof           servers run under `node --cpu-prof`; prints where their time went
 *
 * Scenarios are the files bench/scenarios/b<N>-*.ts, each exporting `scenario`; adding one is adding a file.
 * Writes bench/results.json and prints a table. The load generator runs in this process and shares the machine's
 * cores with the server, as the spec's figures do.
 */
import { readdirSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { summariseProfiles } from "./lib/cpu-profile.js";
import { describeServer } from "./lib/postgres.js";
import { REPO_ROOT } from "./lib/processes.js";
import {
  type BenchContext,
  type ExtraRow,
  type Measurement,
  type Mode,
  type Scenario,
  type StoreKind,
  type Target,
  TIMINGS,
  targetFor,
} from "./lib/scenario.js";
import { Scope } from "./lib/scope.js";

interface ResultRow {
  scenario: string;
  figure: number | null;
  unit: string;
  baseline: number | null;
  baselineUnit?: string;
  ratio: number | null;
  target: string;
  pass: boolean;
  errors: number;
  runs?: number[];
  note?: string;
  mode: Mode;
  store: StoreKind;
  /** 1-minute load average when the scenario ended: on a shared machine, above the core count means noise. */
  load1: number;
  /** On PostgreSQL: its version and the settings that move the figures (describeServer). */
  server?: string;
}

function usage(message: string): never {
  process.stderr.write(
    `${message}\nusage: npm run bench -- [--full] [--store sqlite|postgres] [--only B1,B5] [--cpu-prof]\n`,
  );
  process.exit(2);
}

async function loadScenarios(): Promise<Scenario[]> {
  const dir = new URL("./scenarios/", import.meta.url);
  const files = readdirSync(dir).filter((f) => /^b\d+-.*\.js$/.test(f));
  const number = (f: string) => Number(/^b(\d+)/.exec(f)![1]);
  files.sort((a, b) => number(a) - number(b));
  const scenarios: Scenario[] = [];
  for (const file of files) {
    const module = (await import(new URL(file, dir).href)) as { scenario?: Scenario };
    if (!module.scenario) throw new Error(`bench/scenarios/${file} exports no \`scenario\``);
    scenarios.push(module.scenario);
  }
  return scenarios;
}

function targetText(target: Target, unit: string): string {
  const bound = `${target.kind === "min" ? "≥" : "≤"} ${target.value.toLocaleString("en-US")} ${unit}`;
  return target.minRatio === undefined ? bound : `${bound}, ratio ≥ ${target.minRatio}`;
}

function round(value: number | null): number | null {
  if (value === null || !Number.isFinite(value)) return value;
  if (Math.abs(value) >= 100) return Math.round(value);
  if (Math.abs(value) >= 1) return Math.round(value * 100) / 100;
  return Math.round(value * 1000) / 1000;
}

function toRow(
  name: string,
  unit: string,
  target: Target,
  m: Measurement,
  ctx: Pick<BenchContext, "mode" | "store">,
): ResultRow {
  const ratio = m.ratio !== undefined ? m.ratio : m.baseline ? m.figure / m.baseline : null;
  const meets = target.kind === "min" ? m.figure >= target.value : m.figure <= target.value;
  const ratioOk = target.minRatio === undefined || (ratio !== null && ratio >= target.minRatio);
  return {
    scenario: name,
    figure: round(m.figure),
    unit,
    baseline: round(m.baseline),
    ...(m.baselineUnit && { baselineUnit: m.baselineUnit }),
    ratio: round(ratio),
    target: targetText(target, unit),
    // A run with errors never passes: its figure counts work the server did not do right.
    pass: meets && ratioOk && m.errors === 0,
    errors: m.errors,
    ...(m.runs && { runs: m.runs.map((r) => round(r)!) }),
    ...(m.note && { note: m.note }),
    mode: ctx.mode,
    store: ctx.store,
    load1: round(loadavg()[0]!)!,
  };
}

function formatNumber(value: number | null, unit?: string): string {
  if (value === null) return "—";
  const text = Math.abs(value) >= 100 ? Math.round(value).toLocaleString("en-US") : String(round(value));
  return unit ? `${text} ${unit}` : text;
}

function printTable(rows: ResultRow[]): void {
  const header = ["scenario", "figure", "baseline", "ratio", "target", "result", "load"];
  const lines = rows.map((r) => [
    r.scenario,
    formatNumber(r.figure, r.unit),
    formatNumber(r.baseline, r.baseline === null ? undefined : (r.baselineUnit ?? r.unit)),
    formatNumber(r.ratio),
    r.target,
    r.pass ? "pass" : r.errors > 0 ? `MISS (${r.errors} errors)` : "MISS",
    r.load1.toFixed(1),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  process.stdout.write(`\n${line(header)}\n${widths.map((w) => "-".repeat(w)).join("  ")}\n`);
  for (const l of lines) process.stdout.write(`${line(l)}\n`);
  const notes = rows.filter((r) => r.note);
  if (notes.length > 0) {
    process.stdout.write("\n");
    for (const r of notes) process.stdout.write(`${r.scenario}: ${r.note}\n`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      full: { type: "boolean", default: false },
      store: { type: "string", default: "sqlite" },
      only: { type: "string" },
      "cpu-prof": { type: "boolean", default: false },
    },
    strict: true,
  });
  if (values.store !== "sqlite" && values.store !== "postgres") usage(`--store must be sqlite or postgres`);
  const store: StoreKind = values.store;
  const mode: Mode = values.full ? "full" : "quick";
  const timing = TIMINGS[mode];

  let scenarios = await loadScenarios();
  if (values.only) {
    const wanted = values.only.split(",").map((s) => s.trim().toUpperCase());
    const unknown = wanted.filter((w) => !scenarios.some((s) => s.name === w));
    if (unknown.length > 0) usage(`unknown scenario ${unknown.join(", ")} (have ${scenarios.map((s) => s.name)})`);
    scenarios = scenarios.filter((s) => wanted.includes(s.name));
  }
  const skipped = scenarios.filter((s) => !s.stores.includes(store));
  scenarios = scenarios.filter((s) => s.stores.includes(store));

  const cpuProfileDir = values["cpu-prof"]
    ? path.join(REPO_ROOT, "bench", "profiles", new Date().toISOString().replace(/[:.]/g, "-"))
    : null;
  const describeTiming =
    timing.runs === 1
      ? `1 run of ${timing.runSeconds} s after a ${timing.warmupSeconds} s warm-up`
      : `median of ${timing.runs} runs of ${timing.runSeconds} s after a ${timing.warmupSeconds} s warm-up`;
  process.stdout.write(
    `Portrait bench — ${mode.toUpperCase()} mode (${describeTiming}${mode === "quick" ? ", reduced sizes" : ""}), ` +
      `store ${store}, scenarios ${scenarios.map((s) => s.name).join(" ")}\n`,
  );
  if (skipped.length > 0) {
    process.stdout.write(`skipped (not on ${store}): ${skipped.map((s) => s.name).join(" ")}\n`);
  }
  // A PostgreSQL figure means little without the server's settings (its buffers above all): they head the output.
  const server = store === "postgres" ? await describeServer() : null;
  if (server) process.stdout.write(`${server.settings}\n${server.note ? `${server.note}\n` : ""}`);

  const started = performance.now();
  const memo = new Map<string, unknown>();
  const rows: ResultRow[] = [];
  for (const scenario of scenarios) {
    const scope = new Scope();
    const ctx: BenchContext = {
      mode,
      store,
      timing,
      scope,
      memo,
      cpuProfileDir,
      log: (message) => process.stdout.write(`  ${message}\n`),
    };
    const t0 = performance.now();
    process.stdout.write(`${scenario.name}: ${scenario.title}\n`);
    const busy = loadavg()[0]!;
    if (busy > availableParallelism()) {
      ctx.log(
        `note: load average ${busy.toFixed(1)} on ${availableParallelism()} cores — other work shares this machine`,
      );
    }
    try {
      const outcome = await scenario.run(ctx);
      rows.push(toRow(scenario.name, scenario.unit, targetFor(scenario, store), outcome, ctx));
      for (const extra of outcome.extra ?? ([] as ExtraRow[])) {
        rows.push(toRow(extra.scenario, extra.unit, extra.target, extra, ctx));
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      process.stdout.write(`  FAILED: ${message}\n`);
      rows.push({
        scenario: scenario.name,
        figure: null,
        unit: scenario.unit,
        baseline: null,
        ratio: null,
        target: targetText(targetFor(scenario, store), scenario.unit),
        pass: false,
        errors: 1,
        note: `scenario failed: ${message.split("\n")[0]}`,
        mode,
        store,
        load1: round(loadavg()[0]!)!,
      });
    } finally {
      await scope.close();
    }
    process.stdout.write(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)\n`);
  }

  const out = path.join(REPO_ROOT, "bench", "results.json");
  const described = server ? rows.map((row) => ({ ...row, server: server.settings })) : rows;
  writeFileSync(out, `${JSON.stringify(described, null, 2)}\n`);
  printTable(rows);
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(
    `\n${mode} mode, ${seconds.toFixed(0)} s in total; results in ${path.relative(process.cwd(), out)}\n`,
  );
  if (cpuProfileDir) process.stdout.write(`\nCPU profiles (${cpuProfileDir}):\n${summariseProfiles(cpuProfileDir)}\n`);
  // Figures are tracked, not gated: a miss is reported in the table, the exit code says only that the bench ran.
}

main().catch((error) => {
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
