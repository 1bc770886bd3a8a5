/**
 * A real Portrait server for end-to-end tests: on a real SQLite file in a temp directory, or (`store: "postgres"`) on a
 * fresh PostgreSQL database that is dropped when the server closes.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { configFromEnv } from "../config.js";
import { type RunningServer, startServer } from "../server.js";
import { createTestDatabase, type StoreKind, type TestDatabase } from "./postgres.js";

export const SECRET = "sk_test_secret_key_0123456789abcdef";
export const PUBLIC = "pk_test_public_key_0123456789abcdef";

// biome-ignore lint/suspicious/noExplicitAny: tests read response bodies of every shape through one helper
type AnyBody = any;

export interface TestServer {
  url: string;
  server: RunningServer;
  dir: string;
  /** fetch with the secret key and JSON. */
  api(
    method: string,
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{ status: number; body: AnyBody }>;
  close(): Promise<void>;
}

export async function startTestServer(
  env: Record<string, string> = {},
  opts: { store?: StoreKind } = {},
): Promise<TestServer> {
  const dir = mkdtempSync(path.join(tmpdir(), "portrait-test-"));
  let database: TestDatabase | null = null;
  if (opts.store === "postgres") {
    database = await createTestDatabase();
    // Suites list their stores with storesUnderTest(), which leaves PostgreSQL out when there is no server.
    if (database === null) throw new Error("startTestServer: no PostgreSQL server to test on");
  }
  const config = configFromEnv({
    PORTRAIT_PORT: "0",
    PORTRAIT_HOST: "127.0.0.1",
    PORTRAIT_DATA_DIR: dir,
    PORTRAIT_BOOTSTRAP_SECRET_KEY: SECRET,
    PORTRAIT_BOOTSTRAP_PUBLIC_KEY: PUBLIC,
    PORTRAIT_LOG_LEVEL: "warn",
    ...(database && { PORTRAIT_DATABASE_URL: database.url }),
    ...env,
  });
  let server: RunningServer;
  try {
    server = await startServer(config);
  } catch (error) {
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const url = server.url;
  return {
    url,
    server,
    dir,
    async api(method, p, body, headers = {}) {
      const res = await fetch(url + p, {
        method,
        headers: {
          authorization: `Bearer ${SECRET}`,
          ...(body !== undefined && { "content-type": "application/json" }),
          ...headers,
        },
        body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {
        // non-JSON bodies (metrics, CSV) stay text
      }
      return { status: res.status, body: parsed };
    },
    async close() {
      await server.close();
      await database?.drop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
