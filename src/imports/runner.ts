/**
 * The import runner (SEMANTICS §11 Imports): runs queued imports one at a time per account, in the order they were
 * created, each row through the same pipeline as the live API in batches of up to 1,000 rows per transaction.
 *
 * Resuming: after each batch the checkpoint (last row, counts) is saved; a run that stops (shutdown, kill, another
 * worker's claim) is picked up at the checkpoint by the next worker. Rows of the batch in flight when a process died
 * are applied again, which is harmless: every row carries the record id `imp:<record key>:<row>` (the key hashes the
 * file's SHA-256 with the kind, format, mapping and charset: record-key.ts), so a row already applied is a
 * `duplicate` (counted as processed, applied once). The same id makes a second upload of the same file, read the
 * same way, apply nothing twice.
 *
 * Several processes on one PostgreSQL database each run a runner; the store's claim (a row update under an advisory
 * lock) lets exactly one of them run a given import, and a claim whose heartbeat is older than the timeout is free.
 */

import { createReadStream, existsSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setImmediate as nextTurn } from "node:timers/promises";
import type { Logger } from "pino";
import { PortraitError } from "../engine/errors.js";
import type { Account } from "../engine/types.js";
import { applyDocumentLines, type DocumentLine } from "../pipeline/document-lines.js";
import { type BatchFailure, MAX_BATCH, type Portrait } from "../pipeline/portrait.js";
import type { ImportFailure, ImportHandle, ImportRow } from "../store/import-store.js";
import { importText } from "./charset.js";
import { HeaderError } from "./csv-columns.js";
import { EventRowMapper, type MappingContext, ProfileRowMapper } from "./csv-records.js";
import { mapDocumentLine, mapIngestLine } from "./ndjson-records.js";
import { ReadError, readCsv, readNdjson, type SourceRow } from "./readers.js";
import { RowRefusal } from "./row-refusal.js";

export interface RunnerOptions {
  dataDir: string;
  /** Unique per process. */
  workerId: string;
  /** A claim not renewed for this long is free for another worker (default 15 s). */
  claimTimeoutMs?: number;
  /** How often to look for imports created elsewhere or left by a dead worker (default 5 s). */
  pollMs?: number;
  /**
   * Rows per step (default 1,000): applied as ingest batches of ≤ 1,000 submitted together, which group commit
   * runs in one transaction; the checkpoint is saved after each step. Larger steps commit less often but hold the
   * (SQLite: only) writer longer, which live API requests would wait for.
   */
  batchSize?: number;
  /**
   * A step is also cut once its rows hold this many characters of text (default 4 Mi: CSV cells, NDJSON lines) or
   * this many cells (default 256k, CSV), so that 1,000 rows of about 1 MB (or of 1,024 cells) never wait in memory
   * together, each with the record built from it.
   */
  batchChars?: number;
  batchCells?: number;
  /** SQLite has one server process: claims left by the previous process are free at start, without waiting. */
  reclaimOnStart?: boolean;
  logger?: Logger;
  /** Told of each step's rows and of each import's end (GET /metrics counts them). */
  observer?: ImportObserver;
}

/** What one step may hold besides its row count (RunnerOptions.batchChars, batchCells). */
export const MAX_BATCH_CHARS = 4 * 1024 * 1024;
export const MAX_BATCH_CELLS = 256 * 1024;

export interface ImportObserver {
  rows(kind: ImportRow["kind"], processed: number, failed: number): void;
  finished(kind: ImportRow["kind"], status: "done" | "failed"): void;
}

interface PendingRow {
  source: SourceRow;
  handles: ImportHandle[];
  record?: Record<string, unknown>;
  document?: DocumentLine;
  /** Refused before the pipeline (a cell of the wrong type, a line that is not JSON). */
  refusal?: string;
}

/** `CODE (field): message`, the Failure Description of a refused row. */
export function describeFailure(f: Pick<BatchFailure, "code" | "error" | "field">): string {
  return `${f.code}${f.field ? ` (${f.field})` : ""}: ${f.error}`;
}

