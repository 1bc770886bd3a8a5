/**
 * B3: one event record per request, 32 connections. Target ≥ 10,000 requests/s.
 * Baseline (PERFORMANCE.md): a bare fastify route that parses the same one-record batches and answers {ok:true},
 * in its own child process, under the same load — the ceiling of HTTP on this machine.
 */
import { ingestAll } from "../lib/api.js";
import { batchBody, deviceId, deviceSetupBatches, eventRecord } from "../lib/data.js";
import { countIngest, describeCpu, ingestLoad, type LoadSpec, measureLoad, medianOf } from "../lib/load.js";
import { Prng, seedOf } from "../lib/prng.js";
import { startBareServer, startPortrait } from "../lib/processes.js";
import type { Scenario } from "../lib/scenario.js";

const CONNECTIONS = 32;
const DEVICES = 1000;
const POOL = 4096;

function spec(url: string, bodies: Buffer[], count?: LoadSpec["count"]): LoadSpec {
  return ingestLoad(url, CONNECTIONS, (n) => bodies[n % bodies.length]!, count);
}

export const scenario: Scenario = {
  name: "B3",
  title: "single-event requests (one record per request), 32 connections",
  unit: "req/s",
  target: { kind: "min", value: 10_000 },
  stores: ["sqlite", "postgres"],
  async run(ctx) {
    const rng = new Prng(seedOf("b3-load"));
    const bodies = Array.from({ length: POOL }, () =>
      batchBody([eventRecord(rng, { deviceId: deviceId("b3", rng.int(DEVICES)) })]),
    );

    const bare = await startBareServer(ctx);
    const base = await measureLoad(ctx, "B3 bare fastify", [spec(bare.url, bodies)]);
    await bare.stop();
    if (base.errors > 0) throw new Error(`the bare fastify baseline had ${base.errors} errors: ${base.firstError}`);
    const baseline = medianOf(base, ([run]) => run!.requestRate).value;

    const server = await startPortrait(ctx, "B3");
    await ingestAll(server.url, deviceSetupBatches("b3", DEVICES, seedOf("b3-setup")));
    const measured = await measureLoad(ctx, "B3", [spec(server.url, bodies, countIngest)], server.pid);
    const { value: figure, runs } = medianOf(measured, ([run]) => run!.requestRate);
    const p99 = medianOf(measured, ([run]) => run!.p99).value;
    return {
      figure,
      baseline,
      errors: measured.errors,
      runs,
      note: `p99 ${p99} ms${describeCpu(measured.cpu, "request")}${measured.firstError ? `; first error: ${measured.firstError}` : ""}`,
    };
  },
};
