/**
 * `<file>.failures.csv` in an account's SFTP folder is not a file: it is the import's failure report, read from the
 * store when the client opens it, exactly what `GET /v1/imports/{id}/failures.csv` returns. A copy on disk would
 * keep the rows of a person deleted later; the store's rows are redacted in the deletion's transaction (SEMANTICS
 * §10), so the report served here is too.
 *
 * The report belongs to `<file>.result.json`, which names it (`failuresFile`) and its import (`id`). The import
 * must be this account's and must have written its results to this very place, so a result file a client edits or
 * uploads cannot point at another import's report.
 */
import { createWriteStream } from "node:fs";
import { type FileHandle, mkdir, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { isPlainObject } from "../../engine/parse-record.js";
import type { ImportRow, ImportStore } from "../../store/import-store.js";
import type { Store } from "../../store/store.js";
import { failureReport } from "../failure-report.js";

const SUFFIX = ".failures.csv";
const SWEPT_META = "sftp.failureCopiesRemoved";

/** What a listing and STAT show of a file. */
export interface FileInfo {
  mode: number;
  size: number;
  atimeMs: number;
  mtimeMs: number;
  isDirectory(): boolean;
}

export function isReportName(name: string): boolean {
  return name.endsWith(SUFFIX) && name.length > SUFFIX.length;
}

async function resultOf(file: string): Promise<Record<string, unknown> | null> {
  try {
    const body: unknown = JSON.parse(await readFile(file, "utf8"));
    return isPlainObject(body) ? body : null;
  } catch {
    return null;
  }
}

export class FailureReports {
  constructor(
    private readonly store: ImportStore,
    private readonly meta: Pick<Store, "getMeta" | "setMeta">,
    /** Where reports are rendered while a client reads them (outside every account's folder). */
    private readonly scratchDir: string,
  ) {}

  /** The finished import whose report `file` (on disk, inside the account's folder) is, or null. */
  async importOf(accountId: string, file: string): Promise<ImportRow | null> {
    const base = path.basename(file);
    if (!isReportName(base)) return null;
    const dir = path.dirname(file);
    const name = base.slice(0, -SUFFIX.length);
    const result = await resultOf(path.join(dir, `${name}.result.json`));
    if (result === null || result.failuresFile !== base || typeof result.id !== "string") return null;
    const row = await this.store.getImport(accountId, result.id);
    if (!row || row.options.resultDir !== dir || row.options.resultName !== name) return null;
    return row.status === "done" || row.status === "failed" ? row : null;
  }

  /** The report's size, counted by rendering it (nothing is kept). */
  async size(row: ImportRow): Promise<number> {
    let bytes = 0;
    const counter = new Writable({
      write(chunk: Buffer | string, _enc, done) {
        bytes += Buffer.byteLength(chunk);
        done();
      },
    });
    await pipeline(failureReport(this.store, row), counter);
    return bytes;
  }

  /** Stats a client sees for a report: a plain file of the report's size, dated when the import finished. */
  async info(row: ImportRow): Promise<FileInfo> {
    const mtimeMs = row.finishedAt ?? row.createdAt;
    return { mode: 0o100644, size: await this.size(row), mtimeMs, atimeMs: mtimeMs, isDirectory: () => false };
  }

  /** The report rendered now, opened for reading; the rendered file is gone once the handle closes. */
  async open(row: ImportRow): Promise<FileHandle> {
    await mkdir(this.scratchDir, { recursive: true });
    const file = path.join(this.scratchDir, `${row.id}-${process.hrtime.bigint()}.csv`);
    try {
      await pipeline(failureReport(this.store, row), createWriteStream(file));
      return await open(file, "r");
    } finally {
      // Unlinked at once: the open handle keeps the bytes, and nothing is left behind if the server stops.
      await rm(file, { force: true });
    }
  }

  /** "Removing" a report: its result file stops naming it. */
  async forget(file: string): Promise<void> {
    const resultFile = path.join(path.dirname(file), `${path.basename(file).slice(0, -SUFFIX.length)}.result.json`);
    const result = await resultOf(resultFile);
    if (result === null) return;
    delete result.failuresFile;
    await writeFile(resultFile, `${JSON.stringify(result, null, 2)}\n`);
    await rm(file, { force: true });
  }

  /**
   * Removes the copies earlier versions wrote next to their result files: they were never redacted. Walks every
   * account's folder (`sftpDir`'s entries not starting with a dot, which account ids never do) once, at start.
   */
  async removeStaticCopies(sftpDir: string): Promise<number> {
    // Once per store: a file a client uploads later under such a name is theirs.
    if ((await this.meta.getMeta(SWEPT_META)) !== null) return 0;
    let removed = 0;
    const accounts = await readdir(sftpDir, { withFileTypes: true }).catch(() => []);
    for (const e of accounts) {
      if (e.isDirectory() && !e.name.startsWith(".")) removed += await removeCopiesIn(path.join(sftpDir, e.name));
    }
    await this.meta.setMeta(SWEPT_META, new Date().toISOString());
    return removed;
  }
}

async function removeCopiesIn(dir: string): Promise<number> {
  let removed = 0;
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) {
      removed += await removeCopiesIn(full);
      continue;
    }
    if (!e.name.endsWith(".result.json")) continue;
    const result = await resultOf(full);
    const named = result?.failuresFile;
    if (typeof result?.id !== "string" || typeof named !== "string" || !isReportName(named)) continue;
    if (named !== path.basename(named)) continue;
    try {
      await rm(path.join(dir, named));
      removed += 1;
    } catch {
      // Not there: nothing to remove.
    }
  }
  return removed;
}
