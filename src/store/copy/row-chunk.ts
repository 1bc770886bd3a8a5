/**
 * Rows on their way to one PostgreSQL table, inserted with one multi-row statement per chunk whose rows travel as one
 * JSON document: `INSERT … SELECT … FROM jsonb_to_recordset($1::jsonb) AS r(c0 text, c1 jsonb, …)`, as the PostgreSQL
 * adapter sends its rows. A statement whose text never depends on the data (prepared once per table), at a fraction
 * of the cost per row of a row-at-a-time INSERT. JSON rather than one array parameter per column: the JSON that SQLite
 * holds (states, event properties) goes into the document as it is, where an array parameter has node-postgres escape
 * every quote of it (measured: 300 ms of the copy's CPU per 5,000 profile states, against a few).
 *
 * A chunk is full at CHUNK_ROWS rows or CHUNK_BYTES of JSON, whichever comes first, which bounds the copy's memory
 * whatever the rows hold.
 */
import type pg from "pg";
import { storableJsonText } from "../postgres/postgres-imports.js";
import { CopyError } from "./copy-error.js";
import type { Column } from "./tables.js";

const CHUNK_ROWS = 5_000;
const CHUNK_BYTES = 8 * 1024 * 1024;

/**
 * JSON.stringify writes U+0000 and unpaired surrogates as `\u` escapes, and jsonb refuses exactly those (as the
 * PostgreSQL adapter's jsonbSafe says). The engine refuses them for both stores, so a SQLite row holding one was not
 * written by Portrait's pipeline.
 */
const JSONB_UNSAFE = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f])/i;

/** Text a message shows quoted (JSON) rather than raw: control characters and surrogates. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what a message must not print raw
const UNPRINTABLE = /[\u0000-\u001f]|[\uD800-\uDFFF]/;
/** Text that PostgreSQL cannot hold: U+0000, or a UTF-16 surrogate without its other half. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is what PostgreSQL cannot hold
const UNSTORABLE_TEXT = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The INSERT of one chunk of `table` (see the header); an `identity` column is given its copied values. */
export function insertStatement(table: string, columns: readonly Column[], identity?: string): string {
  const names = columns.map((c) => c.name).join(", ");
  const fields = columns.map((_, i) => `c${i}`).join(", ");
  const record = columns.map((c, i) => `c${i} ${c.type}`).join(", ");
  return (
    `INSERT INTO ${table} (${names})${identity ? " OVERRIDING SYSTEM VALUE" : ""}` +
    ` SELECT ${fields} FROM jsonb_to_recordset($1::jsonb) AS r(${record})`
  );
}

export class RowChunk {
  /** Each row as a JSON object, `{"c0": …, "c1": …}`. */
  private readonly rowsJson: string[] = [];
  private bytes = 0;

  constructor(
    readonly table: string,
    private readonly columns: readonly Column[],
    /** How many leading columns name a row in a message. */
    private readonly key: number,
    /** jsonb PostgreSQL cannot store becomes U+FFFD (failure reports, as the adapter stores them) instead of failing. */
    private readonly sanitise = false,
  ) {}

  get rows(): number {
    return this.rowsJson.length;
  }

  /** Adds a row (its values in `columns` order, as SQLite gave them). */
  add(row: readonly unknown[]): void {
    let json = "{";
    this.columns.forEach((column, i) => {
      json += `${i === 0 ? "" : ","}"c${i}":${this.value(row, i, column)}`;
    });
    json += "}";
    this.rowsJson.push(json);
    this.bytes += json.length;
  }

  /** A value as JSON: SQLite's JSON text as it is, 0/1 as a boolean, anything else as JSON.stringify writes it. */
  private value(row: readonly unknown[], i: number, column: Column): string {
    const v = row[i] ?? null;
    if (v === null) return "null";
    if (column.type === "jsonb") {
      const json = v as string;
      return json.includes("\\u") && JSONB_UNSAFE.test(json) ? this.storable(json, row, column) : json;
    }
    if (column.type === "boolean") return v === 0 ? "false" : "true";
    if (typeof v === "string" && UNSTORABLE_TEXT.test(v)) throw this.unstorable(row, column);
    return JSON.stringify(v);
  }

  private storable(json: string, row: readonly unknown[], column: Column): string {
    if (this.sanitise) return storableJsonText(json);
    throw this.unstorable(row, column);
  }

  private unstorable(row: readonly unknown[], column: Column): CopyError {
    return new CopyError(
      "UNSTORABLE_ROW",
      `${this.table} ${describeRow(row, this.key)}: its ${column.name} holds the character U+0000 or an unpaired ` +
        "UTF-16 surrogate, which PostgreSQL cannot store (Portrait refuses such text, so the row was not written by " +
        "it): correct or delete that row in the SQLite store, then copy again; nothing was copied",
    );
  }

  get full(): boolean {
    return this.rows >= CHUNK_ROWS || this.bytes >= CHUNK_BYTES;
  }

  /** The chunk's INSERT, as a named statement (each table's is parsed and planned once). */
  statement(text: string): pg.QueryConfig {
    return { name: `copy_${this.table}`, text, values: [`[${this.rowsJson.join(",")}]`] };
  }
}

/** A row's key columns as a message shows them: `default / 3f2a…`, a value with control characters as JSON. */
export function describeRow(row: readonly unknown[], key: number): string {
  return row
    .slice(0, key)
    .map((v) => (typeof v === "string" && UNPRINTABLE.test(v) ? JSON.stringify(v) : String(v)))
    .join(" / ");
}
