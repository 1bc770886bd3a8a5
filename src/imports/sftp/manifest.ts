/**
 * SFTP manifests (SEMANTICS §11 SFTP): a JSON file named `*.manifest` or `*.manifest.json` that names a data file
 * uploaded before it and says how to import it:
 *
 *   {"fileName": "crm.csv", "kind": "profiles", "format": "csv",
 *    "columns": {"mail": "Email", "points": {"name": "Points", "type": "number"}, "joined": {"type": "dd/MM/yyyy"}}}
 *
 * `fileName` is a file in the manifest's own folder: a name, not a path. `format` defaults from the file name
 * (`.csv`; `.ndjson`, `.jsonl`) and must be given for any other name, as `portrait import` asks for `--format`.
 * `columns` renames and types CSV columns before the header is read (a type is one of the header types or a date
 * pattern, as in `Points<number>`); every source column it names must be in the file's header (checked by
 * header.ts once the file is uploaded), so a misspelt one is refused rather than ignored.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { isPlainObject } from "../../engine/parse-record.js";
import { IMPORT_KINDS, type ImportFormat, type ImportKind } from "../../store/import-store.js";
import { HeaderError, parseHeader } from "../csv-columns.js";
import { resolveInside } from "./paths.js";

const MAX_MANIFEST_BYTES = 64 * 1024;

/** The keys a manifest may have; `mapping` is the older name of `columns`. */
const MANIFEST_KEYS = ["fileName", "kind", "format", "columns", "mapping"] as const;

export function isManifestName(name: string): boolean {
  return /\.manifest(\.json)?$/i.test(name) && !/^\.|\.part$/.test(name);
}

export interface Manifest {
  /** As written in the manifest (relative to the manifest's folder). */
  fileName: string;
  /** The data file as the client sees it (inside the account's folder). */
  virtual: string;
  /** The data file on disk. */
  dataPath: string;
  kind: ImportKind;
  format: ImportFormat;
  mapping?: Record<string, string>;
}

export type ManifestOutcome =
  | { ok: true; manifest: Manifest }
  | {
      ok: false;
      code: "INVALID_MANIFEST" | "MISSING_FILE" | "INCOMPLETE_FILE" | "PAYLOAD_TOO_LARGE";
      message: string;
      fileName: string | null;
    };

const invalid = (message: string, fileName: string | null = null): ManifestOutcome => ({
  ok: false,
  code: "INVALID_MANIFEST",
  message,
  fileName,
});

function formatOf(fileName: string): ImportFormat | null {
  if (/\.csv$/i.test(fileName)) return "csv";
  if (/\.(ndjson|jsonl)$/i.test(fileName)) return "ndjson";
  return null;
}

function mappingOf(columns: unknown): Record<string, string> | string {
  if (!isPlainObject(columns)) return "columns must be an object of source column → name or {name, type}";
  // Without a prototype: a source column named `__proto__` is an own key like any other (an assignment to it on a
  // plain object changed nothing, so it was neither applied nor refused), and checked against the header as they are.
  const out: Record<string, string> = Object.create(null);
  for (const [source, target] of Object.entries(columns)) {
    if (typeof target === "string" && target.trim() !== "") {
      out[source] = target;
      continue;
    }
    if (!isPlainObject(target)) return `columns.${source} must be a name or {name, type}`;
    const unknown = Object.keys(target).find((k) => k !== "name" && k !== "type");
    if (unknown !== undefined) return `columns.${source}: unknown key ${JSON.stringify(unknown)} (name, type)`;
    const name = target.name ?? source;
    const type = target.type;
    if (typeof name !== "string" || name.trim() === "") return `columns.${source}.name must be a non-empty string`;
    if (type !== undefined && (typeof type !== "string" || /[<>]/.test(type) || type.trim() === "")) {
      return `columns.${source}.type must be a type name or a date pattern`;
    }
    out[source] = type === undefined ? name : `${name}<${type}>`;
    // The header it makes is read now, so that a type the import would not know fails the manifest, not the import.
    try {
      parseHeader([out[source] as string]);
    } catch (e) {
      if (e instanceof HeaderError) return `columns.${source}: ${e.message.replace(/^column 1: /, "")}`;
      throw e;
    }
  }
  return out;
}

