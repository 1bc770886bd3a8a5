/**
 * Creating and reading imports (API.md Imports): an upload is streamed to `<data dir>/imports/<id>` with its SHA-256
 * computed on the way, up to the size limit, and only then recorded as `queued` (SEMANTICS §11: the file is stored
 * before the 202). The runner takes it from there.
 */
import { createHash, randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { PortraitError, show } from "../engine/errors.js";
import type { Account } from "../engine/types.js";
import { pageLimit } from "../pipeline/list-page.js";
import {
  IMPORT_KINDS,
  type ImportFormat,
  type ImportKind,
  type ImportOptions,
  type ImportRow,
  type ImportSource,
  type ImportStore,
} from "../store/import-store.js";
import { failureReport } from "./failure-report.js";
import { recordKey } from "./record-key.js";
import { type ImportRunner, rowRecordId } from "./runner.js";
import { UploadCollector } from "./young-collection.js";

/** PORTRAIT_IMPORT_MAX_BYTES default: 10 GB. */
export const DEFAULT_IMPORT_MAX_BYTES = 10 * 1000 ** 3;

export function parseKind(v: unknown): ImportKind {
  if (typeof v !== "string" || !(IMPORT_KINDS as readonly string[]).includes(v)) {
    throw new PortraitError("INVALID_VALUE", `kind must be one of ${IMPORT_KINDS.join(", ")}, got ${show(v)}`, "kind");
  }
  return v as ImportKind;
}

/** The format a content type names, or 415 (documents take NDJSON only). */
export function formatFor(kind: ImportKind, contentType: string | undefined): ImportFormat {
  const type = (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  const format: ImportFormat | null =
    type === "text/csv" ? "csv" : type === "application/x-ndjson" || type === "application/ndjson" ? "ndjson" : null;
  if (format === null || (kind === "documents" && format === "csv")) {
    const accepted = kind === "documents" ? "application/x-ndjson" : "text/csv or application/x-ndjson";
    throw new PortraitError(
      "UNSUPPORTED_MEDIA_TYPE",
      `${kind === "events" ? "an" : "a"} ${kind} import takes ${accepted} (or multipart/form-data with a file field), got ${show(type || "no content type")}`,
    );
  }
  return format;
}

/** The first rows: one of them was applied in almost any import that applied anything (a look-up each). */
const LEGACY_PROBE_ROWS = Array.from({ length: 64 }, (_, i) => i + 1);

const LIST_CURSOR = /^i:(\d+):([0-9a-f]{32})$/;

function decodeListCursor(raw: unknown): RegExpExecArray | null {
  if (raw === undefined || raw === null || raw === "") return null;
  const m = typeof raw === "string" ? LIST_CURSOR.exec(Buffer.from(raw, "base64url").toString()) : null;
  if (!m) throw new PortraitError("INVALID_VALUE", "cursor is not one this API returned", "cursor");
  return m;
}

/** An import file over PORTRAIT_IMPORT_MAX_BYTES: the same refusal whether its size is told or counted. */
export function tooLargeImport(max: number): PortraitError {
  return new PortraitError("PAYLOAD_TOO_LARGE", `an import file is at most ${max} bytes (PORTRAIT_IMPORT_MAX_BYTES)`);
}

export interface NewImport {
  kind: ImportKind;
  format: ImportFormat;
  source: ImportSource;
  fileName: string | null;
  options?: ImportOptions;
}

/** How much of an upload may wait in memory to be written to its file (see `create`). */
const UPLOAD_BUFFER_BYTES = 4 * 1024 * 1024;

export class ImportService {
  constructor(
    private readonly store: ImportStore,
    private readonly runner: ImportRunner | null,
    private readonly opts: { dataDir: string; maxBytes: number },
  ) {}

  /** PORTRAIT_IMPORT_MAX_BYTES: the largest import file. */
  get maxBytes(): number {
    return this.opts.maxBytes;
  }

  /**
   * Removes the `.part` files of uploads cut off by a process that died (kill -9, a crash): up to 10 GB each, of
   * people's data, which nothing else would ever remove. Only those untouched for `idleMs`: on PostgreSQL another
   * node may be receiving one right now into a shared data directory. Returns how many went.
   */
  async removeAbandonedUploads(idleMs: number, now = Date.now()): Promise<number> {
    const dir = path.join(this.opts.dataDir, "imports");
    let removed = 0;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.endsWith(".part")) continue;
      const file = path.join(dir, name);
      const info = await stat(file).catch(() => null);
      if (info === null || now - info.mtimeMs < idleMs) continue;
      await rm(file, { force: true });
      removed++;
    }
    return removed;
  }

  /**
   * Streams `body` to disk, then records the import as queued and wakes the runner. `complete`, when given, is
   * awaited once the file is stored and before the import is recorded: it throws to refuse the upload (a multipart
   * part cut at the size limit, a second file part after it).
   */
  async create(account: Account, body: Readable, spec: NewImport, complete?: () => Promise<void>): Promise<ImportRow> {
    const id = randomBytes(16).toString("hex");
    const dir = path.join(this.opts.dataDir, "imports");
    await mkdir(dir, { recursive: true });
    const part = path.join(dir, `${id}.part`);
    const hash = createHash("sha256");
    let bytes = 0;
    const max = this.opts.maxBytes;
    const collector = new UploadCollector();
    const meter = new Transform({
      highWaterMark: UPLOAD_BUFFER_BYTES,
      transform(chunk: Buffer, _enc, done) {
        bytes += chunk.length;
        if (bytes > max) {
          done(tooLargeImport(max));
          return;
        }
        hash.update(chunk);
        collector.received(chunk.length);
        done(null, chunk);
      },
    });
    try {
      // Large buffers: while an import runs, each turn of the event loop holds one of its batches (SQLite's
      // transactions run on the loop), and with the default 16 KB the upload moved one socket read per turn or two
      // (socket → file write → its completion → the next read): ≈ 1 MB/s. With room for a few MB the socket is
      // read as far as the kernel holds (libuv reads up to 32 × 64 KB a turn) and the file written in few large writes.
      await pipeline(body, meter, createWriteStream(part, { highWaterMark: UPLOAD_BUFFER_BYTES }));
      await complete?.();
      await rename(part, path.join(dir, id));
    } catch (e) {
      await rm(part, { force: true });
      throw e;
    }
    const sha256 = hash.digest("hex");
    // Until 2026-11-24 the key was the file's SHA-256 alone. A file imported then and uploaded again now must still
    // apply nothing twice: if rows of it were applied under that key, this import keeps it.
    const legacy = await this.store.anyRecordIdSeen(
      account.id,
      LEGACY_PROBE_ROWS.map((n) => rowRecordId(sha256, n)),
    );
    const options: ImportOptions = { ...spec.options, recordKey: legacy ? sha256 : recordKey(sha256, spec) };
    const row: ImportRow = {
      accountId: account.id,
      id,
      kind: spec.kind,
      format: spec.format,
      status: "queued",
      source: spec.source,
      fileName: spec.fileName,
      filePath: path.join("imports", id),
      sha256,
      bytes,
      options,
      header: null,
      rows: 0,
      processed: 0,
      failed: 0,
      bytesRead: 0,
      lastRow: 0,
      error: null,
      createdAt: Date.now(),
      startedAt: null,
      finishedAt: null,
      claimedBy: null,
      heartbeatAt: null,
    };
    try {
      await this.store.insertImport(row);
    } catch (e) {
      await rm(path.join(dir, id), { force: true });
      throw e;
    }
    this.runner?.kick();
    return row;
  }

  /** The import, or 404 UNKNOWN_IMPORT (also for another account's id: ids leak nothing). */
  async get(account: Account, importId: string): Promise<ImportRow> {
    const row = /^[0-9a-f]{32}$/.test(importId) ? await this.store.getImport(account.id, importId) : null;
    if (!row) throw new PortraitError("UNKNOWN_IMPORT", `import ${importId} does not exist`, "id");
    return row;
  }

  /** GET /v1/imports: the account's imports, newest first, a page at a time (the cursor: the last one's time and id). */
  async list(
    account: Account,
    query: { cursor?: unknown; limit?: unknown },
  ): Promise<{ imports: ImportRow[]; nextCursor: string | null }> {
    const limit = pageLimit(query.limit);
    const m = decodeListCursor(query.cursor);
    const before = m ? { createdAt: Number(m[1]), id: m[2] as string } : null;
    const found = await this.store.listImports(account.id, { before, limit: limit + 1 });
    const more = found.length > limit;
    if (more) found.length = limit;
    const last = found[found.length - 1];
    const nextCursor = more && last ? Buffer.from(`i:${last.createdAt}:${last.id}`).toString("base64url") : null;
    return { imports: found, nextCursor };
  }

  async failures(account: Account, importId: string): Promise<Readable> {
    return failureReport(this.store, await this.get(account, importId));
  }
}
