/**
 * The source columns a manifest's `columns` names must be in the data file's header: a misspelt one would otherwise
 * rename nothing, and the column it meant would be imported under its own name (or refused) without a word.
 */
import { createReadStream } from "node:fs";
import { importText } from "../charset.js";
import { readCsv } from "../readers.js";
import type { Manifest } from "./manifest.js";

/**
 * Why the manifest's columns do not fit the file's header, or null (also when the header cannot be read: the
 * import itself then fails and says why). Call it once the file is uploaded whole.
 */
export async function columnsMismatch(m: Manifest): Promise<string | null> {
  if (!m.mapping || m.format !== "csv") return null;
  const stream = createReadStream(m.dataPath);
  let header: string[] | null = null;
  try {
    // Read as the import reads it: a UTF-16 file's BOM decides its encoding.
    for await (const first of readCsv(importText(stream, null))) {
      header = (first.data as string[]).map((h) => h.trim());
      break;
    }
  } catch {
    return null;
  } finally {
    stream.destroy();
  }
  if (header === null) return null;
  const missing = Object.keys(m.mapping).find((source) => !header.includes(source));
  if (missing === undefined) return null;
  return `columns.${missing}: ${m.fileName} has no column ${JSON.stringify(missing)} (its columns: ${header.join(", ")})`;
}
