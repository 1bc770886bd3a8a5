/**
 * Rows on their way to one PostgreSQL table, gathered as column arrays and inserted with one multi-row statement per
 * chunk: `INSERT … SELECT … FROM unnest($1::text[], $2::bigint[], …)`, a statement whose text never depends on the
 * data (prepared once per table) and whose cost per row is a fraction of a row-at-a-time INSERT. A chunk is full at
 * CHUNK_ROWS rows or CHUNK_BYTES of text, whichever comes first, which bounds the copy's memory whatever the rows hold.
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

/** The INSERT of one chunk of `table` (see the header); `identity` columns are given their copied values. */
export function insertStatement(table: string, columns: readonly Column[], identity?: string): string {
  const arrays = columns.map((c, i) => `$${i + 1}::${c.type === "jsonb" ? "text" : c.type}[]`);
  const values = columns.map((c, i) => (c.type === "jsonb" ? `c${i}::jsonb` : `c${i}`));
  const names = columns.map((_, i) => `c${i}`);
  return (
    `INSERT INTO ${table} (${columns.map((c) => c.name).join(", ")})` +
    `${identity ? " OVERRIDING SYSTEM VALUE" : ""} SELECT ${values.join(", ")}` +
    ` FROM unnest(${arrays.join(", ")}) AS r(${names.join(", ")})`
  );
}

export class RowChunk {
  private readonly values: unknown[][];
  private bytes = 0;
  rows = 0;

  constructor(
    readonly table: string,
    private readonly columns: readonly Column[],
    /** How many leading columns name a row in a message. */
    private readonly key: number,
    /** jsonb PostgreSQL cannot store becomes U+FFFD (failure reports, as the adapter stores them) instead of failing. */
    private readonly sanitise = false,
  ) {
    this.values = columns.map(() => []);
  }

  /** Adds a row (its values in `columns` order, as SQLite gave them). */
  add(row: readonly unknown[]): void {
    this.columns.forEach((column, i) => {
      let v = row[i] ?? null;
      if (typeof v === "string") {
        this.bytes += v.length;
        if (column.type === "jsonb" && v.includes("\\u") && JSONB_UNSAFE.test(v)) v = this.storable(v, row, column);
      } else if (column.type === "boolean" && v !== null) {
        v = v !== 0;
      }
      (this.values[i] as unknown[]).push(v);
    });
    this.rows++;
  }

  private storable(json: string, row: readonly unknown[], column: Column): string {
    if (this.sanitise) return storableJsonText(json);
    throw new CopyError(
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
    return { name: `copy_${this.table}`, text, values: this.values };
  }
}

/** A row's key columns as a message shows them: `default / 3f2a…`. */
export function describeRow(row: readonly unknown[], key: number): string {
  return row
    .slice(0, key)
    .map((v) => String(v))
    .join(" / ");
}
