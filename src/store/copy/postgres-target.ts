/**
 * The PostgreSQL database a copy fills: one connection and one transaction, from the check that it is empty through
 * the schema's creation (the adapter's own migrations) and every row to the verification. Nothing is visible to
 * anyone else until COMMIT, and anything short of it (an error, Ctrl-C, the process killed, the connection lost)
 * leaves the database as it was: PostgreSQL rolls back a transaction whose connection goes away.
 *
 * Statements are sent without waiting for the previous one's answer (up to IN_FLIGHT), so that PostgreSQL inserts one
 * chunk while the copy reads the next from SQLite; the connection runs them in order. The first failure is the one
 * reported (the statements after it fail only because the transaction is aborted).
 */
import pg from "pg";
import { connectionError, serverOf } from "../open.js";
import { PG_CONNECT_TIMEOUT_MS } from "../postgres/connect-timeout.js";
import { LATEST_VERSION, MIGRATION_LOCK, migrateInTransaction } from "../postgres/schema.js";
import { CopyError } from "./copy-error.js";
import { POSTGRES_TABLES } from "./tables.js";

/** Statements sent and not yet answered, at most: one being inserted, one on its way. */
const IN_FLIGHT = 2;

export class PostgresTarget {
  private readonly inFlight: Promise<unknown>[] = [];
  private failure: unknown = null;
  /** The table whose statement failed first (a pipelined failure is seen while the copy is on a later one). */
  failedTable: string | null = null;
  private committed = false;

  private constructor(
    private readonly client: pg.Client,
    /** `host:port/database`, for messages (never the password). */
    readonly where: string,
  ) {}