function refusalOf(e: unknown): string {
  if (e instanceof PortraitError) return describeFailure({ code: e.code, error: e.message, field: e.field });
  throw e;
}

/** Record ids of imported rows (SEMANTICS §11 Idempotency); `key` is the import's record key (record-key.ts). */
export function rowRecordId(key: string, row: number): string {
  return `imp:${key}:${row}`;
}

/** Imports created before the record key existed keep the file's hash, so that resuming one stays idempotent. */
function keyOf(row: ImportRow): string {
  return row.options.recordKey ?? row.sha256;
}

class Stopped extends Error {}

export class ImportRunner {
  private readonly loops = new Map<string, Promise<void>>();
  private readonly claimTimeoutMs: number;
  private readonly batchSize: number;
  private readonly batchChars: number;
  private readonly batchCells: number;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly startedAt = Date.now();

  constructor(
    private readonly portrait: Portrait,
    private readonly opts: RunnerOptions,
  ) {
    this.claimTimeoutMs = opts.claimTimeoutMs ?? 15_000;
    this.batchSize = Math.max(1, opts.batchSize ?? 1000);
    this.batchChars = Math.max(1, opts.batchChars ?? MAX_BATCH_CHARS);
    this.batchCells = Math.max(1, opts.batchCells ?? MAX_BATCH_CELLS);
  }

  private get store() {
    return this.portrait.store;
  }

  /** Starts working: resumes what was queued or running, then polls. */
  start(): void {
    this.kick();
    this.timer = setInterval(() => this.kick(), this.opts.pollMs ?? 5_000);
    this.timer.unref();
  }

  /**
   * At start: imports left `queued` or `running` whose upload is not in the data directory (a store restored from a
   * backup, which holds no uploads; a file removed by hand) would never run, and would count as unfinished for good.
   *
   * SQLite (`reclaimOnStart`): the data directory is the store's own, and an upload is in place before its import row
   * exists and removed only after it ended, so a missing file is lost for good. Each such import no live worker holds
   * is claimed (a claim is refused while another worker heartbeats it) and ended `failed`, with an error naming the
   * file, logged, and counted by the observer.
   * PostgreSQL: nodes with separate data directories each hold their own uploads (docs/scaling.md), so a file missing
   * here may be in another node's directory, waiting for it: it is never failed, only warned about.
   * Returns the ids of the imports failed.
   */
  async failLostUploads(): Promise<string[]> {
    const failed: string[] = [];
    const now = Date.now();
    const staleBefore = Math.max(now - this.claimTimeoutMs, this.opts.reclaimOnStart ? this.startedAt : 0);
    for (const row of await this.store.imports.listUnfinished()) {
      if (existsSync(this.filePath(row))) continue;
      const where = { importId: row.id, accountId: row.accountId, file: this.filePath(row) };
      if (!this.opts.reclaimOnStart) {
        const live = row.claimedBy !== null && (row.heartbeatAt ?? 0) >= staleBefore;
        if (!live) {
          this.opts.logger?.warn(
            where,
            `import ${row.id} is ${row.status} but its upload is not in this node's data directory: it runs on ` +
              "the node whose directory holds it; if no node holds it (a restored database), upload the file again",
          );
        }
        continue;
      }
      const error =
        `the uploaded file is missing (${row.filePath} in the data directory; a store restored from a backup has ` +
        "no uploads): the import cannot go on; upload the file again";
      const claimed = await this.store.imports.claimImport(row.accountId, row.id, this.opts.workerId, now, staleBefore);
      if (!claimed) continue;
      await this.store.imports.finishImport(
        row.accountId,
        row.id,
        this.opts.workerId,
        { status: "failed", error },
        now,
      );
      this.opts.observer?.finished(row.kind, "failed");
      this.opts.logger?.warn(where, `import ${row.id} failed: its upload is missing, so it cannot resume`);
      await this.writeResults(row.accountId, row.id);
      failed.push(row.id);
    }
    return failed;
  }

