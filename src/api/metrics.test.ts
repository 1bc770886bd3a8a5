import { describe, expect, it } from "vitest";
import { createMetrics } from "./metrics.js";

describe("GET /metrics while the store cannot answer", () => {
  it("still answers within the scrape's time, without the imports gauge, and with everything else", async () => {
    const never = new Promise<Array<{ status: string }>>(() => undefined);
    const metrics = createMetrics({ waitingRecords: () => 12, unfinishedImports: () => never });
    metrics.imports.rows("events", 5, 1);
    const started = Date.now();
    const text = await metrics.registry.metrics();
    expect(Date.now() - started).toBeLessThan(5000);
    expect(text).toContain("portrait_ingest_waiting_records 12");
    expect(text).toContain('portrait_import_rows_total{kind="events",outcome="processed"} 5');
    expect(text).not.toMatch(/^portrait_imports\{/m);

    const refusing = createMetrics({
      waitingRecords: () => 0,
      unfinishedImports: () => Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:5432")),
    });
    const answered = await refusing.registry.metrics();
    expect(answered).toContain("portrait_ingest_waiting_records 0");
    expect(answered).not.toMatch(/^portrait_imports\{/m);
  });

  it("counts imports by status as the store lists them", async () => {
    const rows = [{ status: "queued" }, { status: "queued" }, { status: "running" }];
    const metrics = createMetrics({ waitingRecords: () => 0, unfinishedImports: async () => rows });
    const text = await metrics.registry.metrics();
    expect(text).toContain('portrait_imports{status="queued"} 2');
    expect(text).toContain('portrait_imports{status="running"} 1');
  });
});
