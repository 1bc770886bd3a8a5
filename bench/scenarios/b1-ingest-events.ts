/**
 * B1: POST /v1/ingest, batches of 1,000 event records for known devices, 16 concurrent clients.
 * Target ≥ 100,000 events/s and ≥ 0.25 of the raw insert rate (store.write → tx.insertEvents, 1,000 per commit).
 * The server's RSS is sampled through the load: B9 reports it.
 */

import { newProfileState } from "../../src/engine/profile.js";
import type { NewEvent } from "../../src/engine/types.js";
import { timeOrderedId } from "../../src/pipeline/clock.js";
import { ingestAll } from "../lib/api.js";
import { batchBody, deviceId, deviceSetupBatches, eventRecord } from "../lib/data.js";
import { countIngest, describeCpu, ingestLoad, measureLoad, medianOf } from "../lib/load.js";
import { Prng, seedOf } from "../lib/prng.js";
import { startPortrait } from "../lib/processes.js";
import { baselineRate, openRawStore, RAW_ACCOUNT } from "../lib/raw-store.js";
import { type MemorySample, RssSampler, readMemory } from "../lib/rss.js";
import type { BenchContext, Outcome, Scenario } from "../lib/scenario.js";

const BATCH = 1000;
const CONNECTIONS = 16;
/** Devices known before the load, and how many distinct batches the load cycles through. */
const SIZES = { quick: { devices: 10_000, pool: 24 }, full: { devices: 100_000, pool: 64 } };

export interface IngestLoadResult {
  outcome: Outcome;
  /** Server memory: after set-up, before load (`idle`), and the peak through set-up and load. */
  memory: { idle: MemorySample; peak: MemorySample };
}

export const MEMO_KEY = "B1.result";

/** Raw insert rate: 1,000 prepared events per transaction, no HTTP, no parsing, no profile updates. */
async function rawInsertRate(ctx: BenchContext, devices: number): Promise<number> {
  const store = await openRawStore(ctx, "B1");
  const rng = new Prng(seedOf("b1-raw"));
  // One profile per device, as the server has after the set-up.
  const profiles = Array.from({ length: devices }, () => timeOrderedId());
  // Events belong to existing profiles (the store may map a profile id to its own key), as on the server.
  const now = Date.now();
  for (let start = 0; start < profiles.length; start += 1000) {
    await store.write(RAW_ACCOUNT, async (tx) => {
      for (const id of profiles.slice(start, start + 1000)) {
        await tx.insertProfile(RAW_ACCOUNT, newProfileState(id, now, rng.int(1000)));
      }
    });
  }
  const batches: NewEvent[][] = [];
  let counter = 0;
  for (let b = 0; b < 16; b++) {
    const batch: NewEvent[] = [];
    for (let i = 0; i < BATCH; i++) {
      const n = rng.int(devices);
      const record = eventRecord(rng, { deviceId: deviceId("b1", n) });
      batch.push({
        profileId: profiles[n]!,
        id: `e-bench-${(counter++).toString(36)}`,
        name: record.name,
        ts: record.ts * 1000,
        properties: record.properties,
        deviceId: record.deviceId ?? null,
        platform: null,
      });
    }
    batches.push(batch);
  }
  let next = 0;
  return baselineRate(ctx, "B1", async () => {
    const batch = batches[next++ % batches.length]!;
    await store.write(RAW_ACCOUNT, (tx) => tx.insertEvents(RAW_ACCOUNT, batch));
    return batch.length;
  });
}

/** The B1 measurement, shared with B9 (which reports the memory it records). */
export async function runIngestEvents(ctx: BenchContext): Promise<IngestLoadResult> {
  const cached = ctx.memo.get(MEMO_KEY) as IngestLoadResult | undefined;
  if (cached) return cached;
  const { devices, pool } = SIZES[ctx.mode];

  // The baseline runs first, alone: the server's load must not compete with it for the two cores.
  const baseline = await rawInsertRate(ctx, devices);

  const server = await startPortrait(ctx, "B1");
  const sampler = new RssSampler(server.pid).start();
  ctx.log(`B1 set-up: ${devices} devices, one event each`);
  await ingestAll(server.url, deviceSetupBatches("b1", devices, seedOf("b1-setup")));
  const idle = readMemory(server.pid);

  const rng = new Prng(seedOf("b1-load"));
  const bodies: Buffer[] = [];
  for (let b = 0; b < pool; b++) {
    bodies.push(
      batchBody(Array.from({ length: BATCH }, () => eventRecord(rng, { deviceId: deviceId("b1", rng.int(devices)) }))),
    );
  }
  ctx.log(`B1 load: ${pool} distinct batches of ${BATCH} (${Math.round(bodies[0]!.length / 1024)} KB each)`);
  const measured = await measureLoad(
    ctx,
    "B1",
    [ingestLoad(server.url, CONNECTIONS, (n) => bodies[n % bodies.length]!, countIngest)],
    server.pid,
  );
  const peak = sampler.stop();
  const { value: figure, runs } = medianOf(measured, ([run]) => run!.unitRate);
  const p99 = medianOf(measured, ([run]) => run!.p99).value;
  const result: IngestLoadResult = {
    outcome: {
      figure,
      baseline,
      errors: measured.errors,
      runs,
      note:
        `${devices} devices; batch p99 ${p99} ms; server RSS peak ${Math.round(peak.peakMb)} MB` +
        describeCpu(measured.cpu, "event") +
        (measured.firstError ? `; first error: ${measured.firstError}` : ""),
    },
    memory: { idle, peak },
  };
  ctx.memo.set(MEMO_KEY, result);
  return result;
}

export const scenario: Scenario = {
  name: "B1",
  title: "POST /v1/ingest, 1,000 events per batch for known devices, 16 connections",
  unit: "events/s",
  target: { kind: "min", value: 100_000, minRatio: 0.25 },
  // PERFORMANCE.md B8: B1 on PostgreSQL is held to 30k events/s (the ratio to its own raw baseline still applies).
  targetOn: { postgres: { kind: "min", value: 30_000, minRatio: 0.25 } },
  stores: ["sqlite", "postgres"],
  run: async (ctx) => (await runIngestEvents(ctx)).outcome,
};
