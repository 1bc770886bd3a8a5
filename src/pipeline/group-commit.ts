/**
 * Group commit: ingest batches that arrive while the account's transaction is busy wait here and then run
 * together in the next transaction, each record still in its own savepoint. One commit then pays for many
 * requests (SEMANTICS §11 allows it: a 200 still means committed, because every caller waits for the commit).
 * With no contention a batch runs at once, alone, so there is no added latency.
 */
import type { Account } from "../engine/types.js";

export class GroupCommit<Job, Outcome> {
  private readonly queues = new Map<
    string,
    Array<{ job: Job; size: number; resolve(o: Outcome): void; reject(e: unknown): void }>
  >();

  constructor(
    /** Runs jobs in one transaction and returns one outcome per job, in order. */
    private readonly run: (account: Account, jobs: Job[]) => Promise<Outcome[]>,
    /** Upper bound on records per transaction, so one commit never grows without limit. */
    private readonly maxRecords = 4000,
  ) {}

  submit(account: Account, job: Job, size: number): Promise<Outcome> {
    return new Promise<Outcome>((resolve, reject) => {
      let queue = this.queues.get(account.id);
      const idle = queue === undefined;
      if (!queue) {
        queue = [];
        this.queues.set(account.id, queue);
      }
      queue.push({ job, size, resolve, reject });
      if (idle) void this.drain(account);
    });
  }

  private async drain(account: Account): Promise<void> {
    const queue = this.queues.get(account.id);
    if (!queue) return;
    while (queue.length > 0) {
      let records = 0;
      let n = 0;
      while (n < queue.length && (n === 0 || records + (queue[n]?.size ?? 0) <= this.maxRecords)) {
        records += queue[n]?.size ?? 0;
        n++;
      }
      const group = queue.splice(0, n);
      try {
        const outcomes = await this.run(
          account,
          group.map((g) => g.job),
        );
        for (const [i, g] of group.entries()) g.resolve(outcomes[i] as Outcome);
      } catch (error) {
        for (const g of group) g.reject(error);
      }
    }
    this.queues.delete(account.id);
  }
}
