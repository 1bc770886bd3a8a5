/**
 * CSV rows → ingest records (API.md Imports): profiles CSV rows become `profile` records and events CSV rows `event`
 * records, which then go through `Portrait.ingest` like any API batch. Nothing here validates values beyond reading
 * the cell's declared type: the record parser and the engine do that, with the live API's codes and messages.
 */
import { PortraitError } from "../engine/errors.js";
import { CHARGED, CHARGED_PROPERTY_TYPES } from "../engine/properties/event-properties.js";
import { SYSTEM_PROPERTY_TYPES } from "../engine/properties/parse.js";
import { normaliseIdentityValue } from "../engine/properties/values.js";
import { IDENTITY_KEYS, type IdentityKey, type ValueType } from "../engine/types.js";
import type { ImportHandle } from "../store/import-store.js";
import type { TypeScope } from "../store/store.js";
import {
  type CellType,
  type Column,
  cellValue,
  HeaderError,
  operationValue,
  parseHeader,
  propertyField,
  tsValue,
  typeForRegistered,
} from "./csv-columns.js";
import { refusingWith } from "./row-refusal.js";

/** What a row becomes: the record for the pipeline, and the handles it named (for redaction on delete). */
export interface MappedRow {
  record: Record<string, unknown>;
  handles: ImportHandle[];
}

export interface MappingContext {
  timezone: string;
  /** The registered type of a key (profile properties, or an event's properties), if any. */
  typeOf(scope: TypeScope, key: string): ValueType | undefined;
}

/**
 * The column the failure report adds. A corrected report uploaded again carries it; it describes the old refusal,
 * it is not data, so it is never a property.
 */
const REPORT_COLUMN = "Failure Description";

/** API.md: the handle is the first of these columns present (and, per row, the first non-empty one). */
const HANDLE_COLUMNS = ["identity", "Identity", "profileId", "Email", "Phone", "deviceId"] as const;
type HandleColumn = (typeof HANDLE_COLUMNS)[number];

const IDENTITY_SET: ReadonlySet<string> = new Set(IDENTITY_KEYS);

function identityKeyOf(key: string): IdentityKey | null {
  if (key === "identity") return "Identity";
  return IDENTITY_SET.has(key) ? (key as IdentityKey) : null;
}

/** Identity-like cells of a row, normalised when they can be, so that deleting the person finds the row. */
export function handleOf(kind: string, raw: string): ImportHandle {
  const key = identityKeyOf(kind);
  if (key !== null) {
    try {
      return { kind: key, value: normaliseIdentityValue(key, raw, key) };
    } catch {
      return { kind: key, value: raw.trim() };
    }
  }
  return { kind, value: raw.trim() };
}

/**
 * Sets an own property whatever the key is called. A plain assignment of `__proto__` would change the object's
 * prototype (and, for a string, do nothing): the cell vanished and the row counted as processed. As an own key it
 * reaches the record parser exactly as JSON.parse hands it over from NDJSON or the live API, and is refused there
 * with the same INVALID_KEY.
 */
function setProperty(properties: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") {
    Object.defineProperty(properties, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    properties[key] = value;
  }
}

/** A cell as the mappers read it: one of only white space (or a missing one) is empty, "" (SEMANTICS §11 CSV cells). */
function emptied(cell: string | undefined): string {
  return cell === undefined || cell.trim() === "" ? "" : cell;
}

abstract class CsvRowMapper {
  protected readonly columns: Column[];
  protected readonly handles: Array<{ column: Column; kind: HandleColumn }>;

  /** `source`: the header as the file has it, when `header` is an SFTP manifest's mapping of it (for messages). */
  constructor(header: string[], source?: string[]) {
    this.columns = parseHeader(header, source);
    this.handles = [];
    for (const kind of HANDLE_COLUMNS) {
      const column = this.columns.find((c) => c.key === kind && c.operationOf === undefined);
      if (column) this.handles.push({ column, kind });
    }
    if (this.handles.length === 0) {
      throw new HeaderError(`no handle column: the header needs one of ${HANDLE_COLUMNS.join(", ")}`);
    }
  }

  /** The row's handle fields for the record (`identity`, `profileId` or `deviceId`) and the column used. */
  protected handle(fields: string[]): { fields: Record<string, unknown>; column: Column } {
    for (const { column, kind } of this.handles) {
      const cell = fields[column.index] ?? "";
      if (cell.trim() === "") continue;
      if (kind === "profileId") return { fields: { profileId: cell.trim() }, column };
      if (kind === "deviceId") return { fields: { deviceId: cell }, column };
      return { fields: { identity: { [identityKeyOf(kind) as string]: cell } }, column };
    }
    throw new PortraitError(
      "MISSING_HANDLE",
      `the row has no handle: ${this.handles.map((h) => h.column.shown).join(", ")} ${this.handles.length > 1 ? "are all" : "is"} empty`,
    );
  }

