/**
 * A SQLite store for the copy-store bench, made in this process through the pipeline (Portrait.ingest, no HTTP):
 * each person a profile push (Identity, Email and seven properties of every type), then their events (names and
 * properties of B1's shape, one in ten a Charged with an id), seeded so that every run makes the same store.
 */
import path from "node:path";
import { Accounts } from "../../src/pipeline/accounts.js";
import { Portrait } from "../../src/pipeline/portrait.js";
import { SqliteStore } from "../../src/store/sqlite/sqlite-store.js";
import { Prng } from "./prng.js";

const NAMES = ["Product Viewed", "Added To Cart", "Search", "Page Viewed", "Video Played", "Checkout Started"];
const CITIES = ["Paris", "Lyon", "Berlin", "Madrid", "Lisbon", "Rome", "Oslo", "Dublin"];
const PLANS = ["free", "basic", "pro", "team"];

export async function makeStore(dataDir: string, profiles: number, eventsEach: number): Promise<void> {
  const store = SqliteStore.open(path.join(dataDir, "portrait.db"));
  try {
    const { account } = await new Accounts(store).create("default", {}, "default");
    const portrait = new Portrait(store);
    const rng = new Prng(42);
    const now = Math.floor(Date.now() / 1000);
    let records: unknown[] = [];
    const flush = async () => {
      const result = await portrait.ingest(account, { records });
      if (result.unprocessed.length > 0) throw new Error(JSON.stringify(result.unprocessed[0]));
      records = [];
    };
    const started = performance.now();
    for (let n = 0; n < profiles; n++) {
      const identity = { Identity: `u-${n}` };
      records.push({
        type: "profile",
        identity,
        ts: now - 30 * 86_400,
        properties: {
          Email: `person-${n}@example.com`,
          Name: `Person ${n}`,
          Plan: PLANS[rng.int(PLANS.length)],
          City: CITIES[rng.int(CITIES.length)],
          Score: rng.int(1000) / 10,
          Active: rng.int(2) === 1,
          Signup: `$D_${now - rng.int(400 * 86_400)}`,
          Tags: { $add: ["a", "b", "c"].slice(0, 1 + rng.int(3)) },
          Points: { $incr: rng.int(50) },
        },
      });
      for (let e = 0; e < eventsEach; e++) {
        const ts = now - rng.int(30 * 86_400);
        records.push(
          e % 10 === 9
            ? {
                type: "event",
                identity,
                name: "Charged",
                id: `chg-${n}-${e}`,
                ts,
                properties: { Amount: rng.int(20_000) / 100, "Charged ID": `order-${n}-${e}` },
              }
            : {
                type: "event",
                identity,
                name: NAMES[rng.int(NAMES.length)],
                ts,
                properties: { Product: `sku-${rng.int(5000)}`, Price: rng.int(10_000) / 100, Source: "web" },
              },
        );
      }
      if (records.length >= 1000 - (1 + eventsEach)) await flush();
      if (n > 0 && n % 10_000 === 0) {
        process.stderr.write(`store: ${n} people (${Math.round((performance.now() - started) / 1000)} s)\n`);
      }
    }
    if (records.length > 0) await flush();
  } finally {
    await store.close();
  }
}
