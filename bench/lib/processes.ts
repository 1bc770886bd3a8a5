/**
 * Servers under test run as CHILD PROCESSES, as PERFORMANCE.md measures them: the load generator (autocannon, in
 * the bench process) and the server are separate processes. On this 2-core machine they share the two cores, so
 * every HTTP figure is "server + load generator on the same box" — the spec's setting, not a ceiling.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freshDatabase } from "./postgres.js";
import type { BenchContext } from "./scenario.js";
import { registerExitCleanup } from "./scope.js";

export const SECRET_KEY = "sk_bench_secret_key_0123456789abcdef";
export const PUBLIC_KEY = "pk_bench_public_key_0123456789abcdef";

/** The repository root (this file runs as dist/bench/lib/processes.js). */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

export interface ServerProcess {
  /** `http://127.0.0.1:<port>` */
  url: string;
  pid: number;
  /** Its data directory (SQLite), removed on stop. */
  dir: string;
  /** SIGTERM (the server finishes in-flight work and closes its store), SIGKILL after a grace period. */
  stop(): Promise<void>;
}

/** A temp directory removed by the scenario's scope, and on exit if the bench is interrupted. */
export function tempDir(ctx: BenchContext, prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), `${prefix}-`));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  const unregister = registerExitCleanup(remove);
  ctx.scope.defer(() => {
    unregister();
    remove();
  });
  return dir;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      const port = typeof address === "object" && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** Spawns `node <args>` with `env`, waits until GET <url>/healthz (or `readyPath`) answers 200. */
async function spawnServer(
  ctx: BenchContext,
  opts: { name: string; script: string; args: string[]; env: Record<string, string>; dir: string; readyPath: string },
): Promise<ServerProcess> {
  const port = await freePort();
  const nodeFlags: string[] = [];
  if (ctx.cpuProfileDir) {
    mkdirSync(ctx.cpuProfileDir, { recursive: true });
    nodeFlags.push(
      "--cpu-prof",
      `--cpu-prof-dir=${ctx.cpuProfileDir}`,
      `--cpu-prof-name=${opts.name}-${port}.cpuprofile`,
    );
  }
  // The parent's PORTRAIT_* settings must not leak into the server (a stray PORTRAIT_DATABASE_URL would switch store).
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("PORTRAIT_")) env[key] = value;
  }
  Object.assign(env, opts.env, { PORTRAIT_PORT: String(port), PORTRAIT_HOST: "127.0.0.1" });

  const child = spawn(process.execPath, [...nodeFlags, opts.script, ...opts.args], {
    cwd: REPO_ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-8000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const unregister = registerExitCleanup(() => {
    if (!gone) child.kill("SIGKILL");
  });

  const stop = async () => {
    unregister();
    if (!gone) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
  };
  ctx.scope.defer(stop);

  const url = `http://127.0.0.1:${port}`;
  await waitReady(
    child,
    url + opts.readyPath,
    () => gone,
    () => output,
  );
  if (child.pid === undefined) throw new Error(`${opts.name}: no pid`);
  return { url, pid: child.pid, dir: opts.dir, stop };
}

async function waitReady(child: ChildProcess, url: string, gone: () => boolean, output: () => string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (gone()) throw new Error(`server exited (code ${child.exitCode}) before it was ready:\n${output()}`);
    try {
      const res = await fetch(url);
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`server not ready after 30 s:\n${output()}`);
}

/**
 * A real Portrait server, `node bin/portrait.js serve`, on a fresh temp data dir with the bench's bootstrap keys.
 * With `--store postgres` it gets a fresh database of its own (bench/lib/postgres.ts).
 */
export async function startPortrait(ctx: BenchContext, name: string): Promise<ServerProcess> {
  const dir = tempDir(ctx, `portrait-bench-${name.toLowerCase()}`);
  const env: Record<string, string> = {
    PORTRAIT_DATA_DIR: dir,
    PORTRAIT_BOOTSTRAP_SECRET_KEY: SECRET_KEY,
    PORTRAIT_BOOTSTRAP_PUBLIC_KEY: PUBLIC_KEY,
    PORTRAIT_LOG_LEVEL: "warn",
  };
  if (ctx.store === "postgres") env.PORTRAIT_DATABASE_URL = await freshDatabase(ctx, name);
  return spawnServer(ctx, {
    name: `portrait-${name}`,
    script: path.join(REPO_ROOT, "bin", "portrait.js"),
    args: ["serve"],
    env,
    dir,
    readyPath: "/healthz",
  });
}

/** The bare fastify route of PERFORMANCE.md (B3's ceiling and baseline), see bare-server.ts. */
export async function startBareServer(ctx: BenchContext): Promise<ServerProcess> {
  return spawnServer(ctx, {
    name: "bare-fastify",
    script: fileURLToPath(new URL("./bare-server.js", import.meta.url)),
    args: [],
    env: {},
    dir: "",
    readyPath: "/healthz",
  });
}
