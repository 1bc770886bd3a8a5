/**
 * Bulk imports as the server runs them: the upload service the routes use, the runner that works through queued
 * imports (resuming what a previous process left), and the SFTP drop point when PORTRAIT_SFTP_PORT is set.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import type { Config } from "../config.js";
import type { Portrait } from "../pipeline/portrait.js";
import { type ImportObserver, ImportRunner } from "./runner.js";
import { ImportService } from "./service.js";
import type { SftpDropPoint } from "./sftp/server.js";

export interface Imports {
  runner: ImportRunner;
  service: ImportService;
  /** The drop point, once `start` has opened it (null when PORTRAIT_SFTP_PORT is not set). */
  sftp: SftpDropPoint | null;
  /** After the HTTP server listens: resume queued imports, open the SFTP port. */
  start(): Promise<void>;
  /** Closes the SFTP port and stops the runner between batches (a running import resumes at the next start). */
  stop(): Promise<void>;
}

export function createImports(
  portrait: Portrait,
  config: Pick<Config, "dataDir" | "importMaxBytes" | "importClaimTimeoutMs" | "sftpPort" | "host"> &
    Partial<Pick<Config, "sftpLoginGraceMs">>,
  logger?: Logger,
  observer?: ImportObserver,
): Imports {
  const store = portrait.store;
  const runner = new ImportRunner(portrait, {
    dataDir: config.dataDir,
    workerId: `${process.pid}-${randomBytes(6).toString("hex")}`,
    claimTimeoutMs: config.importClaimTimeoutMs,
    // SQLite has one server process: what a previous process was running is resumed at once.
    reclaimOnStart: store.dialect === "sqlite",
    ...(logger && { logger }),
    ...(observer && { observer }),
  });
  const service = new ImportService(store.imports, runner, {
    dataDir: config.dataDir,
    maxBytes: config.importMaxBytes,
  });
  const imports: Imports = {
    runner,
    service,
    sftp: null,
    async start() {
      // SQLite has one server process: every upload left half-written is abandoned. PostgreSQL nodes may share the
      // data directory, and one may be receiving an upload now: only those untouched for a day.
      const removed = await service.removeAbandonedUploads(store.dialect === "sqlite" ? 0 : 24 * 3600_000);
      if (removed > 0) logger?.info({ removed }, "imports: removed uploads cut off by an earlier process");
      // Before the runner claims anything: an import whose upload is gone ends `failed` (SQLite) or is named (PostgreSQL).
      await runner.failLostUploads();
      runner.start();
      const port = config.sftpPort;
      if (port === null) return;
      // Loaded only when configured: ssh2 costs ≈ 13 MB of resident memory (its WASM crypto), which B4 counts.
      const { SftpDropPoint } = await import("./sftp/server.js");
      imports.sftp = new SftpDropPoint({
        store,
        imports: service,
        dataDir: config.dataDir,
        port,
        host: config.host,
        ...(config.sftpLoginGraceMs !== undefined && { loginGraceMs: config.sftpLoginGraceMs }),
        ...(logger && { logger }),
      });
      await imports.sftp.start();
    },
    async stop() {
      await imports.sftp?.stop();
      await runner.stop();
    },
  };
  return imports;
}