  /** Stops between batches; an import in progress keeps its checkpoint and is resumed by the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await Promise.allSettled([...this.loops.values()]);
  }

  /** Looks for work now (a new import was created). */
  kick(): void {
    if (this.stopped) return;
    void this.store.imports.listUnfinished().then(
      (rows) => {
        for (const accountId of new Set(rows.map((r) => r.accountId))) this.ensureLoop(accountId);
      },
      (err) => this.opts.logger?.error({ err }, "import runner: listing imports failed"),
    );
  }

  /** Resolves when the account has no runnable import left here (tests and the bench wait on it). */
  async idle(): Promise<void> {
    while (this.loops.size > 0) await Promise.allSettled([...this.loops.values()]);
  }

  private ensureLoop(accountId: string): void {
    if (this.loops.has(accountId) || this.stopped) return;
    const loop = this.accountLoop(accountId)
      .catch((err) => this.opts.logger?.error({ err, accountId }, "import runner failed"))
      .finally(() => this.loops.delete(accountId));
    this.loops.set(accountId, loop);
  }

  /** One import at a time per account, oldest first. */
  private async accountLoop(accountId: string): Promise<void> {
    while (!this.stopped) {
      const now = Date.now();
      // A claim last renewed before this process started was left by a process that is gone (SQLite: one server).
      const staleBefore = Math.max(now - this.claimTimeoutMs, this.opts.reclaimOnStart ? this.startedAt : 0);
      const oldest = (await this.store.imports.listUnfinished()).find(
        (r) => r.accountId === accountId && existsSync(this.filePath(r)),
      );
      // Oldest first: when it cannot be claimed (another worker runs an import of this account), the poll retries.
      const claimed =
        oldest && (await this.store.imports.claimImport(accountId, oldest.id, this.opts.workerId, now, staleBefore));
      if (!claimed) return;
      await this.run(claimed);
    }
  }

  private filePath(row: ImportRow): string {
    return path.join(this.opts.dataDir, row.filePath);
  }

  private async run(row: ImportRow): Promise<void> {
    const account = await this.store.getAccount(row.accountId);
    const worker = this.opts.workerId;
    const finish = async (status: "done" | "failed", error: string | null) => {
      await this.store.imports.finishImport(row.accountId, row.id, worker, { status, error }, Date.now());
      this.opts.observer?.finished(row.kind, status);
      await this.writeResults(row.accountId, row.id);
      // The stored copy is only needed to resume; the report lives in the store (and a 10 GB file should not stay).
      await rm(this.filePath(row), { force: true });
    };
    if (!account) return finish("failed", "the account no longer exists");
    const heartbeat = setInterval(
      () => {
        void this.store.imports.heartbeat(row.accountId, row.id, worker, Date.now()).catch(() => undefined);
      },
      Math.max(100, Math.floor(this.claimTimeoutMs / 3)),
    );
    try {
      const outcome = await this.readAndApply(account, row);
      await finish(outcome.error === null ? "done" : "failed", outcome.error);
    } catch (e) {
      if (e instanceof Stopped) {
        await this.store.imports.releaseImport(row.accountId, row.id, worker).catch(() => undefined);
        return;
      }
      this.opts.logger?.error({ err: e, importId: row.id }, "import failed");
      await finish("failed", `internal error: ${(e as Error).message}`).catch(() => undefined);
    } finally {
      clearInterval(heartbeat);
    }
  }

