/**
 * `portrait serve` and the files of its SQLite store: what it creates is for its own user only, a store others may
 * read is named in a warning, and a store it may not write stops it at start instead of failing every write later.
 */
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleCli, type Cli } from "../test-support/cli.js";

let cli: Cli;
const temp: string[] = [];

beforeAll(async () => {
  cli = await bundleCli();
}, 60_000);

afterAll(() => {
  cli?.remove();
  for (const dir of temp) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "portrait-serve-store-"));
  temp.push(dir);
  return dir;
}

interface Served {
  child: ChildProcess;
  output: () => string;
  code: Promise<number | null>;
}

function serve(
  dataDir: string,
  as?: { uid: number; gid: number },
  args: string[] = [],
  more: Record<string, string> = {},
): Served {
  const env = { PORTRAIT_DATA_DIR: dataDir, PORTRAIT_PORT: "0", PORTRAIT_HOST: "127.0.0.1", ...more };
  const child = cli.spawn(["serve", ...args], env, as);
  let out = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  const code = once(child, "exit").then(([c]) => c as number | null);
  return { child, output: () => out, code };
}

async function started(served: Served): Promise<void> {
  await expect.poll(served.output, { timeout: 30_000, interval: 100 }).toMatch(/Portrait (is ready|listening)/);
}

async function stop(served: Served): Promise<void> {
  served.child.kill("SIGTERM");
  await served.code;
}

const mode = (file: string) => (statSync(file).mode & 0o777).toString(8);

describe("portrait serve and its SQLite files", () => {
  it("creates the data directory 0700 and the store's files 0600, and warns about nothing", async () => {
    const dir = path.join(tempDir(), "data");
    const served = serve(dir);
    try {
      await started(served);
      expect(mode(dir)).toBe("700");
      for (const file of ["portrait.db", "portrait.db-wal", "portrait.db-shm"]) {
        expect(mode(path.join(dir, file))).toBe("600");
      }
      expect(served.output()).not.toMatch(/other users of this machine/);
    } finally {
      await stop(served);
    }
  }, 60_000);

  it("names a store other users may read, in a warning, and serves it", async () => {
    const dir = path.join(tempDir(), "data");
    const first = serve(dir);
    await started(first);
    await stop(first);
    chmodSync(dir, 0o755);
    chmodSync(path.join(dir, "portrait.db"), 0o644);
    const served = serve(dir);
    try {
      await started(served);
      expect(served.output()).toContain(`other users of this machine may read the store: ${dir} (0755)`);
      expect(served.output()).toContain(`${path.join(dir, "portrait.db")} (0644)`);
      expect(served.output()).toContain("chmod go-rwx");
    } finally {
      await stop(served);
    }
  }, 60_000);

  it("refuses to start on a store it may not write, saying so in one line, and leaves the store as it was", async () => {
    const root = tempDir();
    const dir = path.join(root, "data");
    const first = serve(dir);
    await started(first);
    await stop(first);
    const file = path.join(dir, "portrait.db");
    const before = statSync(file);
    // Root writes whatever the modes say: the server then runs as nobody, who may write the directory (for the WAL
    // files) but not the store itself.
    const asRoot = process.getuid?.() === 0;
    chmodSync(root, 0o755);
    chmodSync(dir, 0o777);
    chmodSync(file, 0o444);
    for (const f of ["portrait.db-wal", "portrait.db-shm"]) rmSync(path.join(dir, f), { force: true });
    const served = serve(dir, asRoot ? { uid: 65534, gid: 65534 } : undefined);
    const outcome = await Promise.race([
      served.code.then((code) => `exited ${code}`),
      started(served).then(
        () => "started",
        () => "neither",
      ),
    ]);
    if (outcome === "started") await stop(served);
    expect(outcome).toMatch(/^exited [1-9]/);
    const lines = served.output().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /cannot open the SQLite store .*portrait\.db \(SQLITE_READONLY: the file is read-only for this process \(uid \d+\): check its owner and permissions; PORTRAIT_DATA_DIR\)/,
    );
    expect(statSync(file).size).toBe(before.size);
    expect(statSync(file).mtimeMs).toBe(before.mtimeMs);
  }, 60_000);

  it("a data directory made before (0755) stays as it is, and is only warned about", async () => {
    const dir = path.join(tempDir(), "made-before");
    mkdirSync(dir, { mode: 0o755 });
    chmodSync(dir, 0o755);
    const served = serve(dir);
    try {
      await started(served);
      expect(mode(dir)).toBe("755");
      expect(mode(path.join(dir, "portrait.db"))).toBe("600");
      expect(served.output()).toContain(`may read the store: ${dir} (0755);`);
    } finally {
      await stop(served);
    }
  }, 60_000);

  it("--data-dir chooses the directory over PORTRAIT_DATA_DIR, as for the operator commands", async () => {
    const root = tempDir();
    const fromEnv = path.join(root, "from-env");
    const fromFlag = path.join(root, "from-flag");
    const served = serve(fromEnv, undefined, ["--data-dir", fromFlag]);
    try {
      await started(served);
      expect(existsSync(path.join(fromFlag, "portrait.db"))).toBe(true);
      expect(existsSync(fromEnv)).toBe(false);
    } finally {
      await stop(served);
    }
  }, 60_000);
});

