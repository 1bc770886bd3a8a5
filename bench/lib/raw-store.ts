/**
 * The baselines of PERFORMANCE.md: the raw store doing the same writes or reads in the bench process, with no
 * HTTP, no validation and no identity work. A ratio figure / baseline is what the project tracks.
 */
import path from "node:path";
import { DEFAULT_SETTINGS } from "../../src/engine/types.js";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import type { Store } from "../../src/store/store.js";
import { freshDatabase } from "./postgres.js";
import { tempDir } from "./processes.js";
import { type BenchContext, median } from "./scenario.js";

export const RAW_ACCOUNT = "bench";

/** A fresh store on a temp file with one account; closed and removed with the scenario. */
export async function openRawStore(ctx: BenchContext, name: string): Promise<Store> {
  let store: Store;
  if (ctx.store === "postgres") {
    const pgStore = await PostgresStore.connect(await freshDatabase(ctx, `raw${name}`));
    await pgStore.migrate();
    store = pgStore;
  } else {
    const dir = tempDir(ctx, `portrait-raw-${name.toLowerCase()}`);
    store = SqliteStore.open(path.join(dir, "raw.db"));
  }
  ctx.scope.defer(() => store.close());
  await store.createAccount({ id: RAW_ACCOUNT, name: "bench", settings: DEFAULT_SETTINGS, createdAt: Date.now() });
  return store;
}

/** Calls `step` (which returns the units it did) until `seconds` have passed; units per second. */
export async function rateOver(seconds: number, step: () => Promise<number>): Promise<number> {
  const start = performance.now();
  const end = start + seconds * 1000;
  let units = 0;
  let now = start;
  do {
    units += await step();
    now = performance.now();
  } while (now < end);
  return units / ((now - start) / 1000);
}

/** The baseline rate: the median of `timing.runs` measurements of `timing.baselineSeconds` each. */
export async function baselineRate(ctx: BenchContext, label: string, step: () => Promise<number>): Promise<number> {
  const rates: number[] = [];
  for (let i = 0; i < ctx.timing.runs; i++) rates.push(await rateOver(ctx.timing.baselineSeconds, step));
  const rate = median(rates);
  ctx.log(`${label} raw baseline: ${rates.map((r) => Math.round(r)).join(", ")} /s → ${Math.round(rate)} /s`);
  return rate;
}
