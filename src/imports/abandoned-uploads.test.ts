import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteStore } from "../store/sqlite/sqlite-store.js";
import { ImportService } from "./service.js";

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0)) await f();
});

describe("uploads cut off by a process that died", () => {
  it("are removed at start when untouched long enough; whole files and fresh uploads stay", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "portrait-abandoned-"));
    const store = SqliteStore.open(":memory:");
    await store.migrate();
    cleanup.push(async () => {
      await store.close();
      rmSync(dataDir, { recursive: true, force: true });
    });
    const dir = path.join(dataDir, "imports");
    mkdirSync(dir, { recursive: true });
    const file = (name: string, ageMs: number) => {
      const at = path.join(dir, name);
      writeFileSync(at, "Email\nx@x.io\n");
      const when = (Date.now() - ageMs) / 1000;
      utimesSync(at, when, when);
      return at;
    };
    const fresh = file("fresh.part", 0);
    const stale = file("stale.part", 2 * 24 * 3600_000);
    const whole = file("0123456789abcdef0123456789abcdef", 2 * 24 * 3600_000);
    const service = new ImportService(store.imports, null, { dataDir, maxBytes: 1000 });
    expect(await service.removeAbandonedUploads(24 * 3600_000)).toBe(1);
    expect([existsSync(fresh), existsSync(stale), existsSync(whole)]).toEqual([true, false, true]);
    expect(await service.removeAbandonedUploads(0)).toBe(1);
    expect([existsSync(fresh), existsSync(whole)]).toEqual([false, true]);
    rmSync(dir, { recursive: true });
    expect(await service.removeAbandonedUploads(0)).toBe(0);
  });
});
