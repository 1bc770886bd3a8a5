/**
 * Fresh PostgreSQL databases for tests, on the server at $PORTRAIT_TEST_PG_URL (default
 * postgres://postgres@127.0.0.1:5432/postgres, a maintenance database of a local server with trust auth).
 *
 * With no server there, PostgreSQL tests are skipped on a developer's machine (the reason is printed) but FAIL in CI
 * (CI=true): a CI run that silently tested one store only would be worse than a red build.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { withoutPassword } from "../config.js";
import { UNREACHABLE } from "../store/open.js";

export type StoreKind = "sqlite" | "postgres";

/** Every store the end-to-end suites cover. */
export const STORES: readonly StoreKind[] = ["sqlite", "postgres"];

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

const DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";

function adminUrl(): string {
  return process.env.PORTRAIT_TEST_PG_URL || DEFAULT_ADMIN_URL;
}

function isUnreachable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const { code } = error as { code?: string };
  if (code !== undefined && UNREACHABLE.has(code)) return true;
  if (error instanceof AggregateError) return error.errors.some(isUnreachable);
  return /timeout/i.test(error.message);
}

let reported = false;

/** An admin connection, or null (reason printed once) when no server answers and this is not CI. */
async function connectAdmin(): Promise<pg.Client | null> {
  const url = adminUrl();
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    if (process.env.CI === "true") {
      throw new Error(
        `PostgreSQL tests cannot run: no usable server at ${withoutPassword(url)} (CI=true, so not skipping)`,
        {
          cause: error,
        },
      );
    }
    if (!isUnreachable(error)) throw error;
    if (!reported) {
      reported = true;
      console.warn(
        `PostgreSQL tests skipped: no server at ${withoutPassword(url)} (start one, or point PORTRAIT_TEST_PG_URL at one)`,
      );
    }
    return null;
  }
}

export interface TestDatabaseOptions {
  /**
   * An ICU locale (`en-US`) for the database's default collation, instead of the server's default. A server made by
   * initdb in C or C.UTF-8 compares text by code point whatever the SQL says; under a locale's collation, text that
   * should have been compared with COLLATE "C" and was not orders differently (`a` before `B`).
   */
  icuLocale?: string;
}

/** A new, empty database `portrait_test_<random>`; null when PostgreSQL tests are to be skipped (see above). */
export async function createTestDatabase(opts: TestDatabaseOptions = {}): Promise<TestDatabase | null> {
  const admin = await connectAdmin();
  if (admin === null) return null;
  // The creation time in the name lets later runs drop what a run left behind (dropLeftovers).
  const name = `portrait_test_${Date.now().toString(36)}_${randomBytes(6).toString("hex")}`;
  try {
    await dropLeftovers(admin);
    const locale = opts.icuLocale;
    if (locale !== undefined && !/^[A-Za-z0-9-]+$/.test(locale)) throw new Error(`not an ICU locale: ${locale}`);
    await admin.query(
      locale === undefined
        ? `CREATE DATABASE ${name}`
        : `CREATE DATABASE ${name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE '${locale}' LOCALE 'C.UTF-8'`,
    );
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  let dropped: Promise<void> | null = null;
  return {
    url: url.toString(),
    drop() {
      dropped ??= (async () => {
        const client = await connectAdmin();
        if (client === null) return;
        try {
          // FORCE: a connection a failed test left open must not keep the database alive.
          await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        } finally {
          await client.end();
        }
      })();
      return dropped;
    },
  };
}

/** Test databases are dropped by the suite that made them; one older than this was left behind. */
const LEFTOVER_AFTER_MS = 3 * 60 * 60 * 1000;

/**
 * Drops test databases more than LEFTOVER_AFTER_MS old. A suite drops its database in `afterAll`, which vitest skips
 * when a filter (`-t`) selects none of its tests, and a killed run drops nothing; without this they pile up on a
 * developer's server. A name without a creation time (made before it was in the name) is left alone: it may belong
 * to a run of older code that is still going.
 */
async function dropLeftovers(admin: pg.Client): Promise<void> {
  const { rows } = await admin.query<{ datname: string }>(
    "SELECT datname FROM pg_database WHERE datname LIKE 'portrait\\_test\\_%'",
  );
  const now = Date.now();
  for (const { datname } of rows) {
    const made = /^portrait_test_([0-9a-z]+)_[0-9a-f]+$/.exec(datname);
    if (!made || now - Number.parseInt(made[1]!, 36) < LEFTOVER_AFTER_MS) continue;
    // Another run may be dropping it at the same moment: either way it is gone.
    await admin.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`).catch(() => undefined);
  }
}

/**
 * The stores a suite runs on here: all of STORES, less PostgreSQL (with the reason printed) when no server answers
 * outside CI. For `describe.each`, which needs the list before the tests are collected.
 */
export async function storesUnderTest(): Promise<StoreKind[]> {
  const admin = await connectAdmin();
  if (admin === null) return STORES.filter((s) => s !== "postgres");
  await admin.end();
  return [...STORES];
}