  /** Reads the file from the checkpoint and applies it batch by batch; returns why it stopped early, if it did. */
  private async readAndApply(account: Account, row: ImportRow): Promise<{ error: string | null }> {
    await this.portrait.types.ensure(account.id);
    const progress = {
      rows: row.rows,
      processed: row.processed,
      failed: row.failed,
      bytesRead: row.bytesRead,
      lastRow: row.lastRow,
    };
    const ctx: MappingContext = {
      timezone: account.settings.timezone,
      typeOf: (scope, key) => this.portrait.types.get(account.id, scope, key),
    };
    const file = createReadStream(this.filePath(row), { highWaterMark: 1 << 20 });
    // A BOM, else a declared charset, is decoded to UTF-8 on the way; the readers then see UTF-8 like any other file.
    const stream = importText(file, row.options.charset ?? null);
    const source = row.format === "csv" ? readCsv(stream) : readNdjson(stream);
    let mapper: ProfileRowMapper | EventRowMapper | null = null;
    let batch: PendingRow[] = [];
    // What the rows of the batch hold: a step is cut by size as well as by count (RunnerOptions.batchChars).
    let batchChars = 0;
    let batchCells = 0;
    let emailHashesReady = false;
    // Rebuilt once per run, when a line first needs it (docs/semantics.md Imports).
    const ensureEmailHashes = async () => {
      if (emailHashesReady) return;
      await this.store.imports.refreshEmailHashes(account.id);
      emailHashesReady = true;
    };

    const flush = async () => {
      if (batch.length === 0) return;
      const rows = batch;
      batch = [];
      batchChars = 0;
      batchCells = 0;
      // Let the server answer what arrived meanwhile. With a synchronous store every await below settles as a
      // microtask, so without this the import kept the event loop until the file stream next read from disk: live
      // requests waited seconds (p99 7.4 s at 100k rows; now about one batch's transaction).
      await nextTurn();
      if (this.stopped) throw new Stopped();
      const failures = await this.applyBatch(account, row, rows, ensureEmailHashes);
      // Rows read from here on take the timezone the account has now (its settings may change during an import).
      ctx.timezone = this.portrait.latest(account).settings.timezone;
      const last = rows[rows.length - 1] as PendingRow;
      progress.rows += rows.length;
      progress.failed += failures.length;
      progress.processed += rows.length - failures.length;
      progress.bytesRead = last.source.bytesRead;
      progress.lastRow = last.source.row;
      const held = await this.store.imports.saveProgress(
        account.id,
        row.id,
        this.opts.workerId,
        progress,
        failures,
        Date.now(),
      );
      if (!held) throw new Stopped();
      this.opts.observer?.rows(row.kind, rows.length - failures.length, failures.length);
    };

    try {
      for await (const src of source) {
        if (row.format === "csv" && src.row === 0) {
          if (src.problem) throw new HeaderError(src.problem);
          const source = src.data as string[];
          // Own keys only: a column named `constructor` or `toString` is not renamed to Object.prototype's function.
          const mapping = row.options.mapping;
          const header = source.map((h) => (mapping && Object.hasOwn(mapping, h.trim()) ? mapping[h.trim()] : h) ?? h);
          if (row.header === null) await this.store.imports.setHeader(account.id, row.id, source);
          // Messages name the columns as the file (and the failure report's header) has them.
          mapper = row.kind === "events" ? new EventRowMapper(header, source) : new ProfileRowMapper(header, source);
          continue;
        }
        if (src.row <= progress.lastRow) continue;
        batch.push(this.mapRow(row, src, mapper, ctx));
        if (typeof src.data === "string") {
          batchChars += src.data.length;
          batchCells += 1;
        } else {
          for (const cell of src.data) batchChars += cell.length;
          batchCells += src.data.length;
        }
        if (batch.length >= this.batchSize || batchChars >= this.batchChars || batchCells >= this.batchCells) {
          await flush();
        }
      }
      await flush();
      if (row.format === "csv" && mapper === null) return { error: "the CSV file is empty: it needs a header row" };
      return { error: null };
    } catch (e) {
      if (e instanceof ReadError || e instanceof HeaderError) {
        // Rows before the fault stay applied (SEMANTICS §11 Imports).
        await flush();
        return { error: e instanceof HeaderError ? `the CSV header cannot be used: ${e.message}` : e.message };
      }
      throw e;
    } finally {
      stream.destroy();
      file.destroy();
    }
  }

