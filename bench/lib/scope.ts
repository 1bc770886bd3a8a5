/**
 * Cleanups that must run however a scenario ends: children killed, temp dirs removed, stores closed.
 * A Scope runs its cleanups in reverse order when closed; `registerExitCleanup` is the last resort for a bench
 * process interrupted (Ctrl-C) or crashing, where only synchronous work is possible.
 */
const onExit = new Set<() => void>();
let installed = false;

/** Registers a synchronous cleanup for process exit (and SIGINT/SIGTERM); returns its unregister function. */
export function registerExitCleanup(fn: () => void): () => void {
  if (!installed) {
    installed = true;
    const runAll = () => {
      for (const cleanup of [...onExit].reverse()) {
        try {
          cleanup();
        } catch {
          // best effort: the process is leaving
        }
      }
      onExit.clear();
    };
    process.on("exit", runAll);
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.once(signal, () => {
        runAll();
        process.exit(130);
      });
    }
  }
  onExit.add(fn);
  return () => onExit.delete(fn);
}

export class Scope {
  private readonly cleanups: Array<() => unknown> = [];

  defer(cleanup: () => unknown): void {
    this.cleanups.push(cleanup);
  }

  /** Runs every cleanup (newest first); reports failures without stopping. */
  async close(): Promise<void> {
    while (this.cleanups.length > 0) {
      const cleanup = this.cleanups.pop()!;
      try {
        await cleanup();
      } catch (error) {
        process.stderr.write(`bench: cleanup failed: ${(error as Error).message}\n`);
      }
    }
  }
}
