/**
 * HTTP load with autocannon, run programmatically in the bench process against a server in a child process.
 * The load generator shares the machine's 2 cores with the server; request bodies are serialised before the run
 * (or cheaply templated) so that autocannon spends its CPU on sockets, not on building JSON.
 * Every non-2xx response, connection error, timeout and failed record counts as an error: a run with errors is
 * reported as such, never folded into the figure.
 */
import autocannon from "autocannon";
import { postgresCpuMs, postgresCpuSince, processCpuMs } from "./cpu-time.js";
import { SECRET_KEY } from "./processes.js";
import { type BenchContext, median } from "./scenario.js";

export interface LoadSpec {
  url: string;
  connections: number;
  /** What each connection sends, in turn; vary bodies from a prepared pool with `setupRequest`. */
  requests: autocannon.Request[];
  /** Units of work a 2xx response stands for and how many of them failed (a batch's records). Default 1 / 0. */
  count?: (body: string) => { done: number; failed: number };
  timeoutSeconds?: number;
}

export interface LoadRun {
  seconds: number;
  /** 2xx responses. */
  ok: number;
  non2xx: number;
  /** Connection errors and timeouts. */
  failedRequests: number;
  /** Units reported failed inside 2xx responses (records in `unprocessed`, an empty search result). */
  failedUnits: number;
  units: number;
  /** 2xx responses per second. */
  requestRate: number;
  /** Units per second. */
  unitRate: number;
  p50: number;
  p99: number;
  max: number;
  /** The first error seen, to print. */
  firstError: string | null;
}

export function errorsOf(run: LoadRun): number {
  return run.non2xx + run.failedRequests + run.failedUnits;
}

/**
 * `POST /v1/ingest` from `connections` connections, each request's body from `body(n)` for n = 0, 1, 2…; with `count`,
 * a response stands for the records it processed (countIngest), else for one request.
 */
export function ingestLoad(
  url: string,
  connections: number,
  body: (n: number) => Buffer | string,
  count?: LoadSpec["count"],
): LoadSpec {
  let next = 0;
  return {
    url,
    connections,
    requests: [
      {
        method: "POST",
        path: "/v1/ingest",
        headers: apiHeaders(true),
        setupRequest(request) {
          request.body = body(next++);
          return request;
        },
      },
    ],
    ...(count && { count }),
  };
}

/** The headers every Portrait API request carries. */
export function apiHeaders(json: boolean): Record<string, string> {
  return json
    ? { authorization: `Bearer ${SECRET_KEY}`, "content-type": "application/json" }
    : { authorization: `Bearer ${SECRET_KEY}` };
}

/** One autocannon run of `seconds`. */
function runOne(spec: LoadSpec, seconds: number): Promise<LoadRun> {
  let units = 0;
  let failedUnits = 0;
  let firstError: string | null = null;
  const count = spec.count ?? (() => ({ done: 1, failed: 0 }));
  const requests = spec.requests.map((request) => ({
    ...request,
    onResponse(status: number, body: string) {
      if (status >= 200 && status < 300) {
        const counted = count(body);
        units += counted.done;
        failedUnits += counted.failed;
        if (counted.failed > 0) firstError ??= `${status} with failed units: ${body.slice(0, 300)}`;
      } else {
        firstError ??= `${status}: ${body.slice(0, 300)}`;
      }
    },
  }));
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: spec.url,
        connections: spec.connections,
        duration: seconds,
        timeout: spec.timeoutSeconds ?? 30,
        requests,
      },
      (error, result) => {
        if (error) return reject(error);
        const failedRequests = result.errors;
        if (failedRequests > 0)
          firstError ??= `${failedRequests} connection errors / timeouts (${result.timeouts} timeouts)`;
        resolve({
          seconds: result.duration,
          ok: result["2xx"],
          non2xx: result.non2xx,
          failedRequests,
          failedUnits,
          units,
          requestRate: result["2xx"] / result.duration,
          unitRate: units / result.duration,
          p50: result.latency.p50,
          p99: result.latency.p99,
          max: result.latency.max,
          firstError,
        });
      },
    );
  });
}

/** Runs several load specs at the same time (their connections add up); one LoadRun per spec. */
export function runConcurrently(specs: LoadSpec[], seconds: number): Promise<LoadRun[]> {
  return Promise.all(specs.map((spec) => runOne(spec, seconds)));
}

export interface Measured {
  /** One entry per measured run, each with one LoadRun per spec. */
  runs: LoadRun[][];
  /** CPU per unit over the measured runs (median), when `measureLoad` was told whose. */
  cpu: CpuPerUnit | null;
  /** Errors over the warm-up and every run. */
  errors: number;
  firstError: string | null;
}