  private mapRow(
    row: ImportRow,
    src: SourceRow,
    mapper: ProfileRowMapper | EventRowMapper | null,
    ctx: MappingContext,
  ): PendingRow {
    if (src.problem) {
      // A CSV row the reader refused still names its person through its handle cells (SEMANTICS §10).
      const cells = Array.isArray(src.data) ? src.data : null;
      const handles = cells && mapper ? mapper.handlesOf(cells) : [];
      const column =
        cells && mapper && src.problemCell !== undefined ? mapper.fieldOf(src.problemCell, cells) : undefined;
      return {
        source: src,
        handles,
        refusal: describeFailure({ code: "INVALID_RECORD", error: src.problem, field: column }),
      };
    }
    try {
      if (row.kind === "documents") {
        const { line, handles } = mapDocumentLine(src.data as string);
        return { source: src, handles, document: line };
      }
      const mapped =
        row.format === "csv"
          ? (mapper as ProfileRowMapper | EventRowMapper).map(src.data as string[], ctx)
          : mapIngestLine(src.data as string, row.kind === "events" ? "events" : "profiles");
      // The row's record id, unless an NDJSON record brought its own (SEMANTICS §11 Idempotency).
      if (mapped.record.id === undefined || mapped.record.id === null)
        mapped.record.id = rowRecordId(keyOf(row), src.row);
      return { source: src, handles: mapped.handles, record: mapped.record };
    } catch (e) {
      // Handles read before the refusal keep the row findable when its person is deleted (SEMANTICS §10).
      if (e instanceof RowRefusal) return { source: src, handles: e.handles, refusal: refusalOf(e.refusal) };
      return { source: src, handles: [], refusal: refusalOf(e) };
    }
  }

  /** Applies one batch; returns its refused rows. */
  private async applyBatch(
    account: Account,
    row: ImportRow,
    rows: PendingRow[],
    ensureEmailHashes: () => Promise<void>,
  ): Promise<ImportFailure[]> {
    const refused = new Map<number, string>();
    rows.forEach((r, i) => {
      if (r.refusal !== undefined) refused.set(i, r.refusal);
    });
    // Rows refused while read are tied to their people now, before the batch moves any handle.
    const owners = await this.ownersOf(account.id, [...refused.keys()], rows, ensureEmailHashes);
    if (row.kind === "documents") {
      const lines: Array<{ index: number; line: DocumentLine; id: string }> = [];
      for (const [i, r] of rows.entries()) {
        if (!r.document) continue;
        let line = r.document;
        if (line.identifier.kind === "emailHash") {
          await ensureEmailHashes();
          const profileId = await this.store.imports.findProfileByEmailHash(account.id, line.identifier.hash);
          if (profileId === null) {
            refused.set(i, "UNKNOWN_PROFILE (email_hash): no profile has an Email with this hash");
            continue;
          }
          line = { ...line, identifier: { ...line.identifier, profileId } };
        }
        lines.push({ index: i, line, id: rowRecordId(keyOf(row), r.source.row) });
      }
      if (lines.length > 0) {
        const outcome = await applyDocumentLines(this.portrait, account, lines);
        for (const f of outcome.refused) refused.set(f.index, describeFailure(f));
      }
    } else {
      const records: unknown[] = [];
      const indexOf: number[] = [];
      for (const [i, r] of rows.entries()) {
        if (!r.record) continue;
        records.push(r.record);
        indexOf.push(i);
      }
      // Submitted together, the ingest batches share one transaction (group commit) and keep their order.
      const chunks: Array<Promise<void>> = [];
      for (let start = 0; start < records.length; start += MAX_BATCH) {
        const chunk = records.slice(start, start + MAX_BATCH);
        chunks.push(
          this.portrait.ingest(account, { records: chunk }).then((result) => {
            for (const f of result.unprocessed) refused.set(indexOf[start + f.index] as number, describeFailure(f));
          }),
        );
      }
      await Promise.all(chunks);
    }
    // Rows the pipeline refused: tied to the people their handles lead to once the batch is applied.
    const late = [...refused.keys()].filter((i) => !owners.has(i));
    for (const [i, found] of await this.ownersOf(account.id, late, rows, ensureEmailHashes)) owners.set(i, found);
    return [...refused.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([i, description]) => {
        const r = rows[i] as PendingRow;
        return {
          row: r.source.row,
          data: r.source.data,
          description,
          handles: [...r.handles, ...(owners.get(i) ?? [])],
        };
      });
  }

