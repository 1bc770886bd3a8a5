/**
 * `portrait copy-store`: a SQLite store into an empty PostgreSQL database, whole (docs/moving-to-postgres.md).
 *
 * The steps, in order: open the source read-only in one read transaction (sqlite-source.ts); open the target's one
 * transaction and check it is empty (postgres-target.ts); create the schema with the PostgreSQL adapter's migrations;
 * copy every table (tables.ts says what happens to each: profiles-step.ts, table-step.ts); continue the sequences past
 * the copied seqs; verify (verify.ts); COMMIT; ANALYZE. Any failure before COMMIT rolls the whole copy back.
 */
import { postgresUrl, withoutPassword } from "../../config.js";
import {
  type CopyContext,
  checkInterrupted,
  secondsSince,
  type TableProgress,
  type TableResult,
} from "./copy-context.js";
import { CopyError } from "./copy-error.js";
import { PostgresTarget } from "./postgres-target.js";
import { copyProfiles } from "./profiles-step.js";
import { SqliteSource } from "./sqlite-source.js";
import { copyTable } from "./table-step.js";
import { SEQUENCES, TABLE_COPIES } from "./tables.js";
import { verifyCopy } from "./verify.js";

export interface CopyStoreOptions {
  /** The SQLite store's data directory (its portrait.db is read). */
  dataDir: string;
  /** The PostgreSQL database's URL. */
  to: string;
  /** What gave the URL, named in messages (`--to`). */
  toFrom?: string;
  progress?(p: TableProgress): void;
  /** Aborted on Ctrl-C: the copy stops at the next chunk and rolls back. */
  signal?: AbortSignal;
}

export interface CopySummary {
  /** The SQLite file read. */
  source: string;
  /** `host:port/database` written. */
  target: string;
  tables: TableResult[];
  /** Where each sequence continues: the next seq a new row gets. */
  sequences: { table: string; column: string; next: number }[];
  /** Row counts and activity totals matched the source (verify.ts) before the copy committed. */
  verified: true;
  seconds: number;
  /** What the operator should know (e.g. the check for a running server could not be made). */
  warnings: string[];
}

export async function copyStore(opts: CopyStoreOptions): Promise<CopySummary> {
  const start = performance.now();
  const toFrom = opts.toFrom ?? "--to";
  let url: string;
  try {
    url = postgresUrl(opts.to, toFrom);
  } catch (error) {
    throw new CopyError("INVALID_URL", (error as Error).message);
  }
  const warnings: string[] = [];
  const { source, checkedInUse } = SqliteSource.open(opts.dataDir);
  try {
    if (!checkedInUse) {
      warnings.push(
        "this system cannot tell whether a server has the SQLite store open (no /proc/locks): make sure every " +
          "`portrait serve` on it is stopped, or what it writes after the copy began is not in the copy",
      );
    }
    const target = await PostgresTarget.open(url, toFrom);
    try {
      await target.checkEmpty();
      await target.migrate();
      const ctx: CopyContext = { source, target, progress: opts.progress ?? (() => undefined), signal: opts.signal };
      const tables: TableResult[] = await copyProfiles(ctx);
      for (const copy of TABLE_COPIES) tables.push(await copyTable(ctx, copy));
      const sequences: CopySummary["sequences"] = [];
      for (const s of SEQUENCES) {
        const next = await target.continueSequence(s.table, s.column, source.value<number>(s.highest));
        sequences.push({ table: s.table, column: s.column, next });
      }
      await verifyCopy(ctx, tables);
      checkInterrupted(ctx);
      await target.commit();
      try {
        await target.analyze(tables.map((t) => t.table));
      } catch (error) {
        warnings.push(`ANALYZE after the copy failed (${(error as Error).message}); autovacuum will analyze later`);
      }
      const summary: CopySummary = {
        source: source.file,
        target: target.where,
        tables,
        sequences,
        verified: true,
        seconds: secondsSince(start),
        warnings,
      };
      return summary;
    } catch (error) {
      throw failureOf(error, target);
    } finally {
      await target.close();
    }
  } finally {
    source.close();
  }
}

/** An error during the copy as a CopyError that says the target was left as it was. */
function failureOf(error: unknown, target: PostgresTarget): CopyError {
  if (error instanceof CopyError) return error;
  const e = error as Error & { code?: string; detail?: string; table?: string };
  const table = target.failedTable ?? e.table;
  const where = table ? ` while writing ${table}` : "";
  const detail = e.detail ? ` (${e.detail})` : "";
  const reason = `${withoutPassword(e.message)}${detail}`;
  if (e.code === "22021" || e.code === "22P05") {
    return new CopyError(
      "UNSTORABLE_ROW",
      `PostgreSQL refused a row${where}: ${reason}; correct or delete it in the SQLite store and copy again; ` +
        "nothing was copied (the transaction was rolled back)",
    );
  }
  return new CopyError("COPY_FAILED", `${reason}${where}; nothing was copied (the transaction was rolled back)`);
}
