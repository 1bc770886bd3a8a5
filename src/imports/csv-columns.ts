/**
 * CSV headers and cells (API.md Imports, SEMANTICS §11 "CSV cells"): a header is a key with an optional type in
 * angle brackets (`Score<number>`, `Purchase Date<dd/MM/yyyy>`), or `<key>.operation` naming the operation of the
 * key's column. A cell becomes the JSON value an ingest record would carry, so that the ordinary record parser and
 * engine validate it exactly as they validate the live API.
 */
import { PortraitError } from "../engine/errors.js";
import { DATE_TEXT_FORMS, readDateText } from "../engine/properties/values.js";
import type { ValueType } from "../engine/types.js";
import { compileDatePattern, type DatePattern, PatternError, parseWithPattern } from "./ldml-date.js";

export type CellType =
  | { kind: "string" }
  | { kind: "number" }
  | { kind: "boolean" }
  | { kind: "date" }
  | { kind: "pattern"; pattern: DatePattern }
  | { kind: "multi" }
  | { kind: "json" };

export interface Column {
  index: number;
  /** The header as read (after an SFTP manifest's `columns` mapping: `Points<number>`). */
  header: string;
  /**
   * The column as the file's header names it, for messages (over SFTP with a mapping, the source column: `points`).
   * Refusals quote the column the user sees in the file and in the failure report's header.
   */
  shown: string;
  /** The property key (or the handle / event field) the column feeds. */
  key: string;
  /** The type the header declares, or null: the key's registered type, else string. */
  type: CellType | null;
  /** Set on `<key>.operation` columns. */
  operationOf?: string;
}

/** A header row that cannot be read: the import fails as a file that cannot be read (API.md `failed`). */
export class HeaderError extends Error {}

const TYPE_NAMES: Record<string, CellType> = {
  string: { kind: "string" },
  text: { kind: "string" },
  number: { kind: "number" },
  integer: { kind: "number" },
  float: { kind: "number" },
  double: { kind: "number" },
  boolean: { kind: "boolean" },
  bool: { kind: "boolean" },
  date: { kind: "date" },
  datetime: { kind: "date" },
  multi: { kind: "multi" },
  "multi-value": { kind: "multi" },
  list: { kind: "multi" },
  json: { kind: "json" },
  object: { kind: "json" },
};

const TYPED = /^(.*?)\s*<([^<>]+)>$/;

/** Header text as read: trimmed, the first column without a BOM. */
const headerText = (raw: string, index: number) => (index === 0 ? raw.replace(/^\uFEFF/, "").trim() : raw.trim());

/**
 * The columns of a header row. `source` is the header as the file has it when `header` is the result of an SFTP
 * manifest's mapping (same length); messages name the source column.
 */
export function parseHeader(header: string[], source: string[] = header): Column[] {
  const seen = new Map<string, string>();
  return header.map((raw, index) => {
    const text = headerText(raw, index);
    const shown = headerText(source[index] ?? raw, index);
    if (text === "") throw new HeaderError(`column ${index + 1} has an empty header`);
    const twice = seen.get(text);
    if (twice !== undefined) {
      throw new HeaderError(
        twice === shown
          ? `column ${index + 1}: the header ${JSON.stringify(text)} appears twice`
          : `column ${index + 1}: ${JSON.stringify(shown)} and ${JSON.stringify(twice)} are both read as ${JSON.stringify(text)}`,
      );
    }
    seen.set(text, shown);
    if (text.endsWith(".operation")) {
      const key = text.slice(0, -".operation".length);
      if (key === "") throw new HeaderError(`column ${index + 1}: ".operation" needs a key before it`);
      return { index, header: text, shown, key: text, type: null, operationOf: key };
    }
    const m = TYPED.exec(text);
    if (!m) {
      // Half a type annotation is a typo, not a key to create: "Score<number" would otherwise become a property.
      if (text.includes("<") || text.endsWith(">")) {
        throw new HeaderError(`column ${index + 1}: ${JSON.stringify(text)} is not Key<type> nor a plain key`);
      }
      return { index, header: text, shown, key: text, type: null };
    }
    const key = (m[1] as string).trim();
    const spec = (m[2] as string).trim();
    if (key === "") throw new HeaderError(`column ${index + 1}: ${JSON.stringify(text)} has a type but no key`);
    return { index, header: text, shown, key, type: cellType(spec, index) };
  });
}

