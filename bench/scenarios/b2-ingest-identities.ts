/**
 * B2: POST /v1/ingest, batches of 500 records with identity resolution: each a login with a new identity (a new
 * device, so the anonymous profile becomes identified: SEMANTICS §3 case 1) followed by a profile push naming that
 * person by Email. Target ≥ 30,000 records/s. Baseline: insertProfile + claimIdentity per record, 500 per commit.
 * Every batch names new people, so bodies are templated per request (deterministically from the batch number).
 */

import { newProfileState } from "../../src/engine/profile.js";
import type { PropertyEntry } from "../../src/engine/types.js";
import { timeOrderedId } from "../../src/pipeline/clock.js";
import { BENCH_NOW_SECONDS, personProperties } from "../lib/data.js";
import { countIngest, describeCpu, ingestLoad, measureLoad, medianOf } from "../lib/load.js";
import { Prng, seedOf } from "../lib/prng.js";
import { startPortrait } from "../lib/processes.js";
import { baselineRate, openRawStore, RAW_ACCOUNT } from "../lib/raw-store.js";
import type { BenchContext, Scenario } from "../lib/scenario.js";

const BATCH = 500;
const CONNECTIONS = 16;

/** Batch `k`: people k·250 … k·250+249, each a login then a push. */
function batch(k: number): string {
  const rng = new Prng(seedOf("b2", k));
  const records: unknown[] = [];
  for (let n = k * (BATCH / 2); n < (k + 1) * (BATCH / 2); n++) {
    const { Email, Name, City, Plan, Score, Newsletter } = personProperties(rng, "b2", n);
    const ts = BENCH_NOW_SECONDS - rng.int(86_400);
    records.push({
      type: "login",
      deviceId: `b2-dev-${n}`,
      ts,
      properties: { Identity: `b2-user-${n}`, Email, Name, City },
    });
    records.push({
      type: "profile",
      identity: { Email },
      ts: ts + 1,
      properties: { Plan, Score, Newsletter, Points: { $incr: 10 } },
    });
  }
  return JSON.stringify({ records });
}

/** Raw: a profile row with its properties as JSON, and its Email identity row, per record. */
async function rawProfileRate(ctx: BenchContext): Promise<number> {
  const store = await openRawStore(ctx, "B2");
  const rng = new Prng(seedOf("b2-raw"));
  let n = 0;
  return baselineRate(ctx, "B2", async () => {
    const now = Date.now();
    const states = Array.from({ length: BATCH }, () => {
      const state = newProfileState(timeOrderedId(), now, rng.int(1000));
      const props = personProperties(rng, "b2-raw", n++);
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
    return BATCH;
  });
}

export const scenario: Scenario = {
  name: "B2",
  title: "POST /v1/ingest, login + profile records with identity resolution, batches of 500",
  unit: "records/s",
  target: { kind: "min", value: 30_000 },
  stores: ["sqlite", "postgres"],
  async run(ctx) {
    const baseline = await rawProfileRate(ctx);
    const server = await startPortrait(ctx, "B2");
    let batches = 0;
    const measured = await measureLoad(
      ctx,
      "B2",
      [
        ingestLoad(
          server.url,
          CONNECTIONS,
          (n) => {
            batches = n + 1;
            return batch(n);
          },
          countIngest,
        ),
      ],
      server.pid,
    );
    const { value: figure, runs } = medianOf(measured, ([run]) => run!.unitRate);
    const p99 = medianOf(measured, ([run]) => run!.p99).value;
    return {
      figure,
      baseline,
      errors: measured.errors,
      runs,
      note:
        `${batches * (BATCH / 2)} new people generated; batch p99 ${p99} ms` +
        describeCpu(measured.cpu, "record") +
        (measured.firstError ? `; first error: ${measured.firstError}` : ""),
    };
  },
};
