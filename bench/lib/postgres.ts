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

/** The server settings that move B8's figures most, as one line of the bench's header. */
const SETTINGS = ["shared_buffers", "max_wal_size", "synchronous_commit", "autovacuum"] as const;

/**
 * Below this `shared_buffers`, B1 at full size (100k devices, ≈ 3M events written) no longer holds the events' primary
 * key, profiles and devices in PostgreSQL's buffers: backends then read and evict pages themselves, which measured
 * 26.1k–27.0k against 30.4k–31.9k events/s at 1 GB (docs/scaling.md, "Server settings").
 */
const WORKING_SET_BYTES = 1024 ** 3;

/**
 * `PostgreSQL 15.20: shared_buffers 1GB, …` (`settings`), and a `note` when the buffers are below B1 full's working
 * set, else null.
 */
export async function describeServer(): Promise<{ settings: string; note: string | null }> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    const shown = SETTINGS.map((name, i) => `current_setting('${name}') AS s${i}`).join(", ");
    const row = (
      await admin.query<Record<string, string>>(
        `SELECT current_setting('server_version') AS version,
          pg_size_bytes(current_setting('shared_buffers'))::float8 AS buffers, ${shown}`,
      )
    ).rows[0]!;
    return {
      settings: `PostgreSQL ${row.version}: ${SETTINGS.map((name, i) => `${name} ${row[`s${i}`]}`).join(", ")}`,
      note:
        Number(row.buffers) < WORKING_SET_BYTES
          ? "note: shared_buffers is below 1GB, under B1 full's working set: that figure then measures the server's " +
            "page traffic more than Portrait (docs/scaling.md, Server settings)"
          : null,
    };
  } finally {
    await admin.end();
  }
}
