import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ImportStore } from "../../store/import-store.js";
import { FailureReports } from "./reports.js";

const dir = mkdtempSync(path.join(tmpdir(), "portrait-reports-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("failure report copies left by earlier versions", () => {
  it("are removed once, at start: only those a result file names as its report", async () => {
    const meta = new Map<string, string>();
    const reports = new FailureReports(
      {} as ImportStore,
      {
        getMeta: async (k) => meta.get(k) ?? null,
        setMeta: async (k, v) => void meta.set(k, v),
      },
      path.join(dir, ".reports"),
    );
    const sub = path.join(dir, "acct", "sub");
    mkdirSync(sub, { recursive: true });
    const result = { id: "imp1", status: "done", failuresFile: "crm.csv.failures.csv" };
    writeFileSync(path.join(sub, "crm.csv.result.json"), JSON.stringify(result));
    writeFileSync(path.join(sub, "crm.csv.failures.csv"), "Email,Failure Description\r\nsecret@x.io,…\r\n");
    writeFileSync(path.join(sub, "mine.failures.csv"), "a client's own file");
    expect(await reports.removeStaticCopies(dir)).toBe(1);
    expect(existsSync(path.join(sub, "crm.csv.failures.csv"))).toBe(false);
    expect(existsSync(path.join(sub, "mine.failures.csv"))).toBe(true);
    // Once: a file a client uploads later under that name is theirs.
    writeFileSync(path.join(sub, "crm.csv.failures.csv"), "uploaded later");
    expect(await reports.removeStaticCopies(dir)).toBe(0);
    expect(existsSync(path.join(sub, "crm.csv.failures.csv"))).toBe(true);
  });
});
