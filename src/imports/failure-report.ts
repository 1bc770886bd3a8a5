/**
 * The failure report (API.md `GET /v1/imports/{id}/failures.csv`): the refused rows as they were read, plus a last
 * column `Failure Description`. CSV imports repeat their header; NDJSON imports have one column `Line` holding the
 * original line (an over-long one cut: readers.ts). Rows redacted after their person was deleted keep their place
 * with empty cells. A CSV row with fewer cells than the header is padded with empty cells; one with more shows the
 * header's columns, and its description quotes the cells beyond them.
 *
 * Cells are written back exactly as they were read (quoted where CSV needs it): the report is the user's own data,
 * and "fixing" a cell that looks like a spreadsheet formula would make the corrected file differ from the original.
 */
import { Readable } from "node:stream";
import type { ImportRow, ImportStore } from "../store/import-store.js";

export function csvCell(value: string): string {
  return /[",\r\n]/.test(value) || value !== value.trim() ? `"${value.replaceAll('"', '""')}"` : value;
}

export function csvLine(cells: readonly string[]): string {
  return `${cells.map(csvCell).join(",")}\r\n`;
}

const PAGE = 500;

/** Streams the report page by page from the store. */
export function failureReport(store: ImportStore, row: ImportRow): Readable {
  const header = row.format === "csv" ? (row.header ?? []) : ["Line"];
  const width = header.length;
  async function* lines(): AsyncGenerator<string> {
    yield csvLine([...header, "Failure Description"]);
    let after = 0;
    for (;;) {
      const page = await store.listFailures(row.accountId, row.id, after, PAGE);
      let text = "";
      for (const f of page) {
        const cells = f.data === null ? [] : typeof f.data === "string" ? [f.data] : [...f.data];
        let description = f.description;
        // Every description stays under `Failure Description`: a short row is padded with empty cells, and a long
        // row shows the header's columns while its description quotes the cells beyond them, so nothing read is lost
        // (the extra cells used to sit under `Failure Description`, pushing the description into a column with no
        // header).
        if (width > 0 && cells.length > width) {
          const beyond = cells.splice(width);
          description += `; the cells beyond the header: ${beyond.map((c) => JSON.stringify(c)).join(", ")}`;
        }
        while (cells.length < width) cells.push("");
        text += csvLine([...cells, description]);
        after = f.row;
      }
      if (text) yield text;
      if (page.length < PAGE) return;
    }
  }
  return Readable.from(lines());
}
