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

/** Rows per page at most, when they are small. */
const PAGE = 500;
/**
 * Stored bytes (data and description) per page at most, besides the first row of a page, which is read whatever its
 * size (a refused row is at most about 1 MB of data, readers.ts). 500 rows of 1 MB used to be read and written as
 * one string per download: 800 MB of heap for one slow client, 3.9 GB for eight.
 */
export const REPORT_PAGE_BYTES = 1024 * 1024;
/** Text handed to the response at once: a page is cut into pieces of about this size. */
const PIECE_CHARS = 64 * 1024;

/**
 * Streams the report page by page from the store, a page bounded by bytes as well as rows, and reads the next page
 * only once the client has taken what came before (the stream holds one piece at a time).
 */
export function failureReport(store: ImportStore, row: ImportRow, pageBytes = REPORT_PAGE_BYTES): Readable {
  const header = row.format === "csv" ? (row.header ?? []) : ["Line"];
  const width = header.length;
  async function* lines(): AsyncGenerator<string> {
    yield csvLine([...header, "Failure Description"]);
    let after = 0;
    for (;;) {
      // The sizes first (the rows stay in the store), then as many rows as fit in pageBytes, at least one.
      const sizes = await store.failureSizes(row.accountId, row.id, after, PAGE);
      if (sizes.length === 0) return;
      let take = 0;
      let bytes = 0;
      while (take < sizes.length && (take === 0 || bytes + (sizes[take]?.bytes ?? 0) <= pageBytes)) {
        bytes += sizes[take]?.bytes ?? 0;
        take++;
      }
      const page = await store.listFailures(row.accountId, row.id, after, take);
      if (page.length === 0) return;
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
        if (text.length >= PIECE_CHARS) {
          yield text;
          text = "";
        }
      }
      if (text) yield text;
      if (sizes.length < PAGE && take === sizes.length) return;
    }
  }
  // One piece waits in the stream at most: the generator runs on only as the response takes what it holds.
  return Readable.from(lines(), { highWaterMark: 1 });
}
