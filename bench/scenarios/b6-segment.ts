/**
 * B6: the canonical segment — Age 25–30 ∧ City = X ∧ did Charged ≥ 2 in the last 30 days ∧ didNot App Uninstalled —
 * counted on 1M profiles / 10M events (`--full`; quick: 100k / 1M). Target ≤ 200 ms on SQLite, ≤ 500 ms on
 * PostgreSQL (B8). Figure: the warm median of 5 counts through the segment service path (parse + store); baseline:
 * the naive query on the same data (a scan of the account's profiles with JSON extraction and two correlated event
 * sub-queries), warm median of 3. Both counts must agree, or the scenario fails.
 *
 * Data (PERFORMANCE.md): seeded, with a fixed injected `now`; DOB uniform over ages 18–70; a custom `City` with 1,000
 * Zipf-distributed values (X = the 10th most common); events spread over the 180 days before `now`, on profiles
 * drawn uniformly, 3% `Charged` (with an Amount), 1% `App Uninstalled`, the rest among eight other names, arriving in
 * time order as live ingestion does. It is loaded straight through the store's write paths (insertProfile /
 * insertEvents in large transactions), not HTTP.
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { newProfileState } from "../../src/engine/profile.js";
import { dobOnOrBeforeForAge } from "../../src/engine/segment/bounds.js";
import type { EvaluateContext } from "../../src/engine/segment/evaluate.js";
import { parseCondition } from "../../src/engine/segment/parse.js";
import { DEFAULT_SETTINGS, type NewEvent, type ProfileState } from "../../src/engine/types.js";
import { PostgresStore } from "../../src/store/postgres/postgres-store.js";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import type { Store } from "../../src/store/store.js";
import { Prng, seedOf } from "../lib/prng.js";
import { tempDir } from "../lib/processes.js";
import { type BenchContext, median, type Outcome, type Scenario } from "../lib/scenario.js";

const SIZES = { quick: { profiles: 100_000, events: 1_000_000 }, full: { profiles: 1_000_000, events: 10_000_000 } };
/** 2025-01-15 12:00 UTC: the injected now of data and queries. */
const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);
const DAY = 86_400_000;
const TIMEZONE = "UTC";
const ACCOUNT = "b6";
const CITIES = 1000;
const X = cityName(10);
const OTHER_EVENTS = [
  "App Launched",
  "Product Viewed",
  "Added To Cart",
  "Search",
  "Page Viewed",
  "Video Played",
  "Checkout Started",
  "Wishlist Added",
] as const;

export const B6_WHERE = {
  all: [
    { property: "Age", op: "between", value: [25, 30] },
    { property: "City", op: "eq", value: X },
    { did: "Charged", count: { op: "gte", value: 2 }, withinLast: { days: 30 } },
    { didNot: "App Uninstalled" },
  ],
};

function cityName(rank: number): string {
  return `City ${String(rank).padStart(4, "0")}`;
}

/** Zipf (s = 1) over ranks 1..n: the cumulative weights, for sampling by binary search. */
function zipfCdf(n: number): Float64Array {
  const cdf = new Float64Array(n);
  let total = 0;
  for (let r = 1; r <= n; r++) {
    total += 1 / r;
    cdf[r - 1] = total;
  }
  for (let i = 0; i < n; i++) cdf[i]! /= total;
  return cdf;
}

function sampleRank(cdf: Float64Array, u: number): number {
  let lo = 0;
  let hi = cdf.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid]! < u) lo = mid + 1;
    else hi = mid;
  }
  return lo + 1;
}

