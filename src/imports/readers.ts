/**
 * Streaming readers of an import file: CSV rows (csv-parse) and NDJSON lines, in constant memory whatever the file
 * size. Each yields rows numbered from 1 (the CSV header is row 0), with the bytes read so far for progress.
 *
 * A row the reader can still delimit but not use (an NDJSON line over the limit, a CSV row with the wrong number of
 * cells) is handed on to be refused like any bad row. What cannot be delimited any more (broken CSV quoting, a CSV
 * record over the limit, a failing disk) is a ReadError: the import stops there, `failed`, with the rows before it
 * applied (SEMANTICS §11 Imports).
 */

import { isUtf8 } from "node:buffer";
import type { Readable } from "node:stream";
import { Parser } from "csv-parse";
import { Utf8Records } from "./utf8-check.js";

export interface SourceRow {
  /** 1-based data row (CSV: after the header; NDJSON: the line number). */
  row: number;
  /** CSV: the row's cells; NDJSON: the line. */
  data: string[] | string;
  /** Bytes of the file consumed when the row was read (approximate for CSV: the parser reads ahead). */
  bytesRead: number;
  /** Set when the reader could delimit the row but it is unusable (an over-long line, bytes that are not UTF-8). */
  problem?: string;
  /** CSV: the index of the cell the problem is in, when one is. */
  problemCell?: number;
}

export class ReadError extends Error {}

/** Longest CSV record or NDJSON line: far above any valid record (documents are ≤ 64 KB, properties ≤ 512 chars). */
export const MAX_ROW_BYTES = 1024 * 1024;

/**
 * Most cells one CSV row may have (the header included): a record holds at most 256 custom properties (and the
 * handle, system and `.operation` columns beside them), so a wider file cannot be a valid import. Checked as each
 * row is read, before any record is built from it: a header of 100k columns used to become 1,000-row batches of
 * 100k-key records (gigabytes) and crash the server, again at every restart as the import resumed.
 */
export const MAX_CSV_CELLS = 1024;

/** How much of a read the CSV parser gets at once, so that the rows waiting to be taken stay few. */
const PARSE_SLICE_BYTES = 64 * 1024;

/** csv-parse's push parser, under its stream class: records come out synchronously, in order, before any error. */
interface PushParser {
  api: {
    parse(
      buf: Buffer | undefined,
      end: boolean,
      push: (record: string[]) => void,
      close: () => void,
    ): Error | undefined;
  };
  info: { bytes: number };
  /** The cells of the record being read, complete so far (read only to report an over-long record). */
  state?: { record?: unknown };
}

/**
 * CSV: the header first (row 0), then the data rows. The parser is driven chunk by chunk rather than piped: as a
 * stream, an error at the end of a chunk would destroy it and drop the rows parsed before the error.
 */
export async function* readCsv(
  stream: Readable,
  maxRowBytes = MAX_ROW_BYTES,
  maxCells = MAX_CSV_CELLS,
): AsyncGenerator<SourceRow> {
  const parser = new Parser({
    bom: true,
    relax_column_count: true,
    relax_quotes: true,
    skip_empty_lines: true,
    max_record_size: maxRowBytes,
  }) as unknown as PushParser;
  let row = 0;
  const records: SourceRow[] = [];
  // Null for a UTF-16 file (csv-parse decodes it by its BOM): its bytes are not meant to be UTF-8.
  let utf8: Utf8Records | null = new Utf8Records();
  let offset = 0;
  let recordStart = 0;
  const push = (record: string[]) => {
    const end = parser.info.bytes;
    const source: SourceRow = { row: 0, data: record, bytesRead: end };
    const invalid = utf8?.invalid(recordStart, end);
    if (record.length > maxCells) tooWide(source, record, row + records.length === 0, maxCells);
    else if (invalid) notUtf8(source);
    recordStart = end;
    records.push(source);
  };
  const close = () => undefined;
  const drain = function* (): Generator<SourceRow> {
    for (const record of records) {
      record.row = row++;
      yield record;
    }
    records.length = 0;
  };
  const fail = (e: Error) => {
    if ((e as { code?: string }).code === "CSV_MAX_RECORD_SIZE") return tooLong();
    return new ReadError(`the CSV could not be read after row ${Math.max(row - 1, 0)}: ${e.message}`);
  };
  /**
   * csv-parse cannot go on after a record over the limit (its skip_records_with_error drops the rest of the read
   * it was given), and without a limit it would hold the whole record. So the import stops here, but the record is
   * still a row of the report, with the cells read before the long one (its handle, for redaction), and the message
   * says what happened in the product's words.
   */
  const tooLong = () => {
    const cells = parser.state?.record;
    const data = Array.isArray(cells) ? cells.filter((c): c is string => typeof c === "string") : [];
    const problem = `the record is longer than ${maxRowBytes} bytes, the limit of one CSV record`;
    records.push({ row: 0, data, bytesRead: parser.info.bytes, problem });
    return new ReadError(
      `row ${row + records.length - 1} is longer than ${maxRowBytes} bytes, the limit of one CSV record: the rows after it cannot be told apart reliably, so the import stops there (the rows before it are applied)`,
    );
  };
  try {
    for await (const data of stream as AsyncIterable<Buffer | string>) {
      const chunk = typeof data === "string" ? Buffer.from(data) : data;
      if (offset === 0 && chunk[0] === 0xff && chunk[1] === 0xfe) utf8 = null;
      utf8?.read(chunk, offset);
      offset += chunk.length;
      // Parsed a slice at a time: the rows of a whole 1 MB read (≈ 12k of B4's) held at once were ≈ 5 MB of heap.
      for (let start = 0; start < chunk.length; start += PARSE_SLICE_BYTES) {
        const error = parser.api.parse(chunk.subarray(start, start + PARSE_SLICE_BYTES), false, push, close);
        const failure = error && fail(error);
        yield* drain();
        if (failure) throw failure;
      }
    }
  } catch (e) {
    if (e instanceof ReadError) throw e;
    throw new ReadError(`the file could not be read after row ${Math.max(row - 1, 0)}: ${(e as Error).message}`);
  } finally {
    stream.destroy();
  }
  const error = parser.api.parse(undefined, true, push, close);
  const last = records[records.length - 1];
  // The file ended inside a character: the last record's final bytes are not UTF-8.
  if (utf8?.cutAtEnd && last && last.problem === undefined) notUtf8(last);
  const failure = error && fail(error);
  yield* drain();
  if (failure) throw failure;
}

