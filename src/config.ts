/** Server configuration from the environment (README: Configuration). */
import path from "node:path";

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | null;
  bootstrapSecretKey: string | null;
  bootstrapPublicKey: string | null;
  logLevel: string;
  /** Largest import upload (PORTRAIT_IMPORT_MAX_BYTES, default 10 GB). */
  importMaxBytes: number;
  /** SFTP drop point port (PORTRAIT_SFTP_PORT); null = no SFTP server. */
  sftpPort: number | null;
  /** The SQLite writer's page cache in MB (PORTRAIT_SQLITE_CACHE_MB); unset: the store's default (SQLITE_CACHE_MB). */
  sqliteCacheMb?: number;
  /** A claimed import whose worker is silent this long is taken over (PORTRAIT_IMPORT_CLAIM_TIMEOUT_MS, 15 s). */
  importClaimTimeoutMs: number;
  /** A JSON request body must have arrived this long after its headers (PORTRAIT_JSON_BODY_TIMEOUT_MS, 60 s). */
  jsonBodyTimeoutMs: number;
  /**
   * A connection's request headers must have arrived this long after it opened, or after its previous request
   * ended (PORTRAIT_HTTP_HEADERS_TIMEOUT_MS, 30 s): a connection that sends nothing, or trickles its headers, is cut.
   */
  httpHeadersTimeoutMs: number;
  /** An SFTP connection must have logged in this long after it opened (PORTRAIT_SFTP_LOGIN_GRACE_MS, 30 s). */
  sftpLoginGraceMs: number;
  /** What chose the store, named in the store's error messages (openStore). */
  storeFrom: StoreLocation["from"];
}

/** Where the store is: PostgreSQL at `databaseUrl` when set, else SQLite in `dataDir`, and what said so. */
export interface StoreLocation {
  dataDir: string;
  databaseUrl: string | null;
  /** The flag or variable that chose the store, for messages; "default" for ./data when nothing is set. */
  from: "--data-dir" | "--database-url" | "PORTRAIT_DATA_DIR" | "PORTRAIT_DATABASE_URL" | "default";
}

/**
 * The store that flags and environment name. A flag wins over the environment (`--data-dir` over
 * PORTRAIT_DATABASE_URL, `--database-url` over PORTRAIT_DATA_DIR); both flags at once are refused. With neither flag,
 * PORTRAIT_DATABASE_URL wins over PORTRAIT_DATA_DIR (the data directory then holds import uploads only).
 */
export function storeLocation(
  flags: { dataDir?: string; databaseUrl?: string },
  env: NodeJS.ProcessEnv = process.env,
): StoreLocation {
  if (flags.dataDir !== undefined && flags.databaseUrl !== undefined) {
    throw new Error("give --data-dir (SQLite) or --database-url (PostgreSQL), not both");
  }
  if (flags.dataDir !== undefined && flags.dataDir.trim() === "") throw new Error("--data-dir must not be empty");
  const dataDir = path.resolve(flags.dataDir ?? (env.PORTRAIT_DATA_DIR || "./data"));
  if (flags.dataDir !== undefined) return { dataDir, databaseUrl: null, from: "--data-dir" };
  if (flags.databaseUrl !== undefined) {
    return { dataDir, databaseUrl: postgresUrl(flags.databaseUrl, "--database-url"), from: "--database-url" };
  }
  if (env.PORTRAIT_DATABASE_URL) {
    return {
      dataDir,
      databaseUrl: postgresUrl(env.PORTRAIT_DATABASE_URL, "PORTRAIT_DATABASE_URL"),
      from: "PORTRAIT_DATABASE_URL",
    };
  }
  return { dataDir, databaseUrl: null, from: env.PORTRAIT_DATA_DIR ? "PORTRAIT_DATA_DIR" : "default" };
}

/** `raw` when it is a postgres:// or postgresql:// URL; else an error naming `name`, without the URL's password. */
export function postgresUrl(raw: string, name: string): string {
  let url: URL | null = null;
  try {
    url = new URL(raw);
  } catch {
    // reported below
  }
  if (url === null || (url.protocol !== "postgres:" && url.protocol !== "postgresql:")) {
    throw new Error(`${name} must be a postgres:// or postgresql:// URL, got ${JSON.stringify(withoutPassword(raw))}`);
  }
  return raw;
}

/** A URL (or a string that was meant to be one) with its password replaced by ***, for messages. */
export function withoutPassword(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.password) url.password = "***";
    return url.toString();
  } catch {
    return raw.replace(/(\/\/[^/:@\s]*:)[^@\s]*@/, "$1***@");
  }
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): Config {
  const location = storeLocation({}, env);
  return {
    port: !env.PORTRAIT_PORT ? 8080 : portNumber(env.PORTRAIT_PORT, "PORTRAIT_PORT"),
    host: env.PORTRAIT_HOST ?? "0.0.0.0",
    dataDir: location.dataDir,
    databaseUrl: location.databaseUrl,
    storeFrom: location.from,
    bootstrapSecretKey: env.PORTRAIT_BOOTSTRAP_SECRET_KEY || null,
    bootstrapPublicKey: env.PORTRAIT_BOOTSTRAP_PUBLIC_KEY || null,
    logLevel: logLevel(env.PORTRAIT_LOG_LEVEL),
    importMaxBytes: positive(env, "PORTRAIT_IMPORT_MAX_BYTES", 10 * 1000 ** 3),
    sftpPort: env.PORTRAIT_SFTP_PORT ? portNumber(env.PORTRAIT_SFTP_PORT, "PORTRAIT_SFTP_PORT") : null,
    importClaimTimeoutMs: milliseconds(env, "PORTRAIT_IMPORT_CLAIM_TIMEOUT_MS", 15_000),
    jsonBodyTimeoutMs: milliseconds(env, "PORTRAIT_JSON_BODY_TIMEOUT_MS", 60_000),
    httpHeadersTimeoutMs: milliseconds(env, "PORTRAIT_HTTP_HEADERS_TIMEOUT_MS", 30_000),
    sftpLoginGraceMs: milliseconds(env, "PORTRAIT_SFTP_LOGIN_GRACE_MS", 30_000),
    sqliteCacheMb: env.PORTRAIT_SQLITE_CACHE_MB ? positive(env, "PORTRAIT_SQLITE_CACHE_MB", 0) : undefined,
  };
}

function positive(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`${name} must be a positive whole number, got ${raw}`);
  return n;
}

/** The longest delay a Node timer holds (2^31 − 1 ms, about 24.8 days); a longer one fires after 1 ms instead. */
export const MAX_TIMER_MS = 2_147_483_647;

/** A duration in milliseconds that timers are set with: a positive whole number up to MAX_TIMER_MS. */
function milliseconds(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const n = positive(env, name, fallback);
  if (n > MAX_TIMER_MS) {
    throw new Error(`${name} must be at most ${MAX_TIMER_MS} (milliseconds, about 24.8 days), got ${env[name]}`);
  }
  return n;
}

/** A TCP port, 0-65535 (0: any free port), written in decimal digits; else an error naming `name`. */
export function portNumber(raw: string, name: string): number {
  const n = /^\d{1,5}$/.test(raw.trim()) ? Number(raw) : Number.NaN;
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${name} must be a port number, got ${raw}`);
  return n;
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

function logLevel(raw: string | undefined): string {
  if (raw === undefined || raw === "") return "info";
  if (!LOG_LEVELS.includes(raw))
    throw new Error(`PORTRAIT_LOG_LEVEL must be one of ${LOG_LEVELS.join(", ")}, got ${raw}`);
  return raw;
}