  /** Connects to `url` (given by `from`, e.g. `--to`, named in messages) and opens the copy's transaction. */
  static async open(url: string, from: string): Promise<PostgresTarget> {
    const where = serverOf(url);
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
      application_name: "portrait-copy-store",
    });
    // A connection lost mid-copy fails the statement in flight, which is reported; this only keeps the event quiet.
    client.on("error", () => undefined);
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw new CopyError("CANNOT_CONNECT", connectionError(error, where, from).message);
    }
    const target = new PostgresTarget(client, where);
    try {
      await client.query("BEGIN ISOLATION LEVEL READ COMMITTED");
      // Before the check: a second copy (or a `portrait serve` migrating) into the same database waits here until this
      // one commits or rolls back, and then finds the database no longer empty (or takes its turn).
      await client.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    } catch (error) {
      await target.close();
      throw error;
    }
    return target;
  }

  /**
   * Refuses (TARGET_NOT_EMPTY) a database that holds Portrait's tables with any row, or tables named as Portrait's
   * without its schema (another program's). Tables of other names are not Portrait's business and are left alone.
   */
  async checkEmpty(): Promise<void> {
    const names = Object.keys(POSTGRES_TABLES);
    const present = await this.client.query<{ name: string }>(
      `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = current_schema() AND c.relname = ANY($1::text[]) ORDER BY c.relname`,
      [names],
    );
    const tables = present.rows.map((r) => r.name);
    if (tables.length === 0) return;
    const advice = "copy into a new, empty database (createdb …); nothing was copied";
    if (!tables.includes("schema_migrations")) {
      throw new CopyError(
        "TARGET_NOT_EMPTY",
        `the database ${this.where} has tables named as Portrait's (${tables.join(", ")}) but no Portrait schema: ${advice}`,
      );
    }
    const version = await this.client.query<{ v: number | null }>("SELECT max(version) AS v FROM schema_migrations");
    const at = version.rows[0]?.v ?? 0;
    if (at > LATEST_VERSION) {
      throw new CopyError(
        "TARGET_NOT_EMPTY",
        `the database ${this.where} holds a Portrait schema of version ${at}, newer than this Portrait's (${LATEST_VERSION}): ${advice}`,
      );
    }
    const filled: string[] = [];
    for (const table of tables) {
      if (table === "schema_migrations") continue;
      const r = await this.client.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
      const n = Number(r.rows[0]?.n ?? 0);
      if (n > 0) filled.push(`${table}: ${n}`);
    }
    if (filled.length === 0) return;
    const accounts = await this.client.query<{ id: string }>("SELECT id FROM accounts ORDER BY id LIMIT 5");
    const named = accounts.rows.length > 0 ? ` (accounts ${accounts.rows.map((r) => r.id).join(", ")})` : "";
    throw new CopyError(
      "TARGET_NOT_EMPTY",
      `the database ${this.where} holds a Portrait store already${named}, with rows in ${filled.join(", ")}: ` +
        `a \`portrait serve\` started on it made its account default; ${advice}`,
    );
  }

  /** Creates the schema (or brings an empty one up to date) with the PostgreSQL adapter's migrations. */
  async migrate(): Promise<void> {
    await migrateInTransaction(this.client);
  }

  /**
   * Sends a statement that writes `table` without waiting for its answer (once IN_FLIGHT are out, waits for the
   * oldest first).
   */
  async send(table: string, query: pg.QueryConfig): Promise<void> {
    if (this.failure !== null) throw this.failure;
    while (this.inFlight.length >= IN_FLIGHT) await this.settleOldest();
    const sent = this.client.query(query);
    // Observed at once, so that a failure never goes unhandled while the copy reads SQLite; reported by the next call.
    sent.catch((error: unknown) => {
      if (this.failure !== null) return;
      this.failure = error;
      this.failedTable = table;
    });
    this.inFlight.push(sent);
  }

  private async settleOldest(): Promise<void> {
    const oldest = this.inFlight.shift();
    try {
      await oldest;
    } catch {
      // this.failure holds the first failure
    }
    if (this.failure !== null) throw this.failure;
  }

  /** Waits for every statement sent; throws the first failure. */
  async drain(): Promise<void> {
    while (this.inFlight.length > 0) await this.settleOldest();
    if (this.failure !== null) throw this.failure;
  }

  /** One statement, answered (after those sent before it). */
  async query<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
    await this.drain();
    return (await this.client.query<R>(text, values)).rows;
  }

  async count(table: string): Promise<number> {
    const rows = await this.query<{ n: string }>(`SELECT count(*) AS n FROM ${table}`);
    return Number(rows[0]?.n ?? 0);
  }

  /** Sets the sequence behind `table.column` so that its next value is `highest + 1`; returns that next value. */
  async continueSequence(table: string, column: string, highest: number): Promise<number> {
    const rows = await this.query<{ next: string }>(
      `SELECT setval(pg_get_serial_sequence($1, $2), $3::bigint, $4) AS next`,
      // setval(…, 1, false): the next value is 1, for a table that had no rows (a sequence cannot be set to 0).
      [table, column, Math.max(highest, 1), highest >= 1],
    );
    return Number(rows[0]?.next ?? 0) + (highest >= 1 ? 1 : 0);
  }

  async commit(): Promise<void> {
    await this.drain();
    await this.client.query("COMMIT");
    this.committed = true;
  }

  /**
   * Statistics for the planner: a freshly loaded table has none until autovacuum comes by, and the plans of segment
   * queries depend on them. Run after COMMIT, outside the copy's transaction: they are not part of the data, and
   * the transaction (with the migration lock that servers starting on the database wait for) ends sooner.
   */
  async analyze(tables: readonly string[]): Promise<void> {
    await this.client.query(`ANALYZE ${tables.join(", ")}`);
  }

  /**
   * Ends the connection; a transaction not committed is rolled back (explicitly when the connection still answers,
   * else by PostgreSQL when the connection goes).
   */
  async close(): Promise<void> {
    await Promise.allSettled(this.inFlight);
    if (!this.committed) await this.client.query("ROLLBACK").catch(() => undefined);
    await this.client.end().catch(() => undefined);
  }
}
