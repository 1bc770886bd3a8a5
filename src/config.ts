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
}

export function configFromEnv(env: NodeJS.ProcessEnv = process.env): Config {
  const port = Number(env.PORTRAIT_PORT ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`PORTRAIT_PORT must be a port number, got ${env.PORTRAIT_PORT}`);
  return {
    port,
    host: env.PORTRAIT_HOST ?? "0.0.0.0",
    dataDir: path.resolve(env.PORTRAIT_DATA_DIR ?? "./data"),
    databaseUrl: env.PORTRAIT_DATABASE_URL || null,
    bootstrapSecretKey: env.PORTRAIT_BOOTSTRAP_SECRET_KEY || null,
    bootstrapPublicKey: env.PORTRAIT_BOOTSTRAP_PUBLIC_KEY || null,
    logLevel: env.PORTRAIT_LOG_LEVEL ?? "info",
    importMaxBytes: positive(env, "PORTRAIT_IMPORT_MAX_BYTES", 10 * 1000 ** 3),
    sftpPort: env.PORTRAIT_SFTP_PORT ? portNumber(env.PORTRAIT_SFTP_PORT, "PORTRAIT_SFTP_PORT") : null,
    importClaimTimeoutMs: positive(env, "PORTRAIT_IMPORT_CLAIM_TIMEOUT_MS", 15_000),
    jsonBodyTimeoutMs: positive(env, "PORTRAIT_JSON_BODY_TIMEOUT_MS", 60_000),
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

function portNumber(raw: string, name: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${name} must be a port number, got ${raw}`);
  return n;
}
