/**
 * Chooses the adapter: PostgreSQL when a database URL is set, else embedded SQLite in the data directory.
 *
 * Failures to open are one-line errors that name the place and what chose it (`storeFrom`: a flag or variable), never a
 * driver's raw message alone (EEXIST from mkdir, "unable to open database file", a DNS error) and never a password.
 */
import { existsSync, mkdirSync, statSync } from "node:fs";
import path from "node:path";
import { PG_CONNECT_TIMEOUT_MS } from "./postgres/connect-timeout.js";
import { SqliteStore } from "./sqlite/sqlite-store.js";
import type { Store } from "./store.js";

export interface OpenStoreOptions {
  dataDir: string;
  databaseUrl: string | null;
  sqliteCacheMb?: number;
  /**
   * Refuse a store that was never created (no portrait.db; a database without Portrait's schema) instead of creating
   * it: only `portrait serve` creates a store, because its first start is what creates the account `default`.
   */
  mustExist?: boolean;
  /** What chose the store, named in messages (default: the variables, PORTRAIT_DATABASE_URL / PORTRAIT_DATA_DIR). */
  storeFrom?: string;
}

export async function openStore(opts: OpenStoreOptions): Promise<Store> {
  if (opts.databaseUrl)
    return openPostgres(opts.databaseUrl, opts.storeFrom ?? "PORTRAIT_DATABASE_URL", opts.mustExist);
  const from = opts.storeFrom ?? "PORTRAIT_DATA_DIR";
  return openSqlite(opts, from === "default" ? "the default data directory; set PORTRAIT_DATA_DIR" : from);
}

async function openSqlite(opts: OpenStoreOptions, from: string): Promise<Store> {
  const dir = opts.dataDir;
  const file = path.join(dir, "portrait.db");
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory (${from})`);
  if (opts.mustExist && !existsSync(file)) {
    const named = from === "--data-dir" ? "" : `${from}; `;
    throw new Error(
      `no Portrait store at ${file} (${named}start \`portrait serve\` once to create it, or pass --data-dir)`,
    );
  }
  // A `-wal` without its database: a restore half done (the old store removed, the copy not yet in place). Opening
  // would create an empty portrait.db and replay the old store's WAL into it, and a first start on that would make a
  // new account `default` beside what the WAL held. Exact: SQLite never leaves a WAL without its database file.
  const wal = `${file}-wal`;
  if (!existsSync(file) && existsSync(wal)) {
    throw new Error(
      `${file} is missing but ${wal} is there (a restore half done?): to restore a backup, delete ${wal} and ` +
        `${file}-shm, then copy the backup in as ${file}; to start a new store, delete both files (${from})`,
    );
  }
  try {
    makeDirectory(dir);
  } catch (error) {
    throw new Error(`cannot create the data directory ${dir} (${reasonOf(error)}; ${from})`);
  }
  let store: SqliteStore;
  try {
    store = SqliteStore.open(file, { cacheMb: opts.sqliteCacheMb });
  } catch (error) {
    throw (
      busyError(error, file, from) ?? new Error(`cannot open the SQLite store ${file} (${reasonOf(error)}; ${from})`)
    );
  }
  try {
    await store.migrate();
  } catch (error) {
    await store.close().catch(() => undefined);
    throw busyError(error, file, from) ?? error;
  }
  return store;
}

async function openPostgres(url: string, from: string, mustExist: boolean | undefined): Promise<Store> {
  const where = serverOf(url);
  if (mustExist) {
    // A client of its own, before the store's pool migrates (which would create the schema). Loaded only when used,
    // so a SQLite deployment never loads the PostgreSQL driver.
    const { default: pg } = await import("pg");
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS });
    client.on("error", () => undefined);
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw connectionError(error, where, from);
    }
    try {
      const { rows } = await client.query<{ present: boolean }>(
        "SELECT to_regclass('schema_migrations') IS NOT NULL AS present",
      );
      if (!rows[0]?.present) {
        throw new Error(
          `no Portrait store in the PostgreSQL database ${where}: it has no Portrait schema ` +
            `(${from}; start \`portrait serve\` once to create it, or pass --database-url)`,
        );
      }
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  // Loaded only when used, as the driver is.
  const { PostgresStore } = await import("./postgres/postgres-store.js");
  let store: Awaited<ReturnType<typeof PostgresStore.connect>>;
  try {
    store = await PostgresStore.connect(url);
  } catch (error) {
    throw connectionError(error, where, from);
  }
  try {
    await store.migrate();
  } catch (error) {
    await store.close();
    if ((error as { code?: string }).code === "25006") {
      // read_only_sql_transaction: a hot standby, or default_transaction_read_only. Every write would fail later.
      throw new Error(
        `PostgreSQL at ${where} is read-only (a standby, or default_transaction_read_only is on): ` +
          `Portrait needs a database it can write (${from})`,
      );
    }
    throw error;
  }
  return store;
}