  /**
   * The record field the column at `index` feeds in this row, as /v1/ingest names it (`properties.Price`,
   * `identity.Email` for the row's handle, `ts`), to name it in a refusal.
   */
  fieldOf(index: number, fields: string[]): string | undefined {
    const column = this.columns[index];
    if (column === undefined) return undefined;
    if (column.operationOf !== undefined) return propertyField(column.operationOf);
    const handle = this.handles.find((h) => (fields[h.column.index] ?? "").trim() !== "");
    if (handle?.column === column) {
      const key = identityKeyOf(handle.kind);
      return key === null ? handle.kind : `identity.${key}`;
    }
    if (column.key === "profileId" || column.key === "deviceId") return column.key;
    return this.ownField(column) ?? propertyField(column.key);
  }

  /** A field of the record other than a property or a handle (an event's `name` and `ts`). */
  protected ownField(_column: Column): string | undefined {
    return undefined;
  }

  /** The handles a row names, also for a row refused before it is mapped (SEMANTICS §10 redaction). */
  handlesOf(fields: string[]): ImportHandle[] {
    return this.rowHandles(fields);
  }

  protected rowHandles(fields: string[]): ImportHandle[] {
    const out: ImportHandle[] = [];
    for (const c of this.columns) {
      const cell = fields[c.index] ?? "";
      if (cell.trim() === "" || c.operationOf !== undefined) continue;
      if (identityKeyOf(c.key) !== null || c.key === "profileId" || c.key === "deviceId")
        out.push(handleOf(c.key, cell));
    }
    return out;
  }

  protected checkWidth(fields: string[]): void {
    if (fields.length !== this.columns.length) {
      throw new PortraitError(
        "INVALID_RECORD",
        `the row has ${fields.length} cells but the header has ${this.columns.length} columns`,
      );
    }
  }

  /** The declared type, else the registered one, else the one the spec fixes for the key, else string. */
  protected typeFor(column: Column, scope: TypeScope, ctx: MappingContext): CellType {
    if (column.type) return column.type;
    if (scope === "profile" && column.key === "DOB") return { kind: "string" };
    const fixed =
      scope === "profile"
        ? SYSTEM_PROPERTY_TYPES[column.key]
        : scope === `event:${CHARGED}`
          ? CHARGED_PROPERTY_TYPES[column.key]
          : undefined;
    return typeForRegistered(ctx.typeOf(scope, column.key) ?? fixed);
  }

  abstract map(fields: string[], ctx: MappingContext): MappedRow;
}

/** Profiles CSV: one `profile` record per row. */
export class ProfileRowMapper extends CsvRowMapper {
  private readonly operations = new Map<string, Column>();
  private readonly valueColumns: Column[];

  constructor(header: string[], source?: string[]) {
    super(header, source);
    for (const c of this.columns) if (c.operationOf !== undefined) this.operations.set(c.operationOf, c);
    this.valueColumns = this.columns.filter((c) => c.operationOf === undefined && c.header !== REPORT_COLUMN);
    // Two columns of one key (`identity` and `Identity`, `Score` and `Score<number>`): one would silently win.
    const keys = new Map<string, Column>();
    for (const c of this.valueColumns) {
      const key = identityKeyOf(c.key) ?? c.key;
      const first = keys.get(key);
      if (first) {
        throw new HeaderError(
          `columns ${JSON.stringify(first.shown)} and ${JSON.stringify(c.shown)} both write ${key}`,
        );
      }
      keys.set(key, c);
    }
  }

  map(fields: string[], ctx: MappingContext): MappedRow {
    const handles = this.rowHandles(fields);
    return refusingWith(handles, () => ({ record: this.profileRecord(fields, ctx), handles }));
  }