/**
 * Reads and checks a manifest. `virtualDir` is the manifest's folder as the client sees it and `root` the account's
 * folder on disk; the data file must be inside it.
 */
export async function readManifest(manifestPath: string, virtualDir: string, root: string): Promise<ManifestOutcome> {
  let text: string;
  try {
    const s = await stat(manifestPath);
    if (s.size > MAX_MANIFEST_BYTES) return invalid(`a manifest is at most ${MAX_MANIFEST_BYTES} bytes`);
    text = await readFile(manifestPath, "utf8");
  } catch (e) {
    return invalid(`the manifest could not be read: ${(e as Error).message}`);
  }
  let body: unknown;
  try {
    // Editors on Windows start a UTF-8 file with a byte order mark, which JSON does not allow.
    body = JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (e) {
    return invalid(`the manifest is not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(body)) return invalid('the manifest must be a JSON object {"fileName", "kind", …}');
  // A misspelt key (`colums`) would otherwise turn its setting off without a word: the import ran without the
  // mapping and fixed the source columns' types for good (SEMANTICS §4). Refused, as unknown keys in `columns` are.
  const unknownKey = Object.keys(body).find((k) => !(MANIFEST_KEYS as readonly string[]).includes(k));
  if (unknownKey !== undefined) {
    const named = typeof body.fileName === "string" ? body.fileName : null;
    return invalid(`unknown key ${JSON.stringify(unknownKey)} (${MANIFEST_KEYS.join(", ")})`, named);
  }
  if (body.columns !== undefined && body.mapping !== undefined) {
    return invalid('give "columns" or "mapping" (its older name), not both');
  }
  const fileName = body.fileName;
  if (typeof fileName !== "string" || fileName.trim() === "") return invalid("fileName must name the data file");
  // Joined by hand: path.posix.join would cancel the ".." segments that must be refused.
  const virtual = resolveInside(`${virtualDir}/${fileName}`);
  if (virtual === null || virtual === "/") return invalid("fileName must name a file inside your folder", fileName);
  // Only a name: a path would be read from another folder than the client meant (or than the result is written to).
  if (fileName.includes("/")) {
    return invalid(
      `fileName must be the name of a file in the manifest's folder, without a path: got ${JSON.stringify(fileName)}`,
      fileName,
    );
  }
  const shownName = fileName;
  const dataPath = path.join(root, virtual);
  const found = await stat(dataPath).catch(() => null);
  // Before the format, which a folder's name (no extension) would fail first.
  if (found?.isDirectory()) return invalid(`${fileName} is a folder, not a file`, shownName);
  const kind = body.kind;
  if (typeof kind !== "string" || !(IMPORT_KINDS as readonly string[]).includes(kind)) {
    return invalid(`kind must be one of ${IMPORT_KINDS.join(", ")}`, shownName);
  }
  const format = body.format ?? formatOf(fileName);
  if (format === null) {
    return invalid(
      `cannot tell the format of ${fileName} from its name (.csv, .ndjson, .jsonl): give "format": "csv" or "ndjson"`,
      shownName,
    );
  }
  if (format !== "csv" && format !== "ndjson") return invalid('format must be "csv" or "ndjson"', shownName);
  if (kind === "documents" && format !== "ndjson") return invalid("documents imports take NDJSON only", shownName);
  let mapping: Record<string, string> | undefined;
  const columns = body.columns ?? body.mapping;
  if (columns !== undefined) {
    if (format !== "csv") return invalid("columns apply to CSV files only", shownName);
    const m = mappingOf(columns);
    if (typeof m === "string") return invalid(m, shownName);
    mapping = m;
  }
  if (!found?.isFile()) {
    return { ok: false, code: "MISSING_FILE", message: `the data file ${fileName} was not found`, fileName: shownName };
  }
  return {
    ok: true,
    manifest: { fileName, virtual, dataPath, kind: kind as ImportKind, format, ...(mapping && { mapping }) },
  };
}
