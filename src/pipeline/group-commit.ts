/**
 * Group commit: ingest batches that arrive while the account's transactions are busy wait here and then run
 * together in the next transaction, each record still in its own savepoint. One commit then pays for many
 * requests (SEMANTICS §11 allows it: a 200 still means committed, because every caller waits for the commit).
 * A group starts at the end of the current turn of the event loop, so the requests that arrived together share it;
 * with no contention that is the only wait (microseconds).
 *
 * Up to `concurrency` groups of one account run at once (Store.concurrentWriters): 1 on SQLite, which has one writer,
 * a few on PostgreSQL, where row locks and unique constraints keep concurrent transactions correct. A job (one
 * request) is never split: its records stay in one group, in their order, and so in one transaction.
 */
import { setImmediate as nextTurn } from "node:timers/promises";
import type { Account } from "../engine/types.js";

interface Waiting<Job, Outcome> {
  job: Job;
  size: number;
  resolve(o: Outcome): void;
  reject(e: unknown): void;
}

interface AccountQueue<Job, Outcome> {
  waiting: Array<Waiting<Job, Outcome>>;
  /** Groups of this account running now. */
  running: number;
}

export class GroupCommit<Job, Outcome> {
  private readonly queues = new Map<string, AccountQueue<Job, Outcome>>();

  constructor(
    /** Runs jobs in one transaction and returns one outcome per job, in order. */
    private readonly run: (account: Account, jobs: Job[]) => Promise<Outcome[]>,
    /** Upper bound on records per transaction, so one commit never grows without limit. */
    private readonly maxRecords = 4000,
    /** How many groups of one account may run at once. */
    private readonly concurrency = 1,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) {
      throw new RangeError(`GroupCommit: concurrency must be an integer ≥ 1, got ${concurrency}`);
    }
  }

  submit(account: Account, job: Job, size: number): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      let queue = this.queues.get(account.id);
      if (!queue) {
        queue = { waiting: [], running: 0 };
        this.queues.set(account.id, queue);
      }
      queue.waiting.push({ job, size, resolve, reject });
      if (queue.running < this.concurrency) {
        queue.running++;
        void this.drain(account, queue);
      }
    });
  }

  /** Records submitted and not yet taken into a transaction, over every account (a metric: how far behind writes are). */
  waitingRecords(): number {
    let n = 0;
    for (const queue of this.queues.values()) for (const w of queue.waiting) n += w.size;
    return n;
  }

  /** One runner: takes the next group while jobs wait, then leaves (the last one out forgets the account). */
  private async drain(account: Account, queue: AccountQueue<Job, Outcome>): Promise<void> {
    const { waiting } = queue;
    // Each group waits for the end of the current turn of the event loop: the requests whose bytes arrived in it
    // join the group. Without the pause, a store that answers synchronously (SQLite) ran each request's transaction
    // inside that request's own callback, so every request committed alone and nothing was ever grouped.
    await nextTurn();
    while (waiting.length > 0) {
      let records = 0;
      let n = 0;
      while (n < waiting.length && (n === 0 || records + (waiting[n]?.size ?? 0) <= this.maxRecords)) {
        records += waiting[n]?.size ?? 0;
        n++;
      }
      const group = waiting.splice(0, n);
      try {
        const outcomes = await this.run(
          account,
          group.map((g) => g.job),
        );
        for (const [i, g] of group.entries()) g.resolve(outcomes[i] as Outcome);
      } catch (error) {
        for (const g of group) g.reject(error);
      }
      if (waiting.length > 0) await nextTurn();
    }
    queue.running--;
    if (queue.running === 0) this.queues.delete(account.id);
  }
}
