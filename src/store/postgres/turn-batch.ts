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
  private waiting: Array<{
    query: Query;
    resolve(answer: Answer | Promise<Answer>): void;
    reject(error: unknown): void;
  }> = [];
  private scheduled = false;

  /**
   * `answer` gets the queries in the order they were asked and returns one answer for each, in the same order; an
   * answer that is a promise settles its own query only (a failure of one look-up must not fail the others), and a
   * rejection of the whole call fails them all. At most `limit` go into one call; more start another call at once.
   */
  constructor(
    private readonly answer: (queries: Query[]) => Promise<Array<Answer | Promise<Answer>>>,
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
    let answers: Promise<Array<Answer | Promise<Answer>>>;
    try {
      answers = this.answer(taken.map((w) => w.query));
    } catch (error) {
      answers = Promise.reject(error);
    }
    answers.then(
      (found) => {
        for (let i = 0; i < taken.length; i++) taken[i]!.resolve(found[i]!);
      },
      (error: unknown) => {
        for (const w of taken) w.reject(error);
      },
    );
  }
}
