/**
 * Look-ups that arrive in one turn of the event loop, answered together by one statement.
 *
 * On PostgreSQL every statement is a message each way between node and a backend, and on a small machine those
 * messages, not the look-ups, are most of the work: a card by email costs the backend as much CPU for its round trip
 * as for its index probes (docs/performance.md, "PostgreSQL B5"). Requests that a server reads in one pass of its
 * event loop all ask before the next `setImmediate`, so their look-ups share one round trip; a look-up alone still
 * waits for nothing but the rest of its own turn.
 */
export class TurnBatch<Query, Answer> {
  private waiting: Array<{ query: Query; resolve(answer: Answer): void; reject(error: unknown): void }> = [];
  private scheduled = false;

  /**
   * `together` gets the queries of a turn in the order they were asked and returns one answer for each, in the same
   * order; at most `limit` go into one call, and more start another call at once. A query alone in its turn goes to
   * `alone` (its own statement is the cheaper one). When `together` fails, each of its queries goes to `alone`, so
   * that a failure fails only the queries that fail by themselves.
   */
  constructor(
    private readonly together: (queries: Query[]) => Promise<Answer[]>,
    private readonly alone: (query: Query) => Promise<Answer>,
    private readonly limit: number,
  ) {}

  get(query: Query): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      this.waiting.push({ query, resolve, reject });
      if (this.waiting.length >= this.limit) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    const taken = this.waiting;
    if (taken.length === 0) return;
    this.waiting = [];
    const eachAlone = () => {
      for (const w of taken) call(() => this.alone(w.query)).then(w.resolve, w.reject);
    };
    if (taken.length === 1) {
      eachAlone();
      return;
    }
    call(() => this.together(taken.map((w) => w.query))).then((answers) => {
      for (let i = 0; i < taken.length; i++) taken[i]!.resolve(answers[i]!);
    }, eachAlone);
  }
}

/** `fn()`, with a synchronous throw turned into a rejection. */
function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (error) {
    return Promise.reject(error);
  }
}
