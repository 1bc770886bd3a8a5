/**
 * A step of an import holds at most 1,000 rows, and also at most so many characters and cells of text
 * (RunnerOptions.batchChars / batchCells): wide or long rows are applied a few at a time, so that a batch of 1,000
 * rows of about 1 MB (each with the record built from it) never sits in memory at once (a 60 MB file of wide rows
 * took 2.5 GB before, a 200 MB one ran the server out of memory).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { ImportRow } from "../store/import-store.js";
import { queuedImportRow } from "../test-support/imports.js";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { ImportRunner, type RunnerOptions } from "./runner.js";

let harness: Harness | null = null;
const dirs: string[] = [];
afterEach(async () => {
  await harness?.close();
  harness = null;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Runs one import of `text` and returns the rows of each step, as the runner reports them. */
async function steps(
  text: string,
  format: "csv" | "ndjson",
  opts: Partial<RunnerOptions>,
  over: Partial<ImportRow> = {},
): Promise<number[]> {
  harness = await makeHarness();
  const h = harness;
  const dataDir = mkdtempSync(path.join(tmpdir(), "portrait-batch-bounds-"));
  dirs.push(dataDir);
  mkdirSync(path.join(dataDir, "imports"));
  const id = "e".repeat(32);
  writeFileSync(path.join(dataDir, "imports", id), text);
  await h.store.imports.insertImport(
    queuedImportRow(h.account.id, id, { format, bytes: Buffer.byteLength(text), ...over }),
  );
  const seen: number[] = [];
  const runner = new ImportRunner(h.portrait, {
    dataDir,
    workerId: "batch-bounds",
    observer: { rows: (_kind, processed, failed) => seen.push(processed + failed), finished: () => undefined },
    ...opts,
  });
  runner.kick();
  await expect.poll(async () => (await h.store.imports.getImport(h.account.id, id))?.status).toBe("done");
  await runner.stop();
  return seen;
}

describe("import steps are cut by size as well as by rows", () => {
  it("cuts a step once its rows hold the characters allowed, by default 4 Mi", async () => {
    const rows = Array.from({ length: 10 }, (_, i) => `p${i}@x.io,${"n".repeat(300)}`);
    expect(await steps(`Email,Note\n${rows.join("\n")}\n`, "csv", { batchChars: 1000 })).toEqual([4, 4, 2]);
    // 12 rows of 400k characters: 11 steps' worth of 1,000 rows before, 2 steps now.
    const big = Array.from({ length: 12 }, (_, i) => `b${i}@x.io,${"n".repeat(400_000)}`);
    expect(await steps(`Email,Note\n${big.join("\n")}\n`, "csv", {})).toEqual([11, 1]);
  });

  it("cuts a step once its rows hold the cells allowed, by default 256k", async () => {
    const header = ["Email", ...Array.from({ length: 999 }, (_, i) => `c${i}`)].join(",");
    const rows = Array.from({ length: 300 }, (_, i) => [`w${i}@x.io`, ...Array(999).fill("")].join(","));
    expect(await steps(`${header}\n${rows.join("\n")}\n`, "csv", {})).toEqual([263, 37]);
    const lines = Array.from({ length: 5 }, (_, i) => JSON.stringify({ identity: { Email: `j${i}@x.io` } }));
    expect(await steps(`${lines.join("\n")}\n`, "ndjson", { batchCells: 2 })).toEqual([2, 2, 1]);
  });
});

describe("an SFTP column mapping", () => {
  it("renames only the columns it names: a column called constructor or toString is read as itself", async () => {
    const csv = "mail,constructor,toString\nmapped@x.io,1,2\n";
    expect(await steps(csv, "csv", {}, { options: { mapping: { mail: "Email" } } })).toEqual([1]);
    const h = harness as Harness;
    const row = await h.store.imports.getImport(h.account.id, "e".repeat(32));
    expect(row).toMatchObject({ status: "done", processed: 1, failed: 0 });
  });
});
