/**
 * A young-generation collection on demand, for uploads (PERFORMANCE.md B4: peak RSS flat as the file grows).
 *
 * Each socket read of an upload arrives in a buffer of its own, dead as soon as it is hashed and written to disk.
 * Those buffers are freed only by a collection, and an upload allocates almost no JavaScript objects, so none comes:
 * a 360 MB upload left ≈ 16 MB more resident at the server's peak than a 90 MB one (181 against 165 MB). Collecting
 * the young generation every few MB of upload (≈ 1 ms each) keeps the peak where a small file leaves it.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

type Collect = (options: { type: "minor" }) => void;

/** undefined until first asked for; null where the runtime gives no collector (then uploads simply skip it). */
let collector: Collect | null | undefined;

function collectorOf(): Collect | null {
  if (collector === undefined) {
    try {
      // The flag takes effect for contexts created after it: a new context's `gc`, not the process's global one.
      setFlagsFromString("--expose-gc");
      const gc: unknown = runInNewContext("gc");
      collector = typeof gc === "function" ? (gc as Collect) : null;
    } catch {
      collector = null;
    }
  }
  return collector;
}

/** Upload bytes between two collections. */
export const COLLECT_EVERY_BYTES = 16 * 1024 * 1024;

/** Counts bytes received; collects the young generation each time another COLLECT_EVERY_BYTES have passed. */
export class UploadCollector {
  private since = 0;

  received(bytes: number): void {
    this.since += bytes;
    if (this.since < COLLECT_EVERY_BYTES) return;
    this.since = 0;
    collectorOf()?.({ type: "minor" });
  }
}
