/**
 * Imports left `queued` or `running` whose upload is gone (a store restored from a backup, which holds no uploads):
 * at start, on SQLite, each ends `failed` with an error naming the file, a log line, and a count in /metrics; one whose
 * file is there still resumes. On PostgreSQL a node's data directory may not be the one that holds the upload
 * (docs/scaling.md): such an import is never failed, only named in a warning, and one a live node holds is left alone.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { createMetrics } from "../api/metrics.js";
import type { ImportRow } from "../store/import-store.js";
import { queuedImportRow } from "../test-support/imports.js";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { createImports } from "./index.js";

const stores = await storesUnderTest();
let harnesses: Harness[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const h of harnesses) await h.close();
  harnesses = [];
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function importRow(h: Harness, id: string, over: Partial<ImportRow>): ImportRow {
  return queuedImportRow(h.account.id, id, {
    fileName: "customers.csv",
    filePath: path.join("imports", id),
    createdAt: Date.now() - 60_000,
    ...over,
  });
}

function logged(): { logger: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      out.push(String(chunk));
      done();
    },
  });
  const logger = pino({ level: "info" }, sink);
  return {
    logger,
    lines: () =>
      out
        .join("")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l)),
  };
}

describe.each(stores)("imports whose upload is gone (%s)", (kind) => {
  it("at start: failed with the file named on SQLite; only warned about on PostgreSQL; a file in place resumes", async () => {
    const h = await makeHarness({}, kind);
    harnesses.push(h);
    const dataDir = mkdtempSync(path.join(tmpdir(), "portrait-lost-uploads-"));
    dirs.push(dataDir);
    mkdirSync(path.join(dataDir, "imports"));
    const past = Date.now() - 3_600_000;
    // Running when the backup was taken, by a worker long gone; queued then; and one whose upload is still here.
    await h.store.imports.insertImport(
      importRow(h, "a".repeat(32), {
        status: "running",
        claimedBy: "gone-1",
        heartbeatAt: past,
        startedAt: past,
        rows: 79,
      }),
    );
    await h.store.imports.insertImport(importRow(h, "b".repeat(32), { createdAt: past + 1 }));
    writeFileSync(path.join(dataDir, "imports", "c".repeat(32)), "Email\nana@example.com\n");
    await h.store.imports.insertImport(importRow(h, "c".repeat(32), { createdAt: past + 2, bytes: 22 }));
    // On PostgreSQL: held by another node now (fresh heartbeat), its file in that node's directory. (SQLite has no
    // such case: its data directory is the store's, and a worker removes an upload only once its import ended.)
    if (kind === "postgres")
      await h.store.imports.insertImport(
        importRow(h, "d".repeat(32), {
          accountId: h.account.id,
          status: "running",
          claimedBy: "other-node",
          heartbeatAt: Date.now() + 60_000,
          createdAt: past + 3,
        }),
      );

    const metrics = createMetrics({
      waitingRecords: () => 0,
      unfinishedImports: () => h.store.imports.listUnfinished(),
    });
    const log = logged();
    const imports = createImports(
      h.portrait,
      { dataDir, importMaxBytes: 1e9, importClaimTimeoutMs: 15_000, sftpPort: null, host: "127.0.0.1" },
      log.logger,
      metrics.imports,
    );
    await imports.start();
    try {
      const a = await h.store.imports.getImport(h.account.id, "a".repeat(32));
      const b = await h.store.imports.getImport(h.account.id, "b".repeat(32));
      const d = kind === "sqlite" ? null : await h.store.imports.getImport(h.account.id, "d".repeat(32));
      const warnings = log.lines().filter((l) => l.level === 40);
      if (kind === "sqlite") {
        for (const row of [a, b]) {
          expect(row?.status).toBe("failed");
          expect(row?.error).toMatch(/^the uploaded file is missing \(imports\/[ab]{32} in the data directory; /);
          expect(row?.finishedAt).not.toBeNull();
        }
        expect(a?.rows).toBe(79);
        expect(warnings.map((w) => w.importId).sort()).toEqual(["a".repeat(32), "b".repeat(32)]);
        expect(String(warnings[0]?.msg)).toMatch(/failed: its upload is missing/);
        const text = await metrics.registry.metrics();
        expect(text).toMatch(/portrait_imports_finished_total\{kind="profiles",status="failed"\} 2/);
      } else {
        expect(a?.status).toBe("running");
        expect(b?.status).toBe("queued");
        // Named, as neither is held by a live node; `d` is another node's and not named.
        expect(warnings.map((w) => w.importId).sort()).toEqual(["a".repeat(32), "b".repeat(32)]);
        expect(String(warnings[0]?.msg)).toMatch(/upload is not in this node's data directory/);
      }
      // The import whose file is here still runs (after the lost ones on SQLite; on PostgreSQL `d` holds the account).
      if (kind === "postgres") {
        expect(d?.status).toBe("running");
        expect(d?.claimedBy).toBe("other-node");
      } else {
        await expect
          .poll(async () => (await h.store.imports.getImport(h.account.id, "c".repeat(32)))?.status, {
            timeout: 10_000,
          })
          .toBe("done");
      }
    } finally {
      await imports.stop();
    }
  }, 30_000);
});
