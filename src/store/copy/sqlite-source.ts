/**
 * The SQLite store a copy reads: opened read-only (SQLITE_OPEN_READONLY: nothing the copy runs can change it; SQLite
 * may still create the empty `-wal` and `-shm` files beside it, as any reader of a WAL database does), checked to be
 * at the schema version this build knows, and read inside one read transaction from the first statement to the last:
 * every table comes from the same snapshot, even if something wrote to the store meanwhile.
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { LATEST_VERSION } from "../sqlite/schema.js";
import { CopyError } from "./copy-error.js";
import { processesHoldingLocks } from "./in-use.js";
import { SQLITE_TABLES } from "./tables.js";

export class SqliteSource {
  /** The files' sizes and times once the snapshot was taken (see `writtenSinceOpen`). */
  private fingerprint = "";

  private constructor(
    private readonly db: Database.Database,
    /** The database file. */
    readonly file: string,
  ) {}

  /**
   * Opens `<dataDir>/portrait.db` for the copy. Refuses a store that is missing, open in another process (when this
   * system can tell: `checkedInUse` says whether it could), or at a schema version other than this build's.
   */
  static open(dataDir: string): { source: SqliteSource; checkedInUse: boolean } {
    const file = path.join(dataDir, "portrait.db");
    if (!existsSync(file) || !statSync(file).isFile()) {
      throw new CopyError(
        "NO_STORE",
        `no Portrait store at ${file} (name the data directory of the SQLite store with --data-dir or PORTRAIT_DATA_DIR)`,
      );
    }
    const holders = holdersOf(file);
    if (holders !== null && holders.length > 0) {
      throw new CopyError(
        "STORE_IN_USE",
        `${file} is open in another process (pid ${holders.join(", ")}): stop every \`portrait serve\` on it (and ` +
          "any other program using it) first, so that nothing is written after the copy; nothing was copied",
      );
    }
    let db: Database.Database;
    try {
      db = new Database(file, { readonly: true, fileMustExist: true });
    } catch (error) {
      throw new CopyError("NO_STORE", `cannot open ${file} (${(error as Error).message})`);
    }
    const source = new SqliteSource(db, file);
    try {
      db.pragma("busy_timeout = 5000");
      // The snapshot starts at the first read, here, and lasts until close().
      db.exec("BEGIN");
      source.checkSchema();
      source.fingerprint = source.files();
    } catch (error) {
      db.close();
      if (error instanceof CopyError) throw error;
      throw new CopyError("NO_STORE", `cannot read ${file} as a Portrait store (${(error as Error).message})`);
    }
    return { source, checkedInUse: holders !== null };
  }

  private checkSchema(): void {
    const tables = new Set(
      this.db.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all(),
    );
    if (!tables.has("schema_migrations")) {
      throw new CopyError("NO_STORE", `${this.file} is not a Portrait store (it has no schema_migrations table)`);
    }
    const version = this.value<number | null>("SELECT max(version) FROM schema_migrations") ?? 0;
    if (version > LATEST_VERSION) {
      throw new CopyError(
        "UNKNOWN_SCHEMA_VERSION",
        `${this.file} is at schema version ${version}, newer than this Portrait knows (${LATEST_VERSION}): ` +
          "copy it with the Portrait that wrote it",
      );
    }
    if (version < LATEST_VERSION) {
      throw new CopyError(
        "UNKNOWN_SCHEMA_VERSION",
        `${this.file} is at schema version ${version}, older than this Portrait's (${LATEST_VERSION}), which is ` +
          `the one the copy reads: run \`portrait accounts list --data-dir ${path.dirname(this.file)}\` once with ` +
          "this Portrait (it brings the store up to date), then copy",
      );
    }
    // The copy accounts for every table of this version (tables.ts); anything else was not made by Portrait.
    const unknown = [...tables].filter((t) => !(t in SQLITE_TABLES));
    if (unknown.length > 0) {
      throw new CopyError(
        "UNKNOWN_SCHEMA_VERSION",
        `${this.file} has tables this Portrait does not know (${unknown.join(", ")}): the copy would leave them behind`,
      );
    }
  }

  /** Size and modification time of the database and its WAL: what any commit or checkpoint changes. */
  private files(): string {
    return [this.file, `${this.file}-wal`]
      .map((f) => (existsSync(f) ? `${statSync(f).size}@${statSync(f).mtimeMs}` : "none"))
      .join(" ");
  }

  /**
   * Whether another process wrote to the store since the snapshot was taken (a commit grows the WAL, a checkpoint
   * rewrites the database): what it wrote is not in the copy. Checked before the target commits, with `holders`, which
   * closes the gap that the check at open leaves (a server started during the copy).
   */
  writtenSinceOpen(): boolean {
    return this.files() !== this.fingerprint;
  }

  /** The other processes that have the store open now, or null when this system cannot tell (in-use.ts). */
  holders(): number[] | null {
    return holdersOf(this.file);
  }

  /** The first column of the first row of `sql`. */
  value<T>(sql: string): T {
    return this.db.prepare<[], T>(sql).pluck().get() as T;
  }

  /** The first row of `sql` as an array. */
  row<T extends unknown[]>(sql: string): T {
    return this.db.prepare<[], T>(sql).raw().get() as T;
  }

  /** The rows of `sql` as arrays, read as they are consumed (one statement step per row). */
  rows(sql: string): IterableIterator<unknown[]> {
    return this.db.prepare<[], unknown[]>(sql).raw().iterate();
  }

  /** Ends the read transaction and closes the connection. */
  close(): void {
    if (this.db.inTransaction) this.db.exec("ROLLBACK");
    this.db.close();
  }
}

function holdersOf(file: string): number[] | null {
  return processesHoldingLocks([file, `${file}-shm`, `${file}-wal`]);
}