function day(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** A profile: DOB uniform over ages 18–70 (a birth date between 71 and 18 years before now), a Zipf City. */
function profile(rng: Prng, cdf: Float64Array, n: number): ProfileState {
  const id = rng.hex(32);
  const state = newProfileState(id, NOW - 365 * DAY, n % 1000);
  const oldest = Date.UTC(2025 - 71, 0, 15) + DAY;
  const youngest = Date.UTC(2025 - 18, 0, 15);
  const dob = day(oldest + Math.floor(rng.next() * (youngest - oldest)));
  state.props = {
    City: { v: cityName(sampleRank(cdf, rng.next())), t: "string", ts: NOW - 365 * DAY },
    DOB: { v: dob, t: "date", ts: NOW - 365 * DAY },
  };
  return state;
}

/** Event n of `total`: times spread evenly over the 180 days before now, in arrival order (as live ingestion is). */
function event(rng: Prng, profileId: string, n: number, total: number): NewEvent {
  const u = rng.next();
  const name = u < 0.03 ? "Charged" : u < 0.04 ? "App Uninstalled" : OTHER_EVENTS[rng.int(OTHER_EVENTS.length)]!;
  const slot = (180 * DAY) / total;
  return {
    profileId,
    id: `b6-${n.toString(36)}`,
    name,
    ts: NOW - 180 * DAY + Math.floor(n * slot + rng.next() * slot),
    properties: name === "Charged" ? { Amount: rng.price(1, 300) } : {},
    deviceId: null,
    platform: null,
  };
}

export async function load(
  ctx: Pick<BenchContext, "store" | "log">,
  store: Store,
  sizes: { profiles: number; events: number },
): Promise<void> {
  const t0 = performance.now();
  await store.createAccount({
    id: ACCOUNT,
    name: "B6",
    settings: { ...DEFAULT_SETTINGS, timezone: TIMEZONE },
    createdAt: NOW,
  });
  const rng = new Prng(seedOf("b6"));
  const cdf = zipfCdf(CITIES);
  const ids: string[] = new Array(sizes.profiles);
  const profileBatch = ctx.store === "sqlite" ? 10_000 : 2_000;
  const parallel = ctx.store === "sqlite" ? 1 : 4;
  // Generated a batch at a time (a million states at once would be a gigabyte of heap).
  const nextBatch = (from: number): ProfileState[] => {
    const batch: ProfileState[] = [];
    for (let n = from; n < Math.min(sizes.profiles, from + profileBatch); n++) {
      const state = profile(rng, cdf, n);
      ids[n] = state.id;
      batch.push(state);
    }
    return batch;
  };
  for (let start = 0; start < sizes.profiles; start += profileBatch * parallel) {
    const work: Promise<void>[] = [];
    for (let p = 0; p < parallel && start + p * profileBatch < sizes.profiles; p++) {
      const batch = nextBatch(start + p * profileBatch);
      work.push(
        store.write(ACCOUNT, async (tx) => {
          for (const state of batch) await tx.insertProfile(ACCOUNT, state);
        }),
      );
    }
    await Promise.all(work);
  }
  const t1 = performance.now();
  ctx.log(`B6 load: ${sizes.profiles.toLocaleString("en-US")} profiles in ${((t1 - t0) / 1000).toFixed(1)} s`);
  const eventBatch = 20_000;
  for (let start = 0; start < sizes.events; start += eventBatch * parallel) {
    const work: Promise<unknown>[] = [];
    for (let p = 0; p < parallel && start + p * eventBatch < sizes.events; p++) {
      const from = start + p * eventBatch;
      const batch: NewEvent[] = [];
      for (let n = from; n < Math.min(sizes.events, from + eventBatch); n++) {
        batch.push(event(rng, ids[rng.int(ids.length)]!, n, sizes.events));
      }
      work.push(store.write(ACCOUNT, (tx) => tx.insertEvents(ACCOUNT, batch)));
    }
    await Promise.all(work);
  }
  ctx.log(
    `B6 load: ${sizes.events.toLocaleString("en-US")} events in ${((performance.now() - t1) / 1000).toFixed(1)} s`,
  );
}

/** The naive query: every profile of the account, JSON extraction, correlated event sub-queries. */
function naiveSql(store: "sqlite" | "postgres"): string {
  if (store === "sqlite") {
    return `SELECT count(*) FROM profiles p
      WHERE p.account_id = @account AND p.merged_into IS NULL AND p.orphan_of IS NULL
        AND json_extract(p.state, '$.props.City.v') = @city
        AND json_extract(p.state, '$.props.DOB.v') > @dobAfter AND json_extract(p.state, '$.props.DOB.v') <= @dobUntil
        AND (SELECT count(*) FROM events e WHERE e.profile_pk = p.pk AND e.name = 'Charged' AND e.ts >= @since) >= 2
        AND NOT EXISTS (SELECT 1 FROM events e WHERE e.profile_pk = p.pk AND e.name = 'App Uninstalled')`;
  }
  return `SELECT count(*) AS n FROM profiles p
    WHERE p.account_id = $1 AND p.merged_into IS NULL AND p.orphan_of IS NULL
      AND p.state #>> '{props,City,v}' = $2
      AND p.state #>> '{props,DOB,v}' > $3 AND p.state #>> '{props,DOB,v}' <= $4
      AND (SELECT count(*) FROM events e WHERE e.account_id = p.account_id AND e.profile_id = p.id
           AND e.name = 'Charged' AND e.ts >= $5) >= 2
      AND NOT EXISTS (SELECT 1 FROM events e WHERE e.account_id = p.account_id AND e.profile_id = p.id
           AND e.name = 'App Uninstalled')`;
}

function naiveParams() {
  return {
    account: ACCOUNT,
    city: X,
    // Age 25–30 ⟺ DOB in (the 31st birthday's date, the 25th's] (engine/segment/bounds.ts).
    dobAfter: dobOnOrBeforeForAge(31, NOW, TIMEZONE)!,
    dobUntil: dobOnOrBeforeForAge(25, NOW, TIMEZONE)!,
    since: NOW - 30 * DAY,
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}

/** One untimed warm-up, then `runs` timed runs: the median and every figure. */
async function warmMedian(
  runs: number,
  fn: () => Promise<number>,
): Promise<{ ms: number; runs: number[]; value: number }> {
  const { value } = await timed(fn);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const r = await timed(fn);
    if (r.value !== value) throw new Error(`B6: the count changed between runs (${value} then ${r.value})`);
    times.push(r.ms);
  }
  return { ms: median(times), runs: times, value };
}

/** A fresh PostgreSQL database next to $PORTRAIT_DATABASE_URL's, dropped with the scenario. */
async function postgresStore(ctx: BenchContext): Promise<{ store: PostgresStore; url: string }> {
  const base = process.env.PORTRAIT_DATABASE_URL;
  if (!base) throw new Error("--store postgres needs PORTRAIT_DATABASE_URL");
  const name = `portrait_bench_b6_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client(base);
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  ctx.scope.defer(async () => {
    const c = new pg.Client(base);
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.end();
  });
  const url = new URL(base);
  url.pathname = `/${name}`;
  const store = await PostgresStore.connect(url.toString(), { max: 8 });
  ctx.scope.defer(() => store.close());
  await store.migrate();
  return { store, url: url.toString() };
}

export const scenario: Scenario = {
  name: "B6",
  title: "canonical segment count (Age 25–30 ∧ City ∧ Charged ≥ 2 in 30 d ∧ no App Uninstalled)",
  unit: "ms",
  target: { kind: "max", value: 200 },
  stores: ["sqlite", "postgres"],
  async run(ctx): Promise<Outcome> {
    const sizes = SIZES[ctx.mode];
    const target = ctx.store === "sqlite" ? 200 : 500;
    // PERFORMANCE.md B6 / B8: the target depends on the store; the runner reads it after the run.
    scenario.target = { kind: "max", value: target };
    let store: Store;
    let naive: () => Promise<number>;
    if (ctx.store === "sqlite") {
      const file = path.join(tempDir(ctx, "portrait-bench-b6"), "b6.db");
      const sqlite = SqliteStore.open(file);
      ctx.scope.defer(() => sqlite.close());
      store = sqlite;
      await load(ctx, store, sizes);
      const db = new Database(file, { readonly: true });
      ctx.scope.defer(() => db.close());
      const statement = db.prepare(naiveSql("sqlite")).pluck();
      naive = async () => statement.get(naiveParams()) as number;
    } else {
      const { store: pgStore, url } = await postgresStore(ctx);
      store = pgStore;
      await load(ctx, store, sizes);
      const client = new pg.Client(url);
      await client.connect();
      ctx.scope.defer(() => client.end());
      await client.query("VACUUM ANALYZE");
      const p = naiveParams();
      naive = async () =>
        Number(
          (await client.query(naiveSql("postgres"), [p.account, p.city, p.dobAfter, p.dobUntil, p.since])).rows[0].n,
        );
    }
    const ctxOf = (): EvaluateContext => ({ now: NOW, timezone: TIMEZONE, segment: () => undefined });
    const count = async () => {
      const condition = parseCondition(B6_WHERE, { timezone: TIMEZONE, now: NOW });
      return store.segments.countSegment(ACCOUNT, condition, ctxOf());
    };
    const fast = await warmMedian(5, count);
    ctx.log(`B6 count ${fast.value}: ${fast.runs.map((r) => r.toFixed(1)).join(", ")} ms`);
    const slow = await warmMedian(3, naive);
    ctx.log(`B6 naive count ${slow.value}: ${slow.runs.map((r) => r.toFixed(0)).join(", ")} ms`);
    const agree = slow.value === fast.value;
    return {
      figure: fast.ms,
      baseline: slow.ms,
      errors: agree ? 0 : 1,
      runs: fast.runs,
      note:
        `${sizes.profiles.toLocaleString("en-US")} profiles / ${sizes.events.toLocaleString("en-US")} events, ` +
        `${fast.value} members; target on ${ctx.store} ≤ ${target} ms` +
        (fast.ms <= target ? "" : " (MISSED)") +
        (agree ? "" : `; the naive query counted ${slow.value}`),
    };
  },
};
