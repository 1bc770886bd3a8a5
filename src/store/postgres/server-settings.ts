/**
 * What a node says at start about the PostgreSQL server's own settings. Portrait cannot set them (they are the
 * server's, and most need a restart), but one of them decides ingestion speed once a store grows: `shared_buffers`.
 * With PostgreSQL's default of 128 MB, B1 at full size measured 26k–27k events/s against 30k–32k at 1 GB: every event
 * writes the events' primary key at a random place, and the backends then read and evict pages through the OS
 * themselves (docs/scaling.md, "Server settings").
 */
import type pg from "pg";

/** PostgreSQL's default; a server still on it was most likely never tuned. */
const DEFAULT_SHARED_BUFFERS = 128 * 1024 * 1024;

/** The warning for a buffer pool of `bytes`, or null when it is larger than PostgreSQL's default. */
export function sharedBuffersWarning(bytes: number, shown: string): string | null {
  if (bytes > DEFAULT_SHARED_BUFFERS) return null;
  return (
    `PostgreSQL's shared_buffers is ${shown}, its default: once the events outgrow it, ingestion reads and writes ` +
    "pages through the OS (≈ 15% fewer events/s measured at 3M events). Give it about a quarter of the database " +
    "server's memory (docs/scaling.md, Server settings)"
  );
}

/** The warnings about the server's settings, read once at start. */
export async function serverSettingsWarnings(db: pg.Pool): Promise<string[]> {
  const { rows } = await db.query<{ bytes: string; shown: string }>(
    "SELECT pg_size_bytes(current_setting('shared_buffers'))::text AS bytes, current_setting('shared_buffers') AS shown",
  );
  const row = rows[0];
  const warning = row ? sharedBuffersWarning(Number(row.bytes), row.shown) : null;
  return warning === null ? [] : [warning];
}
