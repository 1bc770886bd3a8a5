/** A Portrait service on a real SQLite file, with a clock the test controls. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Account, AccountSettings } from "../engine/types.js";
import { Accounts } from "../pipeline/accounts.js";
import { Portrait } from "../pipeline/portrait.js";
import { SqliteStore } from "../store/sqlite/sqlite-store.js";
import type { Store } from "../store/store.js";

export const T0 = Date.UTC(2026, 10, 1, 12, 0, 0);

export interface Harness {
  portrait: Portrait;
  store: Store;
  accounts: Accounts;
  account: Account;
  clock: { now(): number; set(ms: number): void; advance(ms: number): void };
  /** Ingest records and return the batch result. */
  ingest(...records: unknown[]): ReturnType<Portrait["ingest"]>;
  settings(patch: Partial<AccountSettings>): Promise<void>;
  close(): Promise<void>;
}

export async function makeHarness(settings: Partial<AccountSettings> = {}, store?: Store): Promise<Harness> {
  const dir = mkdtempSync(path.join(tmpdir(), "portrait-harness-"));
  const s = store ?? SqliteStore.open(path.join(dir, "portrait.db"));
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
    ingest: (...records) => portrait.ingest(h.account, { records }),
    async settings(patch) {
      h.account = await portrait.updateSettings(accounts, h.account, patch);
    },
    async close() {
      await s.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  if (Object.keys(settings).length > 0) await h.settings(settings);
  return h;
}
