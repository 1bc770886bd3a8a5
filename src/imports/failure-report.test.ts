/**
 * The failure report streams (API.md `GET /v1/imports/{id}/failures.csv`): pages are bounded by the stored bytes of
 * their rows as well as by 500 rows, and the next page is read only once the reader took what came before, so one
 * download holds about a MB whatever its rows' sizes (500 rows of 1 MB were one 800 MB string per download).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ImportFailure, ImportStore } from "../store/import-store.js";
import { queuedImportRow } from "../test-support/imports.js";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { csvLine, failureReport, REPORT_PAGE_BYTES } from "./failure-report.js";

const stores = await storesUnderTest();

describe.each(stores)("failure report (%s)", (kind) => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness({}, kind);
  });
  afterAll(async () => {
    await h.close();
  });

  it("pages by bytes, reads a page only once the previous one is taken, and keeps every row in order", async () => {
    const id = "f".repeat(32);
    await h.store.imports.insertImport(queuedImportRow(h.account.id, id, { format: "csv" }));
    expect(await h.store.imports.claimImport(h.account.id, id, "w", 1000, 0)).not.toBeNull();
    await h.store.imports.setHeader(h.account.id, id, ["Email", "Note"]);
    // 600 small rows, then 12 rows of 300 KB, then 3 small ones.
    const failures: ImportFailure[] = [];
    for (let row = 1; row <= 615; row++) {
      const note = row > 600 && row <= 612 ? "n".repeat(300_000) : `small ${row}`;
      failures.push({ row, data: [`r${row}@x.io`, note], description: `INVALID_VALUE: row ${row}`, handles: [] });
    }
    const progress = { rows: 615, processed: 0, failed: 615, bytesRead: 1, lastRow: 615 };
    expect(await h.store.imports.saveProgress(h.account.id, id, "w", progress, failures, 2000)).toBe(true);
    const row = await h.store.imports.getImport(h.account.id, id);
    if (!row) throw new Error("no import");

    const real = h.store.imports;
    const pages: number[] = [];
    const observed = new Proxy(real, {
      get(target, key) {
        const value = Reflect.get(target, key, target);
        if (key === "listFailures") {
          return (...args: Parameters<ImportStore["listFailures"]>) => {
            pages.push(args[3]);
            return real.listFailures(...args);
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const stream = failureReport(observed, row);
    const chunks: string[] = [];
    const pagesRead: number[] = [];
    for await (const chunk of stream) {
      chunks.push(String(chunk));
      pagesRead.push(pages.length);
    }
    const expected =
      csvLine(["Email", "Note", "Failure Description"]) +
      failures.map((f) => csvLine([...(f.data as string[]), f.description])).join("");
    expect(chunks.join("")).toBe(expected);
    // The small rows come 500 to a page; the large ones three at a time (3 × 300 KB fit in 1 MB, 4 do not), with
    // the small rows before or after them that still fit.
    expect(pages).toEqual([500, 103, 3, 3, 6]);
    expect(Math.floor(REPORT_PAGE_BYTES / 300_000)).toBe(3);
    // Lazily: the stream reads at most one piece ahead of its reader, so each page is read only when the reader has
    // taken (nearly) all of the one before: when the header arrives at most one page was read, and so on.
    expect(pagesRead[0]).toBeLessThanOrEqual(1);
    expect(pagesRead[1]).toBeLessThanOrEqual(2);
    expect(pagesRead.at(-1)).toBe(pages.length);
    expect(pagesRead.findIndex((n) => n === pages.length)).toBeGreaterThanOrEqual(chunks.length - 5);
    // No piece holds more than one large row (64 KB pieces): the stream never holds a page as one string.
    expect(Math.max(...chunks.map((c) => c.length))).toBeLessThan(300_000 + 64 * 1024);
  });
});