/** Marks a CSV row whose bytes are not UTF-8, naming the first cell where they became U+FFFD. */
function notUtf8(source: SourceRow): void {
  source.problem =
    "the row is not valid UTF-8: declare the file's charset (Content-Type: text/csv; charset=windows-1252, or ?charset=)";
  const cell = (source.data as string[]).findIndex((c) => c.includes("\uFFFD"));
  if (cell >= 0) source.problemCell = cell;
}

/**
 * A row of more cells than any record can use: only its first `maxCells` are kept (for the report; the header's
 * refusal fails the import), and the problem names the count and the limit.
 */
function tooWide(source: SourceRow, record: string[], header: boolean, maxCells: number): void {
  const count = record.length;
  record.length = maxCells;
  source.problem = header
    ? `the header has ${count} columns, more than ${maxCells}, the most a CSV import may have (a record holds at most 256 custom properties)`
    : `the row has ${count} cells, more than ${maxCells}, the most a CSV row may have: only its first ${maxCells} are kept in this report`;
}

const NEWLINE = 0x0a;
const NOT_UTF8_LINE =
  "the line is not valid UTF-8: declare the file's charset (Content-Type: application/x-ndjson; charset=windows-1252, or ?charset=)";

/** How much of an over-long NDJSON line the failure report keeps. */
export const LONG_LINE_HEAD_BYTES = 200;

/**
 * NDJSON: one row per non-blank line; a line over the limit is skipped to its end and reported as a problem. Its row
 * keeps only the line's first 200 bytes (cut at a character) and `…`: the line cannot be uploaded again as it is
 * anyway (it is over the limit), and a report holding megabytes per row would be the larger harm. The problem says
 * so, with the line's length and number, so the line can be found in the original file.
 */
export async function* readNdjson(stream: Readable, maxRowBytes = MAX_ROW_BYTES): AsyncGenerator<SourceRow> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let tooLong = false;
  /** Bytes of the current line, counted on past the limit (the part kept is `pending`), and its last byte. */
  let lineBytes = 0;
  let lastByte = -1;
  let line = 0;
  let consumed = 0;
  const finish = (bytesRead: number): SourceRow | null => {
    line++;
    // Without the CR of a CRLF line end, as the line is read.
    const length = lineBytes - (lastByte === 0x0d ? 1 : 0);
    lineBytes = 0;
    lastByte = -1;
    if (tooLong) {
      // A character cut by the 200-byte mark is left out rather than shown as U+FFFD.
      const head = new TextDecoder().decode(Buffer.concat(pending), { stream: true });
      pending = [];
      pendingBytes = 0;
      tooLong = false;
      return {
        row: line,
        data: `${head}…`,
        bytesRead,
        problem: `line ${line} is ${length} bytes, longer than ${maxRowBytes} bytes, the limit of one NDJSON line: it is not read, and this report shows only its first ${LONG_LINE_HEAD_BYTES} bytes followed by "…"`,
      };
    }
    const bytes = Buffer.concat(pending, pendingBytes);
    let text = bytes.toString("utf8");
    pending = [];
    pendingBytes = 0;
    if (text.endsWith("\r")) text = text.slice(0, -1);
    if (line === 1 && text.startsWith("\uFEFF")) text = text.slice(1);
    if (text.trim() === "") return null;
    if (!isUtf8(bytes)) return { row: line, data: text, bytesRead, problem: NOT_UTF8_LINE };
    return { row: line, data: text, bytesRead };
  };
  const keep = (part: Buffer) => {
    lineBytes += part.length;
    if (part.length > 0) lastByte = part[part.length - 1] as number;
    if (tooLong) return;
    if (pendingBytes + part.length > maxRowBytes) {
      // Keep only the start of an over-long line, for the failure report (a copy: the rest can go now).
      const head = Buffer.concat([...pending, part.subarray(0, LONG_LINE_HEAD_BYTES)]);
      pending = [Buffer.from(head.subarray(0, LONG_LINE_HEAD_BYTES))];
      pendingBytes = (pending[0] as Buffer).length;
      tooLong = true;
      return;
    }
    pending.push(part);
    pendingBytes += part.length;
  };
  try {
    for await (const data of stream as AsyncIterable<Buffer | string>) {
      const chunk = typeof data === "string" ? Buffer.from(data) : data;
      let start = 0;
      for (;;) {
        const nl = chunk.indexOf(NEWLINE, start);
        if (nl < 0) break;
        keep(chunk.subarray(start, nl));
        const row = finish(consumed + nl + 1);
        if (row) yield row;
        start = nl + 1;
      }
      keep(chunk.subarray(start));
      consumed += chunk.length;
    }
  } catch (e) {
    throw new ReadError(`the file could not be read after line ${line}: ${(e as Error).message}`);
  } finally {
    stream.destroy();
  }
  if (pendingBytes > 0 || tooLong) {
    const row = finish(consumed);
    if (row) yield row;
  }
}
