/**
 * The `portrait` command as an operator runs it, for tests: src/cli/main.ts bundled with esbuild (so that a test runs
 * the source under test, not a stale dist/), run with node in a child process.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import path from "node:path";
import { build } from "esbuild";

export const ROOT = path.resolve(import.meta.dirname, "../..");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Cli {
  /** Runs `portrait …args` to its end. The store variables are cleared unless `env` sets them. */
  run(args: string[], env?: Record<string, string>): Promise<CliResult>;
  /** Starts `portrait …args` and returns the child (stdio piped), as another user when `as` says so (root only). */
  spawn(args: string[], env?: Record<string, string>, as?: { uid: number; gid: number }): ChildProcess;
  /** Removes the bundle. */
  remove(): void;
}

/** Bundles the CLI; the bundle sits inside the repository so that its imports of packages resolve to node_modules. */
export async function bundleCli(): Promise<Cli> {
  const cache = path.join(ROOT, "node_modules", ".cache");
  mkdirSync(cache, { recursive: true });
  const dir = mkdtempSync(path.join(cache, "portrait-cli-test-"));
  chmodSync(dir, 0o755); // readable by the other user a test may run it as
  const file = path.join(dir, "portrait.mjs");
  await build({
    entryPoints: [path.join(ROOT, "src/cli/main.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    outfile: file,
    logLevel: "silent",
  });
  const environment = (env: Record<string, string>) => ({
    ...process.env,
    PORTRAIT_DATA_DIR: "",
    PORTRAIT_DATABASE_URL: "",
    PORTRAIT_KEY: "",
    PORTRAIT_PORT: "",
    PORTRAIT_URL: "",
    ...env,
  });
  return {
    run(args, env = {}) {
      return new Promise((resolve) => {
        execFile(
          process.execPath,
          [file, ...args],
          { cwd: ROOT, encoding: "utf8", env: environment(env), timeout: 60_000 },
          (error, stdout, stderr) => {
            const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
            resolve({ code, stdout, stderr });
          },
        );
      });
    },
    spawn(args, env = {}, as) {
      return spawn(process.execPath, [file, ...args], { cwd: ROOT, env: environment(env), stdio: "pipe", ...as });
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
