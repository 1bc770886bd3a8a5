/**
 * A Portrait service with a clock the test controls, on a real SQLite file, or (`"postgres"`) on a fresh PostgreSQL
 * database dropped on close.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Account, AccountSettings } from "../engine/types.js";
import { Accounts } from "../pipeline/accounts.js";
import { Portrait } from "../pipeline/portrait.js";
import { PostgresStore } from "../store/postgres/postgres-store.js";
import { SqliteStore } from "../store/sqlite/sqlite-store.js";
import type { Store } from "../store/store.js";
import { createTestDatabase, type StoreKind, type TestDatabase } from "./postgres.js";

export const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);

export interface Harness {
  portrait: Portrait;
  store: Store;
  accounts: Accounts;
  account: Account;
  clock: { now(): number; set(ms: number): void; advance(ms: number): void };
  /** The database of a harness made on `"postgres"`, for a second store on it (another process); else null. */
  databaseUrl: string | null;
  /** Ingest records and return the batch result. */
  ingest(...records: unknown[]): ReturnType<Portrait["ingest"]>;
  settings(patch: Partial<AccountSettings>): Promise<void>;
  close(): Promise<void>;
}

/** A store given as a kind is made here (and removed on close); a Store object is used as it is. */
export async function makeHarness(
  settings: Partial<AccountSettings> = {},
  store: Store | StoreKind = "sqlite",
): Promise<Harness> {
  const dir = mkdtempSync(path.join(tmpdir(), "portrait-harness-"));
  let database: TestDatabase | null = null;
  let s: Store;
  if (store === "sqlite") {
    s = SqliteStore.open(path.join(dir, "portrait.db"));
  } else if (store === "postgres") {
    database = await createTestDatabase();
    // Suites list their stores with storesUnderTest(), which leaves PostgreSQL out when there is no server.
    if (database === null) throw new Error("makeHarness: no PostgreSQL server to test on");
    s = await PostgresStore.connect(database.url);
  } else {
    s = store;
  }
  await s.migrate();
  let now = T0;
  const clock = {
    now: () => now,
    set: (ms: number) => {
      now = ms;
    },
    advance: (ms: number) => {
      now += ms;
    },
  };
  const accounts = new Accounts(s, clock);
  const created = await accounts.create(`test-${Math.random().toString(36).slice(2)}`);
  const portrait = new Portrait(s, clock);
  const h: Harness = {
    portrait,
    store: s,
    accounts,
    account: created.account,
    clock,
    databaseUrl: database?.url ?? null,
    ingest: (...records) => portrait.ingest(h.account, { records }),
    async settings(patch) {
      h.account = await portrait.updateSettings(accounts, h.account, patch);
    },
    async close() {
      await s.close();
      await database?.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  if (Object.keys(settings).length > 0) await h.settings(settings);
  return h;
}