  private profileRecord(fields: string[], ctx: MappingContext): Record<string, unknown> {
    this.checkWidth(fields);
    const handle = this.handle(fields);
    const properties: Record<string, unknown> = {};
    for (const column of this.valueColumns) {
      // Handle columns that are not identity keys (profileId, deviceId) are never properties.
      if (column.key === "profileId" || column.key === "deviceId") continue;
      const identity = identityKeyOf(column.key);
      const key = identity ?? column.key;
      // A cell of only white space is empty (no change), in every column: as when the row's handle is chosen, and
      // as a number cell's padding is trimmed. Exports that pad cells must not blank a Name or refuse a typed row.
      const cell = emptied(fields[column.index]);
      const opColumn = this.operations.get(column.key);
      const op = opColumn ? (fields[opColumn.index] ?? "") : "";
      const operated = opColumn !== undefined && op.trim() !== "";
      // The handle cell names the person; it is written again only through its operation column, which is applied
      // as /v1/ingest applies `identity.Email` with `properties.Email: {"$delete": true}` (it used to be skipped).
      if (column === handle.column && !operated) continue;
      const type = this.typeFor(column, "profile", ctx);
      let value: unknown;
      if (operated && identity !== null) {
        value = identityOperation(op, cell, column, opColumn, ctx.timezone);
      } else if (operated) {
        value = operationValue(op, cell, type, column, opColumn, ctx.timezone);
      } else if (cell !== "") {
        value = cellValue(cell, type, column, ctx.timezone);
      }
      if (value !== undefined) setProperty(properties, key, value);
    }
    // `<key>.operation` columns without a value column: only `$delete` makes sense there.
    for (const [key, opColumn] of this.operations) {
      if (this.valueColumns.some((c) => c.key === key)) continue;
      const op = fields[opColumn.index] ?? "";
      if (op.trim() === "") continue;
      const value = operationValue(op, "", { kind: "string" }, undefined, opColumn, ctx.timezone);
      if (value !== undefined) setProperty(properties, identityKeyOf(key) ?? key, value);
    }
    return { type: "profile", ...handle.fields, properties };
  }
}

/**
 * An identity column's operation, as /v1/ingest reads `{"Email": {"$op": …}}`: `$delete` removes the key; any other
 * `$` operation is handed to the engine, which refuses it as the API does (INVALID_OPERATION on `properties.<key>`:
 * an identity takes a plain value or `$delete`), whatever the cell holds. Text that is no `$` operation at all is
 * refused as in any other operation column.
 */
function identityOperation(op: string, cell: string, column: Column, opColumn: Column, timezone: string): unknown {
  const name = op.trim();
  if (name.startsWith("$") && name !== "$delete") return { [name]: cell === "" ? true : cell };
  return operationValue(op, cell, { kind: "string" }, column, opColumn, timezone);
}

/** Events CSV: the handle column, `evtName`, `ts`, and property columns; one `event` record per row. */
export class EventRowMapper extends CsvRowMapper {
  private readonly name: Column;
  private readonly ts: Column | undefined;
  private readonly propertyColumns: Column[];

  constructor(header: string[], source?: string[]) {
    super(header, source);
    const name = this.columns.find((c) => c.key === "evtName");
    if (!name) throw new HeaderError("an events CSV needs an evtName column");
    this.name = name;
    this.ts = this.columns.find((c) => c.key === "ts");
    const op = this.columns.find((c) => c.operationOf !== undefined);
    if (op) throw new HeaderError(`column ${JSON.stringify(op.shown)}: operations apply to profile properties only`);
    const handleColumns = new Set(this.handles.map((h) => h.column));
    this.propertyColumns = this.columns.filter(
      (c) => c !== name && c !== this.ts && !handleColumns.has(c) && c.header !== REPORT_COLUMN,
    );
  }

  map(fields: string[], ctx: MappingContext): MappedRow {
    const handles = this.rowHandles(fields);
    return refusingWith(handles, () => ({ record: this.eventRecord(fields, ctx), handles }));
  }

  protected override ownField(column: Column): string | undefined {
    return column === this.name ? "name" : column === this.ts ? "ts" : undefined;
  }

  private eventRecord(fields: string[], ctx: MappingContext): Record<string, unknown> {
    this.checkWidth(fields);
    const handle = this.handle(fields);
    // Trimmed as the record parser trims it, so that " Charged " reads its Amount as Charged's number.
    const name = (fields[this.name.index] ?? "").trim();
    const tsCell = this.ts ? emptied(fields[this.ts.index]) : "";
    const scope: TypeScope = `event:${name}`;
    const properties: Record<string, unknown> = {};
    for (const column of this.propertyColumns) {
      const cell = emptied(fields[column.index]);
      if (cell === "") continue;
      setProperty(properties, column.key, cellValue(cell, this.typeFor(column, scope, ctx), column, ctx.timezone));
    }
    const record: Record<string, unknown> = { type: "event", ...handle.fields, name, properties };
    if (tsCell !== "") record.ts = tsValue(tsCell, this.ts as Column, ctx.timezone);
    return record;
  }
}
