import pg from "pg";
import { describe, expect, it } from "vitest";
import { createTestDatabase, storesUnderTest } from "./postgres.js";

const postgres = (await storesUnderTest()).includes("postgres");
const ADMIN = process.env.PORTRAIT_TEST_PG_URL || "postgres://postgres@127.0.0.1:5432/postgres";

async function admin<R extends pg.QueryResultRow>(text: string): Promise<R[]> {
  const client = new pg.Client(ADMIN);
  await client.connect();
  try {
    return (await client.query<R>(text)).rows;
  } finally {
    await client.end();
  }
}

describe.skipIf(!postgres)("createTestDatabase", () => {
  it("drops test databases that earlier runs left behind hours ago, and none that may still be in use", async () => {
    const made = (agoMs: number, tail: string) => `portrait_test_${(Date.now() - agoMs).toString(36)}_${tail}`;
    const stale = made(4 * 3600_000, "5a1e5a1e5a1e");
    const recent = made(60_000, "2ece2ece2ece");
    const legacy = "portrait_test_0123456789abcdef";
    for (const name of [stale, recent, legacy]) await admin(`CREATE DATABASE ${name}`);
    const db = (await createTestDatabase())!;
    try {
      const left = (await admin<{ datname: string }>("SELECT datname FROM pg_database")).map((r) => r.datname);
      expect(left).not.toContain(stale);
      expect(left).toContain(recent);
      expect(left).toContain(legacy);
      expect(left).toContain(new URL(db.url).pathname.slice(1));
    } finally {
      await db.drop();
      for (const name of [stale, recent, legacy]) await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  });
});
