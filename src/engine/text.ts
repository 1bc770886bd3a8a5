/**
 * Text both stores can keep: no NUL character and no unpaired UTF-16 surrogate (PostgreSQL refuses both, and
 * neither is meaningful text). Checked once at the edge so a record fails cleanly instead of a whole batch later.
 */
import { PortraitError } from "./errors.js";

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching NUL is the point of this pattern
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function assertStorableText(input: unknown, field = ""): void {
  // Every record of every batch passes here, and almost all are clean: the walk that names the failing path (and
  // builds a path string for every key on the way) runs only once this one, which allocates nothing, found a fault.
  if (isStorable(input)) return;
  throwAtFault(input, field);
}

function isStorable(input: unknown): boolean {
  if (typeof input === "string") return !UNSTORABLE.test(input);
  if (typeof input !== "object" || input === null) return true;
  if (Array.isArray(input)) {
    for (let i = 0; i < input.length; i++) if (!isStorable(input[i])) return false;
    return true;
  }
  const record = input as Record<string, unknown>;
  for (const key in record) {
    if (!Object.hasOwn(record, key)) continue;
    if (UNSTORABLE.test(key) || !isStorable(record[key])) return false;
  }
  return true;
}

function throwAtFault(input: unknown, field: string): void {
  if (typeof input === "string") {
    if (UNSTORABLE.test(input)) {
      throw new PortraitError(
        "INVALID_VALUE",
        "text must not contain NUL characters or unpaired surrogates",
        field || undefined,
      );
    }
    return;
  }
  if (typeof input !== "object" || input === null) return;
  if (Array.isArray(input)) {
    for (const [i, v] of input.entries()) throwAtFault(v, `${field}[${i}]`);
    return;
  }
  for (const [key, value] of Object.entries(input)) {
    const path = field ? `${field}.${key}` : key;
    if (UNSTORABLE.test(key)) {
      throw new PortraitError("INVALID_KEY", "a key must not contain NUL characters or unpaired surrogates", path);
    }
    throwAtFault(value, path);
  }
}
