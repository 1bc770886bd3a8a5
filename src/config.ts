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
  };
}
