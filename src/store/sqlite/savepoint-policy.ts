/**
 * When a SQLite transaction takes SQL savepoints for its records.
 *
 * SQLite first copies every page that a savepoint's statements touch into its statement journal. For records that
 * almost always succeed (an import's new people, a login that creates one), that copy was ≈ 9% of the CPU
 * (docs/performance.md, "Record savepoints"). So a transaction first runs with no SQL savepoint at all. If a record
 * fails after it wrote through SQL, it cannot be taken back alone. Its savepoint then throws `SavepointNeeded` instead
 * of the refusal, the whole transaction rolls back, and `write()` runs it again with savepoints. Every write function
 * may be run again (Store.write); PostgreSQL's deadlock retries rely on the same rule. After such a run, the next
 * writes take savepoints from the start, so a file full of refused rows does not run every batch twice.
 */

/** Transactions that take savepoints from their first run after one had to run again. */
const RUNS_WITH_SAVEPOINTS = 16;

/** A record failed after writing in a run without SQL savepoints: the transaction must run again with them. */
export class SavepointNeeded extends Error {
  constructor(refusal: unknown) {
    super("a record failed after writing, in a transaction without savepoints: it runs again with them", {
      cause: refusal,
    });
  }
}

export class SavepointPolicy {
  private withSavepoints = 0;
  /** How many transactions had to run again (SqliteStore.savepointReruns). */
  reruns = 0;

  /** Whether the next transaction's first run takes SQL savepoints. */
  next(): boolean {
    if (this.withSavepoints === 0) return false;
    this.withSavepoints--;
    return true;
  }

  /** A run without savepoints met a record that needed one. */
  ranAgain(): void {
    this.reruns++;
    this.withSavepoints = RUNS_WITH_SAVEPOINTS;
  }
}