/**
 * mkdir -p, one level at a time: Node's `mkdirSync(dir, { recursive: true })` never returns when the kernel answers
 * ENOENT for a parent that exists (a path under /proc), where this fails at once with that ENOENT.
 */
function makeDirectory(dir: string): void {
  const missing: string[] = [];
  for (let at = dir; !existsSync(at); at = path.dirname(at)) {
    missing.unshift(at);
    if (path.dirname(at) === at) break;
  }
  for (const level of missing) mkdirSync(level, { mode: 0o700 });
}

/**
 * What other users of the machine may read of a SQLite data directory made before its server created files for its
 * own user only (or opened up since): a warning for the log, or null. Never an error: the operator may share it on
 * purpose (a backup group).
 */
export function sharedDataWarning(dataDir: string): string | null {
  const modeOf = (place: string) => (existsSync(place) ? statSync(place).mode & 0o777 : 0);
  const shown = (place: string, mode: number) => `${place} (${mode.toString(8).padStart(4, "0")})`;
  const open: string[] = [];
  const dirMode = modeOf(dataDir);
  if ((dirMode & 0o077) !== 0) open.push(shown(dataDir, dirMode));
  // Files in a directory others may not enter are out of their reach whatever their own modes.
  const file = path.join(dataDir, "portrait.db");
  if ((dirMode & 0o011) !== 0 && (modeOf(file) & 0o077) !== 0) open.push(shown(file, modeOf(file)));
  if (open.length === 0) return null;
  return `other users of this machine may read the store: ${open.join(", ")}; run chmod go-rwx on them`;
}

/** Errors that mean nothing answers at that address, as opposed to a server that answers and refuses. */
export const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
]);

export function connectionError(error: unknown, where: string, from: string): Error {
  const code = (error as { code?: string }).code;
  const reason = reasonOf(error);
  // node-postgres' words when connectionTimeoutMillis ran out (a client's, a pool's).
  if (
    /^(timeout expired|Connection terminated due to connection timeout|timeout exceeded when trying to connect)/.test(
      reason,
    )
  ) {
    return new Error(
      `cannot reach PostgreSQL at ${where} (no answer within ${PG_CONNECT_TIMEOUT_MS / 1000} s; ${from})`,
    );
  }
  if (code !== undefined && UNREACHABLE.has(code)) {
    return new Error(`cannot reach PostgreSQL at ${where} (${reason}; ${from})`);
  }
  // The server answered: a wrong password, an unknown role or database. Its message never holds the password.
  return new Error(`PostgreSQL at ${where} refused the connection (${reason}; ${from})`);
}

/** `host:port/database` of a PostgreSQL URL: what a message may show of it (never the user's password). */
export function serverOf(url: string): string {
  try {
    const u = new URL(url);
    const database = decodeURIComponent(u.pathname.replace(/^\//, ""));
    return `${u.hostname || "localhost"}:${u.port || "5432"}${database ? `/${database}` : ""}`;
  } catch {
    return "the given URL";
  }
}

/** An error's message on one line, or its code when the message is empty (an AggregateError of refused addresses). */
/**
 * SQLITE_BUSY past the busy timeout: another process holds the store's write lock. Said as such (the store is fine,
 * and so is the flag that named it: retry), or null for another error.
 */
function busyError(error: unknown, file: string, from: string): Error | null {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== "SQLITE_BUSY" && code !== "SQLITE_LOCKED") return null;
  return new Error(
    `the SQLite store ${file} is busy: another process has held its write lock for 5 s (an sqlite3 shell with an ` +
      `open transaction, a backup tool that locks); nothing was done, run the command again once it lets go (${code}; ${from})`,
  );
}

function reasonOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: string }).code;
  const message = error.message.split("\n")[0]?.trim() ?? "";
  if (message === "") return code ?? error.name;
  return code && !message.includes(code) ? `${code}: ${message}` : message;
}
