/**
 * The key of an import's row record ids, `imp:<key>:<row>` (SEMANTICS §11 Idempotency). The spec names the file's
 * SHA-256; the same bytes read another way (another kind, format, column mapping or charset) are another import,
 * whose rows must not answer `duplicate` for the first one's: a corrected re-import would otherwise apply nothing.
 * So the key hashes the file's SHA-256 together with a canonical JSON of everything that gives the bytes their
 * meaning. Uploading the same file again with the same spec gives the same key, and applies nothing twice.
 */
import { createHash } from "node:crypto";
import type { ImportFormat, ImportKind, ImportOptions } from "../store/import-store.js";

export interface ReadingSpec {
  kind: ImportKind;
  format: ImportFormat;
  options?: ImportOptions;
}

/** JSON with object keys sorted, so that `{"a","b"}` and `{"b","a"}` mappings give one key. */
function canonical(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
}

export function recordKey(fileSha256: string, spec: ReadingSpec): string {
  const meaning = canonical({
    kind: spec.kind,
    format: spec.format,
    mapping: spec.options?.mapping ?? null,
    charset: spec.options?.charset ?? null,
  });
  return createHash("sha256").update(`${fileSha256}\n${meaning}`).digest("hex");
}
