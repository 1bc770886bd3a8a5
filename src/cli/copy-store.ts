/**
 * `portrait copy-store --to postgres://… [--data-dir DIR] [--json]`: the SQLite store (the data directory that
 * --data-dir, else PORTRAIT_DATA_DIR, else ./data names) copied whole into an empty PostgreSQL database, for a team
 * that outgrows SQLite (docs/moving-to-postgres.md). Progress goes to stderr, one line per table (and every few seconds
 * on a big one); the summary to stdout, as a table or as JSON. Ctrl-C stops at the next chunk and rolls back.
 */
import path from "node:path";
import { setFlagsFromString } from "node:v8";
import type { Command } from "commander";
import type { TableProgress } from "../store/copy/copy-context.js";
import type { CopySummary } from "../store/copy/copy-store.js";
import { CliError } from "./cli-error.js";

/** A big table's progress is printed at most this often. */
const PROGRESS_EVERY_MS = 2_000;

export function addCopyStoreCommand(program: Command): void {
  program
    .command("copy-store")
    .description("copy the SQLite store into an empty PostgreSQL database (stop the server first)")
    .requiredOption("--to <url>", "the PostgreSQL database to fill: postgres://user@host:5432/database")
    .option("--data-dir <dir>", "the SQLite store's data directory (default: $PORTRAIT_DATA_DIR or ./data)")
    .option("--json", "print the summary as JSON")
    .action(async (opts: { to: string; dataDir?: string; json?: boolean }) => {
      if (opts.dataDir !== undefined && opts.dataDir.trim() === "") {
        throw new CliError("INVALID_VALUE", "--data-dir must not be empty");
      }
      // Every chunk is garbage once sent, and V8 grows the heap by up to 4× what survives a full collection: at its
      // default the copy of 100k people stood at ≈ 260 MB RSS, at 1.5× (as `serve` sets it) ≈ 170 MB, as fast.
      setFlagsFromString("--heap-growing-percent=50");
      // The source is SQLite whatever PORTRAIT_DATABASE_URL says: that variable may already name the new database.
      const dataDir = path.resolve(opts.dataDir ?? (process.env.PORTRAIT_DATA_DIR || "./data"));
      const interrupt = new AbortController();
      const onSignal = () => {
        if (interrupt.signal.aborted) process.exit(130);
        process.stderr.write("interrupting: rolling the copy back (Ctrl-C again to quit at once)…\n");
        interrupt.abort();
      };
      process.on("SIGINT", onSignal);
      process.on("SIGTERM", onSignal);
      // Loaded on use, as the store is (main.ts): the other commands never load the copy or its drivers.
      const [{ copyStore }, { CopyError }] = await Promise.all([
        import("../store/copy/copy-store.js"),
        import("../store/copy/copy-error.js"),
      ]);
      let summary: CopySummary;
      try {
        summary = await copyStore({
          dataDir,
          to: opts.to,
          toFrom: "--to",
          progress: progressPrinter(),
          signal: interrupt.signal,
        });
      } catch (error) {
        if (error instanceof CopyError) throw new CliError(error.code, error.message);
        throw error;
      } finally {
        process.off("SIGINT", onSignal);
        process.off("SIGTERM", onSignal);
      }
      for (const warning of summary.warnings) process.stderr.write(`warning: ${warning}\n`);
      process.stdout.write(opts.json ? `${JSON.stringify(summary, null, 2)}\n` : summaryText(summary));
    });
}

/** Prints each table's progress to stderr: when it ends, and meanwhile every PROGRESS_EVERY_MS. */
function progressPrinter(): (p: TableProgress) => void {
  let last = performance.now();
  return (p) => {
    const now = performance.now();
    if (p.done) {
      const rate = p.seconds > 0 && p.rows > 0 ? `, ${Math.round(p.rows / p.seconds).toLocaleString("en")} rows/s` : "";
      process.stderr.write(`${p.table}: ${p.rows.toLocaleString("en")} rows (${p.seconds.toFixed(1)} s${rate})\n`);
    } else if (now - last >= PROGRESS_EVERY_MS) {
      const share = p.total > 0 ? ` (${Math.floor((100 * p.rows) / p.total)}%)` : "";
      process.stderr.write(
        `${p.table}: ${p.rows.toLocaleString("en")} of ${p.total.toLocaleString("en")} rows${share}…\n`,
      );
    } else {
      return;
    }
    last = now;
  };
}

function summaryText(summary: CopySummary): string {
  const width = Math.max(...summary.tables.map((t) => t.table.length));
  const lines = [
    `copied ${summary.source} into ${summary.target} in ${summary.seconds.toFixed(1)} s`,
    ...summary.tables.map((t) => {
      const note = t.note ? `  (${t.note})` : "";
      return `  ${t.table.padEnd(width)} ${String(t.rows).padStart(10)}  ${t.how} from ${t.from}${note}`;
    }),
    `sequences continue at: ${summary.sequences.map((s) => `${s.table}.${s.column} ${s.next}`).join(", ")}`,
    "verified: every table holds the rows expected from the source, and the activity totals match",
    "next: start `portrait serve` with PORTRAIT_DATABASE_URL set to this database and the same PORTRAIT_DATA_DIR",
  ];
  return `${lines.join("\n")}\n`;
}