function cellType(spec: string, index: number): CellType {
  const named = TYPE_NAMES[spec.toLowerCase()];
  if (named) return named;
  try {
    return { kind: "pattern", pattern: compileDatePattern(spec) };
  } catch (e) {
    if (e instanceof PatternError) {
      throw new HeaderError(
        `column ${index + 1}: <${spec}> is neither a type (string, number, boolean, date, multi, json) nor a date pattern: ${e.message}`,
      );
    }
    throw e;
  }
}

/** The type a registered or system key implies for an untyped cell. */
export function typeForRegistered(type: ValueType | undefined): CellType {
  switch (type) {
    case "number":
      return { kind: "number" };
    case "boolean":
      return { kind: "boolean" };
    case "date":
      return { kind: "date" };
    case "multi":
      return { kind: "multi" };
    case "object":
      return { kind: "json" };
    default:
      return { kind: "string" };
  }
}

const NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
const TRUE = new Set(["true", "yes", "y", "1"]);
const FALSE = new Set(["false", "no", "n", "0"]);
const DATE_FORMS = `a date: ${DATE_TEXT_FORMS}`;

/**
 * A cell its type cannot read. Under a header that declares the type, the cell is malformed (INVALID_VALUE); an
 * untyped cell read by the key's registered type is a value of another type, refused as /v1/ingest refuses one
 * (SEMANTICS §4: TYPE_MISMATCH naming the key, the expected and the given type).
 */
/**
 * The field a refusal of a property column names: the record's JSON path, as /v1/ingest names it
 * (`properties.Price`); the `identity` column writes the Identity key.
 */
export function propertyField(key: string): string {
  return `properties.${key === "identity" ? "Identity" : key}`;
}

/** A cell quoted in a refusal, cut after 60 characters. */
function shown(cell: string): string {
  return cell.length > 60 ? `${JSON.stringify(cell.slice(0, 60))}…` : JSON.stringify(cell);
}

function refuse(column: Column, expected: string, cell: string, registered: string): never {
  const quoted = shown(cell);
  if (column.type === null) {
    throw new PortraitError(
      "TYPE_MISMATCH",
      `Property ${JSON.stringify(column.key)} is a ${registered}, got a string (${quoted})`,
      propertyField(column.key),
    );
  }
  throw new PortraitError(
    "INVALID_VALUE",
    `column ${JSON.stringify(column.shown)} must be ${expected}, got ${quoted}`,
    propertyField(column.key),
  );
}

/** A date cell refused as /v1/ingest refuses a malformed date (INVALID_DATE), naming the column. */
function refuseDate(column: Column, expected: string, cell: string): never {
  throw new PortraitError(
    "INVALID_DATE",
    `column ${JSON.stringify(column.shown)} must be ${expected}, got ${shown(cell)}`,
    propertyField(column.key),
  );
}

/**
 * A `<date>` cell (or an untyped cell of a date key). Checked here so that a refusal names the column rather than
 * the `$date` the user never wrote; valid text still goes to the engine as `{"$date"}`, which keeps date-only
 * values whole days (and DOB a calendar date).
 */
function dateCell(cell: string, column: Column, timezone: string): unknown {
  const read = readDateText(cell, timezone);
  if (read === null) return refuseDate(column, DATE_FORMS, cell);
  return read.kind === "epoch" ? `$D_${read.ms / 1000}` : { $date: read.iso };
}

/**
 * An events CSV `ts` cell, read by the very rules of a `<date>` cell (SEMANTICS §3 "epoch seconds or ISO-8601":
 * `20241120` is that day in the account timezone; it used to be read as seconds, 1970-08-23), and handed to the
 * record as the engine reads a ts: epoch seconds as a number, other dates as their ISO text. What a `<date>` cell
 * refuses is refused, with the API's code for a ts.
 */
