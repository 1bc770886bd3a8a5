import { describe, expect, it } from "vitest";
import { TurnBatch } from "./turn-batch.js";

/** A batch that doubles numbers and records each call it gets. */
function doubling(limit = 100) {
  const calls: number[][] = [];
  const batch = new TurnBatch<number, number>(async (queries) => {
    calls.push(queries);
    return queries.map((q) => q * 2);
  }, limit);
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

  it("starts another call for look-ups of a later turn", async () => {
    const { batch, calls } = doubling();
    const first = batch.get(1);
    await nextTurn();
    const second = batch.get(2);
    expect(await Promise.all([first, second])).toEqual([2, 4]);
    expect(calls).toEqual([[1], [2]]);
  });

  it("puts at most `limit` look-ups into one call", async () => {
    const { batch, calls } = doubling(3);
    const answers = await Promise.all([1, 2, 3, 4, 5, 6, 7].map((q) => batch.get(q)));
    expect(answers).toEqual([2, 4, 6, 8, 10, 12, 14]);
    expect(calls).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
  });

  it("fails only the look-up whose own answer fails", async () => {
    const batch = new TurnBatch<number, number>(
      async (queries) => queries.map((q) => (q < 0 ? Promise.reject(new Error(`bad ${q}`)) : q)),
      10,
    );
    const settled = await Promise.allSettled([1, -2, 3].map((q) => batch.get(q)));
    expect(settled).toEqual([
      { status: "fulfilled", value: 1 },
      { status: "rejected", reason: new Error("bad -2") },
      { status: "fulfilled", value: 3 },
    ]);
  });

  it("fails every look-up of a call that fails, thrown or rejected, and goes on answering later turns", async () => {
    let mode: "throw" | "reject" | "answer" = "throw";
    const batch = new TurnBatch<number, number>((queries) => {
      if (mode === "throw") throw new Error("thrown");
      if (mode === "reject") return Promise.reject(new Error("rejected"));
      return Promise.resolve(queries);
    }, 10);
    await expect(Promise.all([batch.get(1), batch.get(2)])).rejects.toThrow("thrown");
    mode = "reject";
    const settled = await Promise.allSettled([batch.get(1), batch.get(2)]);
    expect(settled.map((s) => s.status)).toEqual(["rejected", "rejected"]);
    mode = "answer";
    expect(await batch.get(5)).toBe(5);
  });
});
