/**
 * B5: Find People by Email over HTTP (GET /v1/profiles?email=…), 16 connections, over N identified profiles
 * seeded through the API (quick 20k, full 200k). Targets ≥ 10,000 req/s and p99 ≤ 5 ms (row B5-p99).
 * Baseline: reader.findProfileByIdentity + reader.getProfile in process on a raw store holding the same N people.
 */

import { newProfileState } from "../../src/engine/profile.js";
import type { PropertyEntry } from "../../src/engine/types.js";
import { timeOrderedId } from "../../src/pipeline/clock.js";
import type { Store } from "../../src/store/store.js";
import { ingestAll } from "../lib/api.js";
import { BENCH_NOW_SECONDS, emailOf, personProperties } from "../lib/data.js";
import { apiHeaders, describeCpu, measureLoad, medianOf } from "../lib/load.js";
import { Prng, seedOf } from "../lib/prng.js";
import { startPortrait } from "../lib/processes.js";
import { baselineRate, openRawStore, RAW_ACCOUNT } from "../lib/raw-store.js";
import type { BenchContext, Scenario } from "../lib/scenario.js";

const CONNECTIONS = 16;
const PEOPLE = { quick: 20_000, full: 200_000 };
const LOOKUPS = 10_000;

function* seedBatches(people: number): Generator<string> {
  const rng = new Prng(seedOf("b5-seed"));
  for (let start = 0; start < people; start += 1000) {
    const records: unknown[] = [];
    for (let n = start; n < Math.min(people, start + 1000); n++) {
      const properties = personProperties(rng, "b5", n);
      records.push({ type: "profile", identity: { Email: properties.Email }, ts: BENCH_NOW_SECONDS, properties });
    }
    yield JSON.stringify({ records });
  }
}

async function seedRaw(store: Store, people: number): Promise<void> {
  const rng = new Prng(seedOf("b5-raw"));
  const now = Date.now();
  for (let start = 0; start < people; start += 1000) {
    await store.write(RAW_ACCOUNT, async (tx) => {
      for (let n = start; n < Math.min(people, start + 1000); n++) {
        const state = newProfileState(timeOrderedId(), now, rng.int(1000));
        const props = personProperties(rng, "b5", n);
        for (const [key, v] of Object.entries(props)) {
          const entry: PropertyEntry = { v, t: typeof v as "string" | "number" | "boolean", ts: now };
          state.props[key] = entry;
        }
        state.identities.Email = [{ value: emailOf("b5", n), ts: now }];
        await tx.insertProfile(RAW_ACCOUNT, state);
        await tx.claimIdentity(RAW_ACCOUNT, "Email", emailOf("b5", n), state.id);
      }
    });
  }
}

async function rawLookupRate(ctx: BenchContext, people: number, emails: string[]): Promise<number> {
  const store = await openRawStore(ctx, "B5");
  await seedRaw(store, people);
  let next = 0;
  return baselineRate(ctx, "B5", async () => {
    for (let i = 0; i < 256; i++) {
      const email = emails[next++ % emails.length]!;
      const id = await store.reader.findProfileByIdentity(RAW_ACCOUNT, "Email", email);
      if (id === null || (await store.reader.getProfile(RAW_ACCOUNT, id)) === null) {
        throw new Error(`raw store: ${email} not found`);
      }
    }
    return 256;
  });
}

export const scenario: Scenario = {
  name: "B5",
  title: "Find People by Email over HTTP, 16 connections",
  unit: "req/s",
  target: { kind: "min", value: 10_000 },
  stores: ["sqlite", "postgres"],
  async run(ctx) {
    const people = PEOPLE[ctx.mode];
    const rng = new Prng(seedOf("b5-lookups"));
    const emails = Array.from({ length: LOOKUPS }, () => emailOf("b5", rng.int(people)));
    const baseline = await rawLookupRate(ctx, people, emails);

    const server = await startPortrait(ctx, "B5");
    const started = performance.now();
    await ingestAll(server.url, seedBatches(people));
    ctx.log(`B5 set-up: ${people} people through the API in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    const paths = emails.map((email) => `/v1/profiles?email=${encodeURIComponent(email)}`);
    let next = 0;
    const measured = await measureLoad(
      ctx,
      "B5",
      [
        {
          url: server.url,
          connections: CONNECTIONS,
          requests: [
            {
              method: "GET",
              path: paths[0]!,
              headers: apiHeaders(false),
              setupRequest(request) {
                request.path = paths[next++ % paths.length]!;
                return request;
              },
            },
          ],
          // A seeded person not found is a failure, not a fast answer.
          count: (body) => (body.includes('"profiles":[]') ? { done: 0, failed: 1 } : { done: 1, failed: 0 }),
        },
      ],
      server.pid,
    );
    const { value: figure, runs } = medianOf(measured, ([run]) => run!.requestRate);
    const p99 = medianOf(measured, ([run]) => run!.p99);
    const firstError = measured.firstError ? `; first error: ${measured.firstError}` : "";
    return {
      figure,
      baseline,
      errors: measured.errors,
      runs,
      note: `${people} people; raw = in-process findProfileByIdentity + getProfile${describeCpu(measured.cpu, "look-up")}${firstError}`,
      extra: [
        {
          scenario: "B5-p99",
          unit: "ms",
          target: { kind: "max", value: 5 },
          figure: p99.value,
          baseline: null,
          errors: measured.errors,
          runs: p99.runs,
          note: `p99 latency of the same runs${firstError}`,
        },
      ],
    };
  },
};