export function tsValue(cell: string, column: Column, timezone: string): number | string {
  const read = readDateText(cell, timezone);
  if (read === null) {
    throw new PortraitError(
      "INVALID_TIMESTAMP",
      `column ${JSON.stringify(column.shown)} must be ${DATE_FORMS}, got ${shown(cell)}`,
      "ts",
    );
  }
  return read.kind === "epoch" ? read.ms / 1000 : read.iso;
}

/** A non-empty cell as the JSON value of a plain set. */
export function cellValue(cell: string, type: CellType, column: Column, timezone: string): unknown {
  switch (type.kind) {
    case "string":
      return cell;
    case "number": {
      const text = cell.trim();
      if (!NUMBER.test(text)) refuse(column, "a number", cell, "number");
      return Number(text);
    }
    case "boolean": {
      const text = cell.trim().toLowerCase();
      if (TRUE.has(text)) return true;
      if (FALSE.has(text)) return false;
      return refuse(column, "a boolean (true/false, yes/no, 1/0)", cell, "boolean");
    }
    case "date":
      return dateCell(cell, column, timezone);
    case "pattern": {
      const ms = parseWithPattern(cell, type.pattern, timezone);
      if (ms === null) return refuseDate(column, `a date like ${JSON.stringify(type.pattern.source)}`, cell);
      return `$D_${Math.floor(ms / 1000)}`;
    }
    case "multi":
      return listValue(cell, column);
    case "json":
      try {
        return JSON.parse(cell);
      } catch {
        return refuse(column, "JSON", cell, "object");
      }
  }
}

/**
 * `$add`/`$remove`/`$set` and `<multi>` cells: a JSON array, or one value (SEMANTICS §11 CSV cells). A cell that
 * starts with `[` is an array or refused: one that does not parse is almost always a broken array, and stored as one
 * literal element it was a value nobody meant. The elements keep their JSON types, so that the engine judges them as
 * it judges `{"$add": [...]}` from /v1/ingest (a number in a string list: TYPE_MISMATCH), not turned into strings.
 */
export function listValue(cell: string, column: Column): unknown {
  const text = cell.trim();
  if (!text.startsWith("[")) return [cell];
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new PortraitError(
      "INVALID_VALUE",
      `column ${JSON.stringify(column.shown)} starts with "[" but is not a JSON array (${(e as Error).message}), got ${shown(cell)}`,
      propertyField(column.key),
    );
  }
  return parsed;
}

const OPERATIONS = ["$add", "$remove", "$set", "$delete", "$incr", "$decr", "$setOnce"] as const;

/** A cell with its operation column's value → the property set entry; undefined means no change. */
export function operationValue(
  op: string,
  cell: string,
  type: CellType,
  column: Column | undefined,
  opColumn: Column,
  timezone: string,
): unknown {
  const name = op.trim();
  if (!(OPERATIONS as readonly string[]).includes(name)) {
    throw new PortraitError(
      "INVALID_OPERATION",
      `column ${JSON.stringify(opColumn.shown)} must be one of ${OPERATIONS.join(", ")} or empty, got ${JSON.stringify(op)}`,
      propertyField(opColumn.operationOf as string),
    );
  }
  if (name === "$delete") return { $delete: true };
  if (cell === "") return undefined;
  if (column === undefined) {
    throw new PortraitError(
      "INVALID_OPERATION",
      `column ${JSON.stringify(opColumn.shown)} says ${name} but there is no column ${JSON.stringify(opColumn.operationOf)}`,
      propertyField(opColumn.operationOf as string),
    );
  }
  switch (name) {
    case "$add":
    case "$remove":
    case "$set":
      return { [name]: listValue(cell, column) };
    case "$incr":
    case "$decr": {
      // The number is what the operation needs, whatever the key holds (a multi-value key: the engine then says so).
      const amount = Number(cell.trim());
      if (cell.trim() === "" || !NUMBER.test(cell.trim()) || !Number.isFinite(amount)) {
        throw new PortraitError(
          "INVALID_OPERATION",
          `column ${JSON.stringify(column.shown)}: ${name} needs a number, got ${JSON.stringify(cell.slice(0, 60))}`,
          propertyField(column.key),
        );
      }
      return { [name]: amount };
    }
    default:
      return { $setOnce: cellValue(cell, type, column, timezone) };
  }
}
