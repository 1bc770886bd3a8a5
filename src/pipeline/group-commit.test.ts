import { describe, expect, it } from "vitest";
import type { Account } from "../engine/types.js";
import { GroupCommit } from "./group-commit.js";

const account = { id: "a" } as Account;

describe("GroupCommit", () => {
  it("runs a lone job at once, then groups the jobs that arrived meanwhile into one run, answering each its own", async () => {
    const runs: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const gc = new GroupCommit<number, string>(async (_a, jobs) => {
      runs.push(jobs);
      if (runs.length === 1) await gate;
      return jobs.map((j) => `done ${j}`);
    });
    const first = gc.submit(account, 1, 1);
    const rest = [gc.submit(account, 2, 1), gc.submit(account, 3, 1), gc.submit(account, 4, 1)];
    release();
    expect(await first).toBe("done 1");
    expect(await Promise.all(rest)).toEqual(["done 2", "done 3", "done 4"]);
    expect(runs).toEqual([[1], [2, 3, 4]]);
  });

  it("caps a group by records, and a failed run fails only the jobs it held", async () => {
    const runs: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const gc = new GroupCommit<number, number>(async (_a, jobs) => {
      runs.push(jobs);
      if (runs.length === 1) await gate;
      if (jobs.includes(2)) throw new Error("boom");
      return jobs;
    }, 10);
    const p1 = gc.submit(account, 1, 6);
    const p2 = gc.submit(account, 2, 6);
    const p3 = gc.submit(account, 3, 6);
    release();
    expect(await p1).toBe(1);
    await expect(p2).rejects.toThrow("boom");
    expect(await p3).toBe(3);
    expect(runs).toEqual([[1], [2], [3]]);
  });
});
