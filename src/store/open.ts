/** Chooses the adapter: PostgreSQL when a database URL is set, else embedded SQLite in the data directory. */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { SqliteStore } from "./sqlite/sqlite-store.js";
import type { Store } from "./store.js";

export async function openStore(opts: { dataDir: string; databaseUrl: string | null }): Promise<Store> {
  if (opts.databaseUrl) {
    throw new Error("PORTRAIT_DATABASE_URL is set, but this build has no PostgreSQL adapter yet");
  }
  mkdirSync(opts.dataDir, { recursive: true });
  const store = SqliteStore.open(path.join(opts.dataDir, "portrait.db"));
  await store.migrate();
  return store;
}
