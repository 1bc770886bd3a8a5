import { PerformanceObserver } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { COLLECT_EVERY_BYTES, UploadCollector } from "./young-collection.js";

/** MB of ArrayBuffer backing stores alive or not yet freed (their release completes shortly after a collection). */
async function bufferMb(): Promise<number> {
  await sleep(30);
  return process.memoryUsage().arrayBuffers / (1024 * 1024);
}

/** Counts the garbage collections V8 reports, ours and its own. */
function countCollections(): { count: () => number; stop: () => void } {
  let seen = 0;
  const observer = new PerformanceObserver((list) => {
    seen += list.getEntries().length;
  });
  observer.observe({ entryTypes: ["gc"] });
  return { count: () => seen, stop: () => observer.disconnect() };
}

describe("UploadCollector", () => {
  it("frees the buffers an upload is done with each time another 16 MB have passed, not before", async () => {
    const collections = countCollections();
    try {
      // A collection that V8 starts on its own (the test runner allocates too) would free the buffers early and make
      // "not before" prove nothing: such an attempt is run again rather than judged.
      for (let attempt = 0; attempt < 5; attempt++) {
        const collector = new UploadCollector();
        const start = collections.count();
        // Dead socket buffers, as an upload leaves them: 16 MB in 64 KB reads.
        for (let i = 0; i < 256; i++) Buffer.allocUnsafeSlow(64 * 1024).fill(1);
        const dead = await bufferMb();
        collector.received(COLLECT_EVERY_BYTES - 1);
        const notYet = await bufferMb();
        if (collections.count() !== start) continue;
        expect(notYet).toBeGreaterThan(dead - 1);
        collector.received(1);
        expect(await bufferMb()).toBeLessThan(dead - 15);
        expect(collections.count()).toBeGreaterThan(start);
        return;
      }
      expect.fail("a collection came before 16 MB had passed in every attempt: V8's own, or the collector's too early");
    } finally {
      collections.stop();
    }
  });
});
