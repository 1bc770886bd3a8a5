import { describe, expect, it } from "vitest";
import { TurnBatch } from "./turn-batch.js";

/** A batch that doubles numbers and records each call it gets, together and alone. */
function doubling(limit = 100) {
  const calls: Array<number[] | number> = [];
  const batch = new TurnBatch<number, number>(
    async (queries) => {
      calls.push(queries);
      return queries.map((q) => q * 2);
    },
    async (query) => {
      calls.push(query);
      return query * 2;
    },
    limit,
  );
  return { batch, calls };
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("TurnBatch", () => {
  it("answers the look-ups of one turn with one call, each with its own answer, in the order asked", async () => {
    const { batch, calls } = doubling();
    const answers = await Promise.all([3, 1, 2, 3].map((q) => batch.get(q)));
    expect(answers).toEqual([6, 2, 4, 6]);
    expect(calls).toEqual([[3, 1, 2, 3]]);
  });

  it("asks a look-up alone in its turn by itself, and a later turn's look-ups in another call", async () => {
    const { batch, calls } = doubling();
    const first = batch.get(1);
    await nextTurn();
    const second = [batch.get(2), batch.get(3)];
    expect(await Promise.all([first, ...second])).toEqual([2, 4, 6]);
    expect(calls).toEqual([1, [2, 3]]);
  });

  it("puts at most `limit` look-ups into one call", async () => {
    const { batch, calls } = doubling(3);
    const answers = await Promise.all([1, 2, 3, 4, 5, 6, 7].map((q) => batch.get(q)));
    expect(answers).toEqual([2, 4, 6, 8, 10, 12, 14]);
    expect(calls).toEqual([[1, 2, 3], [4, 5, 6], 7]);
  });

  it("asks each look-up alone when the turn's call fails, thrown or rejected, and fails only those that fail alone", async () => {
    for (const failure of ["throw", "reject"] as const) {
      const alone: number[] = [];
      const batch = new TurnBatch<number, number>(
        (queries) => {
          if (failure === "throw") throw new Error(`together ${queries}`);
          return Promise.reject(new Error(`together ${queries}`));
        },
        async (query) => {
          alone.push(query);
          if (query < 0) throw new Error(`bad ${query}`);
          return query;
        },
        10,
      );
      const settled = await Promise.allSettled([1, -2, 3].map((q) => batch.get(q)));
      expect(settled).toEqual([
        { status: "fulfilled", value: 1 },
        { status: "rejected", reason: new Error("bad -2") },
        { status: "fulfilled", value: 3 },
      ]);
      expect(alone).toEqual([1, -2, 3]);
    }
  });

  it("fails a lone look-up that fails alone, and goes on answering later turns", async () => {
    const batch = new TurnBatch<number, number>(
      async (queries) => queries,
      (query) => {
        if (query < 0) throw new Error(`bad ${query}`);
        return Promise.resolve(query);
      },
      10,
    );
    await expect(batch.get(-1)).rejects.toThrow("bad -1");
    expect(await Promise.all([batch.get(5), batch.get(6)])).toEqual([5, 6]);
  });
});
