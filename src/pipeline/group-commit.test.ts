import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Account } from "../engine/types.js";
import { PostgresStore } from "../store/postgres/postgres-store.js";
import type { Store } from "../store/store.js";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { createTestDatabase, storesUnderTest, type TestDatabase } from "../test-support/postgres.js";
import { GroupCommit } from "./group-commit.js";
import { Portrait } from "./portrait.js";

const account = { id: "a" } as Account;

describe("GroupCommit", () => {
  it("groups the jobs submitted in one turn of the event loop into one run, answering each its own", async () => {
    const runs: number[][] = [];
    const gc = new GroupCommit<number, string>(async (_a, jobs) => {
      runs.push(jobs);
      return jobs.map((j) => `done ${j}`);
    });
    // As requests whose bytes arrive in one turn: each callback submits, none sees the others' transactions.
    const done = [gc.submit(account, 1, 1), gc.submit(account, 2, 1), gc.submit(account, 3, 1)];
    expect(runs).toEqual([]);
    expect(await Promise.all(done)).toEqual(["done 1", "done 2", "done 3"]);
    expect(runs).toEqual([[1, 2, 3]]);
  });

  it("runs a lone job in the next turn, then groups the jobs that arrived meanwhile into one run", async () => {
    const runs: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const gc = new GroupCommit<number, string>(async (_a, jobs) => {
      runs.push(jobs);
      if (runs.length === 1) await gate;
      return jobs.map((j) => `done ${j}`);
    });
    const first = gc.submit(account, 1, 1);
    await new Promise((r) => setImmediate(r));
    expect(runs).toEqual([[1]]);
    const rest = [gc.submit(account, 2, 1), gc.submit(account, 3, 1), gc.submit(account, 4, 1)];
    release();
    expect(await first).toBe("done 1");
    expect(await Promise.all(rest)).toEqual(["done 2", "done 3", "done 4"]);
    expect(runs).toEqual([[1], [2, 3, 4]]);
  });

  it("counts the records waiting for a group, not those of the group running", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const gc = new GroupCommit<number, number>(async (_a, jobs) => {
      await gate;
      return jobs;
    });
    expect(gc.waitingRecords()).toBe(0);
    const first = gc.submit(account, 1, 500);
    await new Promise((r) => setImmediate(r));
    expect(gc.waitingRecords()).toBe(0);
    const rest = [gc.submit(account, 2, 300), gc.submit({ id: "b" } as Account, 3, 7)];
    expect(gc.waitingRecords()).toBe(307);
    // Another account's group runs beside the first; this account's second waits for its first.
    await new Promise((r) => setImmediate(r));
    expect(gc.waitingRecords()).toBe(300);
    release();
    await Promise.all([first, ...rest]);
    expect(gc.waitingRecords()).toBe(0);
  });

  it("caps a group by records, and a failed run fails only the jobs it held", async () => {
    const runs: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const gc = new GroupCommit<number, number>(async (_a, jobs) => {
      runs.push(jobs);
      if (runs.length === 1) await gate;
      if (jobs.includes(2)) throw new Error("boom");
      return jobs;
    }, 10);
    const p1 = gc.submit(account, 1, 6);
    const p2 = gc.submit(account, 2, 6);
    const p3 = gc.submit(account, 3, 6);
    release();
    expect(await p1).toBe(1);
    await expect(p2).rejects.toThrow("boom");
    expect(await p3).toBe(3);
    expect(runs).toEqual([[1], [2], [3]]);
  });
});

describe("GroupCommit with concurrency", () => {
  it("runs up to `concurrency` groups of an account at once, each job whole in one group", async () => {
    const runs: number[][] = [];
    let running = 0;
    let most = 0;
    const gates: Array<() => void> = [];
    const gc = new GroupCommit<number, number>(
      async (_a, jobs) => {
        runs.push(jobs);
        running++;
        most = Math.max(most, running);
        await new Promise<void>((r) => gates.push(r));
        running--;
        return jobs.map((j) => j * 10);
      },
      10,
      2,
    );
    const done = [1, 2, 3, 4, 5].map((j) => gc.submit(account, j, 4));
    // Two groups start at once, each as many whole jobs as the record cap allows; the rest wait for a free runner.
    // Groups start on the next turn (setImmediate): a timer could fire before that on a busy machine.
    await new Promise((r) => setImmediate(r));
    expect(runs).toEqual([
      [1, 2],
      [3, 4],
    ]);
    while (runs.flat().length < 5 || gates.length > 0) {
      gates.shift()?.();
      await new Promise((r) => setTimeout(r, 0));
    }
    expect(await Promise.all(done)).toEqual([10, 20, 30, 40, 50]);
    expect(most).toBe(2);
    // Every job ran exactly once, in one group; a group never exceeds the record cap (4 + 4 ≤ 10).
    expect(runs.flat().sort()).toEqual([1, 2, 3, 4, 5]);
    for (const group of runs) expect(group.length * 4).toBeLessThanOrEqual(10);
  });

  it("refuses a concurrency that is not a whole number ≥ 1", () => {
    expect(() => new GroupCommit(async () => [], 10, 0)).toThrow(RangeError);
    expect(() => new GroupCommit(async () => [], 10, 1.5)).toThrow(RangeError);
  });
});

