/**
 * Fresh PostgreSQL databases for `--store postgres` (B8): one per server and one per raw baseline, created on the
 * server at $PORTRAIT_BENCH_PG_URL (default the local maintenance database) and dropped when the scenario ends.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import type { BenchContext } from "./scenario.js";

const ADMIN_URL = process.env.PORTRAIT_BENCH_PG_URL || "postgres://postgres@127.0.0.1:5432/postgres";

export async function freshDatabase(ctx: BenchContext, name: string): Promise<string> {
  const db = `portrait_bench_${name.toLowerCase().replace(/[^a-z0-9]/g, "")}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${db}`);
  } finally {
    await admin.end();
  }
  ctx.scope.defer(async () => {
    const c = new pg.Client({ connectionString: ADMIN_URL });
    await c.connect();
    try {
      await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    } finally {
      await c.end();
    }
  });
  const url = new URL(ADMIN_URL);
  url.pathname = `/${db}`;
  return url.toString();
}
