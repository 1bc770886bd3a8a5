/**
 * A SQLite store of `profiles` people with `eventsEach` events each, made in process through the pipeline (no HTTP),
 * in a data directory of its own, closed when returned: a store for tests of copy-store that need volume (several
 * chunks of each big table) more than variety (test-support/rich-store.ts has the variety).
 */
import path from "node:path";
import { Accounts } from "../pipeline/accounts.js";
import { Portrait } from "../pipeline/portrait.js";
import { SqliteStore } from "../store/sqlite/sqlite-store.js";

export async function makeSqliteStore(dataDir: string, profiles: number, eventsEach: number): Promise<void> {
  const store = SqliteStore.open(path.join(dataDir, "portrait.db"));
  try {
    const { account } = await new Accounts(store).create("default", {}, "default");
    const portrait = new Portrait(store);
    const now = Math.floor(Date.now() / 1000);
    let records: unknown[] = [];
    const flush = async () => {
      const result = await portrait.ingest(account, { records });
      if (result.unprocessed.length > 0) throw new Error(JSON.stringify(result.unprocessed[0]));
      records = [];
    };
    for (let n = 0; n < profiles; n++) {
      const identity = { Identity: `u-${n}` };
      records.push({ type: "profile", identity, ts: now - 3600, properties: { Name: `P${n}`, Score: n % 97 } });
      for (let e = 0; e < eventsEach; e++) {
        records.push({ type: "event", identity, name: "Page Viewed", ts: now - e, properties: { Page: `/p/${e}` } });
      }
      if (records.length >= 900) await flush();
    }
    if (records.length > 0) await flush();
  } finally {
    await store.close();
  }
}