describe("restoring a backup after a crash, as the README says", () => {
  const KEY = "sk_restore_test_0123456789";
  const urlOf = (served: Served) => /API:\s+(http:\/\/\S+)\/v1/.exec(served.output())?.[1] ?? null;
  const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
  const headers = { authorization: `Bearer ${KEY}`, "content-type": "application/json" };

  async function ingest(url: string, device: string, n: number): Promise<void> {
    const records = Array.from({ length: n }, (_, i) => ({ type: "event", deviceId: device, name: `E${i % 7}` }));
    const res = await fetch(`${url}/v1/ingest`, { method: "POST", headers, body: JSON.stringify({ records }) });
    expect(res.status).toBe(200);
  }
  async function profilesOf(url: string, device: string): Promise<number> {
    const res = await fetch(`${url}/v1/profiles?deviceId=${device}`, { headers });
    expect(res.status).toBe(200);
    return ((await res.json()) as { profiles: unknown[] }).profiles.length;
  }

  it("stop, delete -wal and -shm, copy the backup in: the copy opens with what it held; half done, serve refuses", async () => {
    const root = tempDir();
    const dir = path.join(root, "data");
    const backup = path.join(root, "backup.db");
    const db = path.join(dir, "portrait.db");
    const first = serve(dir, undefined, [], { PORTRAIT_BOOTSTRAP_SECRET_KEY: KEY });
    await started(first);
    const url = urlOf(first) as string;
    await ingest(url, "before-backup", 10);
    const made = await cli.run(["backup", backup, "--data-dir", dir]);
    expect(made.code).toBe(0);
    const backupHash = sha(backup);
    for (let i = 0; i < 5; i++) await ingest(url, `after-backup-${i}`, 1000);
    // A crash: the old store's WAL and shared-memory files stay beside it.
    first.child.kill("SIGKILL");
    await first.code;
    expect(statSync(`${db}-wal`).size).toBeGreaterThan(0);

    // Half done: the old store removed, its WAL left, the copy not yet in place. serve names the files and creates nothing.
    rmSync(db);
    const half = serve(dir);
    expect(await half.code).toBe(1);
    expect(half.output().trim().split("\n")).toHaveLength(1);
    expect(half.output()).toContain(`portrait: ${db} is missing but ${db}-wal is there`);
    expect(half.output()).toContain(`delete ${db}-wal and ${db}-shm, then copy the backup in as ${db}`);
    expect(existsSync(db)).toBe(false);

    // The README's steps: delete the two files, copy (not move) the backup in.
    rmSync(`${db}-wal`, { force: true });
    rmSync(`${db}-shm`, { force: true });
    copyFileSync(backup, db);
    const restored = serve(dir);
    try {
      await started(restored);
      const at = /Portrait listening on (\S+)/.exec(restored.output())?.[1] as string;
      expect(await profilesOf(at, "before-backup")).toBe(1);
      expect(await profilesOf(at, "after-backup-0")).toBe(0);
      await ingest(at, "after-restore", 10);
      expect(await profilesOf(at, "after-restore")).toBe(1);
    } finally {
      await stop(restored);
    }
    const check = await cli.run(["accounts", "list", "--data-dir", dir]);
    expect(check.code).toBe(0);
    expect(sha(backup)).toBe(backupHash);
  }, 120_000);
});