  /**
   * SEMANTICS §10: a refused row stays tied to the people its handles lead to when it is refused, as `profileId`
   * handles stored with it, so that deleting one of them redacts it even after the value changed hands (an Email
   * replaced, released by a merge). One look-up for the rows given; `profileId` handles name their profile already.
   */
  private async ownersOf(
    accountId: string,
    indexes: number[],
    rows: PendingRow[],
    ensureEmailHashes: () => Promise<void>,
  ): Promise<Map<number, ImportHandle[]>> {
    const out = new Map<number, ImportHandle[]>();
    const handles = indexes.flatMap((i) => (rows[i] as PendingRow).handles.filter((h) => h.kind !== "profileId"));
    for (const i of indexes) out.set(i, []);
    if (handles.length === 0) return out;
    if (handles.some((h) => h.kind === "email_hash")) await ensureEmailHashes();
    const ownerOf = new Map<string, string[]>();
    for (const o of await this.store.imports.profilesNamedBy(accountId, handles)) {
      const key = `${o.kind}\u0000${o.value}`;
      ownerOf.set(key, [...(ownerOf.get(key) ?? []), o.profileId]);
    }
    for (const i of indexes) {
      const r = rows[i] as PendingRow;
      const named = new Set(r.handles.filter((h) => h.kind === "profileId").map((h) => h.value));
      const found: ImportHandle[] = [];
      for (const h of r.handles) {
        for (const profileId of ownerOf.get(`${h.kind}\u0000${h.value}`) ?? []) {
          if (named.has(profileId)) continue;
          named.add(profileId);
          found.push({ kind: "profileId", value: profileId });
        }
      }
      out.set(i, found);
    }
    return out;
  }

  /**
   * SFTP imports: `<file>.result.json` next to the data file. The `<file>.failures.csv` it names is not written:
   * the SFTP server reads it from the store when a client opens it, so that it is redacted (SEMANTICS §10).
   */
  private async writeResults(accountId: string, importId: string): Promise<void> {
    const row = await this.store.imports.getImport(accountId, importId);
    const dir = row?.options.resultDir;
    const name = row?.options.resultName;
    if (!row || !dir || !name) return;
    try {
      const failuresName = `${name}.failures.csv`;
      await writeFile(
        path.join(dir, `${name}.result.json`),
        `${JSON.stringify(resultDocument(row, failuresName), null, 2)}\n`,
      );
    } catch (err) {
      this.opts.logger?.error({ err, importId }, "could not write the SFTP result files");
    }
  }
}

/**
 * What `<file>.result.json` holds: the import's status and counts. `error` has the shape of a refused manifest's
 * (`{code, message}`), so that a script reading result files reads one shape.
 */
export function resultDocument(row: ImportRow, failuresFile: string | null): Record<string, unknown> {
  return {
    ...importView(row),
    fileName: row.fileName,
    ...(row.error !== null && { error: { code: "IMPORT_FAILED", message: row.error } }),
    ...(failuresFile !== null && { failuresFile }),
  };
}

/** API.md `GET /v1/imports/{id}`, plus the byte counts the CLI's progress bar uses. */
export function importView(row: ImportRow): Record<string, unknown> {
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  return {
    id: row.id,
    kind: row.kind,
    // How it came (api: POST /v1/imports and `portrait import`; sftp: a manifest) and the file's name when it had one.
    source: row.source,
    fileName: row.fileName,
    createdAt: new Date(row.createdAt).toISOString(),
    status: row.status,
    rows: row.rows,
    processed: row.processed,
    failed: row.failed,
    startedAt: iso(row.startedAt),
    finishedAt: iso(row.finishedAt),
    ...(row.error !== null && { error: row.error }),
    bytes: row.bytes,
    // Bytes decoded from another charset may outnumber the file's: progress never passes the end.
    bytesRead: row.status === "done" ? row.bytes : Math.min(row.bytesRead, row.bytes),
  };
}
