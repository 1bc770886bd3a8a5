/** Chooses the adapter: PostgreSQL when a database URL is set, else embedded SQLite in the data directory. */
import { mkdirSync } from "node:fs";
import path from "node:path";
import { SqliteStore } from "./sqlite/sqlite-store.js";
import type { Store } from "./store.js";

export async function openStore(opts: {
  dataDir: string;
  databaseUrl: string | null;
  sqliteCacheMb?: number;
}): Promise<Store> {
  if (opts.databaseUrl) {
    // Loaded only when used, so a SQLite deployment never loads the PostgreSQL driver.
    const { PostgresStore } = await import("./postgres/postgres-store.js");
    const store = await PostgresStore.connect(opts.databaseUrl);
    try {
      await store.migrate();
    } catch (error) {
      await store.close();
      throw error;
    }
    return store;
  }
  mkdirSync(opts.dataDir, { recursive: true });
  const store = SqliteStore.open(path.join(opts.dataDir, "portrait.db"), { cacheMb: opts.sqliteCacheMb });
  await store.migrate();
  return store;
}
