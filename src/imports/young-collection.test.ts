import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { COLLECT_EVERY_BYTES, UploadCollector } from "./young-collection.js";

/** MB of ArrayBuffer backing stores alive or not yet freed (their release completes shortly after a collection). */
async function bufferMb(): Promise<number> {
  await sleep(30);
  return process.memoryUsage().arrayBuffers / (1024 * 1024);
}

describe("UploadCollector", () => {
  it("frees the buffers an upload is done with each time another 16 MB have passed, not before", async () => {
    const collector = new UploadCollector();
    // Dead socket buffers, as an upload leaves them: 16 MB in 64 KB reads.
    for (let i = 0; i < 256; i++) Buffer.allocUnsafeSlow(64 * 1024).fill(1);
    const dead = await bufferMb();
    collector.received(COLLECT_EVERY_BYTES - 1);
    expect(await bufferMb()).toBeGreaterThan(dead - 1);
    collector.received(1);
    expect(await bufferMb()).toBeLessThan(dead - 15);
  });
});