/**
 * Waits until each server has worked off what the previous run left it: autocannon stops at its deadline and drops
 * requests in flight, which the server still runs. Without this, a measured run began behind the warm-up's backlog
 * (a quick B1 under load once counted 0 events in its 5 s). A cheap GET is answered only once the backlog is done.
 */
async function settle(specs: LoadSpec[]): Promise<void> {
  for (const url of new Set(specs.map((spec) => spec.url))) {
    const deadline = performance.now() + 60_000;
    for (;;) {
      const started = performance.now();
      await fetch(`${url}/metrics`).then((r) => r.arrayBuffer());
      if (performance.now() - started < 50 || performance.now() > deadline) break;
    }
  }
}

/** CPU time per unit of work, µs: the server's, and PostgreSQL's (null on SQLite). */
export interface CpuPerUnit {
  serverUs: number;
  databaseUs: number | null;
}

/** `; server CPU 38 µs per event, PostgreSQL 45 µs` for a scenario's note; empty when not measured. */
export function describeCpu(cpu: CpuPerUnit | null, unit: string): string {
  if (cpu === null) return "";
  const database = cpu.databaseUs === null ? "" : `, PostgreSQL ${cpu.databaseUs.toFixed(1)} µs`;
  return `; server CPU ${cpu.serverUs.toFixed(1)} µs per ${unit}${database}`;
}

/**
 * PERFORMANCE.md's protocol: a warm-up, then `timing.runs` measured runs of `timing.runSeconds`. With `serverPid`,
 * each measured run also counts that process's CPU, and on PostgreSQL its processes' too (Measured.cpu).
 */
export async function measureLoad(
  ctx: BenchContext,
  label: string,
  specs: LoadSpec[],
  serverPid?: number,
): Promise<Measured> {
  const { warmupSeconds, runSeconds, runs: count } = ctx.timing;
  const all: LoadRun[] = [];
  if (warmupSeconds > 0) {
    const warm = await runConcurrently(specs, warmupSeconds);
    all.push(...warm);
    ctx.log(`${label} warm-up ${warmupSeconds} s: ${describe(warm)}`);
  }
  const runs: LoadRun[][] = [];
  const server: number[] = [];
  const database: number[] = [];
  for (let i = 0; i < count; i++) {
    await settle(specs);
    const before = serverPid !== undefined && {
      server: processCpuMs(serverPid),
      database: ctx.store === "postgres" ? postgresCpuMs() : null,
    };
    const run = await runConcurrently(specs, runSeconds);
    const units = run.reduce((sum, r) => sum + r.units, 0);
    if (serverPid !== undefined && before && before.server !== null && units > 0) {
      const after = processCpuMs(serverPid);
      if (after !== null) server.push(((after - before.server) * 1000) / units);
      if (before.database) database.push((postgresCpuSince(before.database) * 1000) / units);
    }
    runs.push(run);
    all.push(...run);
    ctx.log(`${label} run ${i + 1}/${count} (${runSeconds} s): ${describe(run)}`);
  }
  return {
    runs,
    cpu:
      server.length === 0 ? null : { serverUs: median(server), databaseUs: database.length ? median(database) : null },
    errors: all.reduce((sum, run) => sum + errorsOf(run), 0),
    firstError: all.find((run) => run.firstError)?.firstError ?? null,
  };
}

function describe(runs: LoadRun[]): string {
  return runs
    .map(
      (r) =>
        `${Math.round(r.requestRate)} req/s, ${Math.round(r.unitRate)} units/s, p50 ${r.p50} ms, p99 ${r.p99} ms` +
        (errorsOf(r) > 0 ? `, ERRORS ${errorsOf(r)}` : ""),
    )
    .join(" | ");
}

/** The median over runs of one number taken from each run. */
export function medianOf(measured: Measured, pick: (run: LoadRun[]) => number): { value: number; runs: number[] } {
  const values = measured.runs.map(pick);
  return { value: median(values), runs: values };
}

/** `count` for ingest responses: processed records, and the length of `unprocessed`. */
export function countIngest(body: string): { done: number; failed: number } {
  // The common case, checked without parsing a 1,000-result body on the load generator's share of the CPU.
  const processed = /"processed":(\d+)/.exec(body);
  if (processed && body.includes('"unprocessed":[]')) return { done: Number(processed[1]), failed: 0 };
  const parsed = JSON.parse(body) as { processed?: number; unprocessed?: unknown[] };
  return { done: parsed.processed ?? 0, failed: parsed.unprocessed?.length ?? 0 };
}