const stores = await storesUnderTest();

/** The store, with `write` observed: how many ran at once, and (optionally) a function run twice as after a deadlock. */
function observed(store: Store, opts: { deadlockFirstRun?: boolean } = {}): { store: Store; most(): number } {
  let running = 0;
  let most = 0;
  let deadlocked = false;
  const write: Store["write"] = async (accountId, fn) => {
    running++;
    most = Math.max(most, running);
    try {
      return await store.write(accountId, async (tx) => {
        const value = await fn(tx);
        if (opts.deadlockFirstRun && !deadlocked) {
          // As PostgreSQL would abort the transaction just before it commits: write() must run the function again.
          deadlocked = true;
          throw Object.assign(new Error("deadlock detected (simulated)"), { code: "40P01" });
        }
        return value;
      });
    } finally {
      running--;
    }
  };
  const proxy = new Proxy(store, {
    get(target, prop) {
      if (prop === "write") return write;
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { store: proxy, most: () => most };
}

describe.each(stores)("ingest through concurrent groups, %s store", (kind) => {
  let h: Harness;
  let database: TestDatabase | null = null;
  beforeEach(async () => {
    if (kind === "sqlite") {
      h = await makeHarness({}, kind);
      return;
    }
    // Three groups of one account at once (the default on PostgreSQL is 1: see CONCURRENT_WRITERS).
    database = await createTestDatabase();
    h = await makeHarness({}, await PostgresStore.connect(database!.url, { concurrentWriters: 3 }));
  });
  afterEach(async () => {
    await h.close();
    await database?.drop();
    database = null;
  });

  /** Request r: n events on its own device, in order, each followed by an increment of the shared profile. */
  const request = (r: number, n = 20) => ({
    records: Array.from({ length: n }, (_, i) => [
      { type: "event", deviceId: `cg-${r}`, name: `e${i}` },
      { type: "profile", deviceId: "cg-hot", properties: { Points: { $incr: 1 } } },
    ]).flat(),
  });

  async function checkRequests(portrait: Portrait, requests: number, n = 20): Promise<void> {
    const [hot] = await portrait.findProfiles(h.account, { kind: "device", deviceId: "cg-hot" });
    expect(hot?.properties.Points).toBe(requests * n);
    for (let r = 0; r < requests; r++) {
      const [own] = await portrait.findProfiles(h.account, { kind: "device", deviceId: `cg-${r}` });
      const { events } = await portrait.timeline(h.account, own!.id, { limit: n });
      // One ts (the clock stands still), so the timeline is in seq order: each request's events in its order.
      expect(events.map((e) => e.name).reverse()).toEqual(Array.from({ length: n }, (_, i) => `e${i}`));
    }
  }

  it("keeps each request's records in order, loses no increment, and runs as many groups at once as the store allows", async () => {
    const watched = observed(h.store);
    const portrait = new Portrait(watched.store, h.clock);
    await portrait.ingest(h.account, { records: [{ type: "profile", deviceId: "cg-hot", properties: {} }] });
    // 12 × 400 records, over one group's cap of 4,000: at least two groups wait at once.
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, r) => portrait.ingest(h.account, request(r, 200))),
    );
    for (const result of results) expect(result).toMatchObject({ status: "success", processed: 400 });
    await checkRequests(portrait, 12, 200);
    if (kind === "sqlite") expect(watched.most()).toBe(1);
    else expect(watched.most()).toBeGreaterThan(1);
    expect(watched.most()).toBeLessThanOrEqual(h.store.concurrentWriters ?? 1);
  });

  it.runIf(kind === "postgres")(
    "answers and writes each record once when a group is run again after a deadlock",
    async () => {
      const watched = observed(h.store, { deadlockFirstRun: true });
      const portrait = new Portrait(watched.store, h.clock);
      const results = await Promise.all(Array.from({ length: 6 }, (_, r) => portrait.ingest(h.account, request(r))));
      for (const result of results) {
        expect(result).toMatchObject({ status: "success", processed: 40, unprocessed: [] });
        expect(result.results.map((x) => x.index)).toEqual(Array.from({ length: 40 }, (_, i) => i));
      }
      await checkRequests(portrait, 6);
    },
  );
});
