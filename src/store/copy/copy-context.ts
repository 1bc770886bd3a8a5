/** What every step of a copy works with, and what it reports. */
import { CopyError } from "./copy-error.js";
import type { PostgresTarget } from "./postgres-target.js";
import type { SqliteSource } from "./sqlite-source.js";
import type { How } from "./tables.js";

/** A table's progress: rows written so far of `total` (what the source holds for it). */
export interface TableProgress {
  table: string;
  rows: number;
  total: number;
  done: boolean;
  seconds: number;
}

/** What a step wrote into one PostgreSQL table, and what the verification will expect there. */
export interface TableResult {
  table: string;
  /** The SQLite table(s) it came from. */
  from: string;
  how: How;
  /** Rows written. */
  rows: number;
  /** Rows the target must hold: the source's count (of what is copied), checked after the last step. */
  expected: number;
  seconds: number;
  /** What was not copied, and why (e.g. events of no profile). */
  note?: string;
}

export interface CopyContext {
  source: SqliteSource;
  target: PostgresTarget;
  progress(p: TableProgress): void;
  /** Aborted on Ctrl-C: the copy stops at the next chunk and rolls back. */
  signal?: AbortSignal;
}

/** Throws INTERRUPTED once the signal is aborted; steps call it between chunks. */
export function checkInterrupted(ctx: CopyContext): void {
  if (ctx.signal?.aborted) {
    throw new CopyError("INTERRUPTED", "interrupted: the copy was rolled back, the target is as it was");
  }
}

/** Seconds since `start` (a performance.now()), to the millisecond. */
export function secondsSince(start: number): number {
  return Math.round(performance.now() - start) / 1000;
}
