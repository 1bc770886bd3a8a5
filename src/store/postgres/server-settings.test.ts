import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase } from "../../test-support/postgres.js";
import { PostgresStore } from "./postgres-store.js";
import { sharedBuffersWarning } from "./server-settings.js";

const MB = 1024 * 1024;

describe("sharedBuffersWarning", () => {
  it("speaks up for PostgreSQL's default pool and below, naming the value and the docs", () => {
    for (const [bytes, shown] of [
      [128 * MB, "128MB"],
      [32 * MB, "32MB"],
    ] as const) {
      const warning = sharedBuffersWarning(bytes, shown);
      expect(warning).toContain(`shared_buffers is ${shown}`);
      expect(warning).toContain("docs/scaling.md");
    }
  });

  it("stays quiet once the pool was made larger than the default", () => {
    expect(sharedBuffersWarning(128 * MB + 8192, "131080kB")).toBeNull();
    expect(sharedBuffersWarning(1024 * MB, "1GB")).toBeNull();
  });
});

// Skipped (reason printed) without a server, except in CI where that fails.
const database = await createTestDatabase();

describe.skipIf(database === null)("PostgresStore.settingsWarnings", () => {
  let store: PostgresStore;
  beforeAll(async () => {
    store = await PostgresStore.connect(database!.url);
  });
  afterAll(async () => {
    await store?.close();
    await database?.drop();
  });

  it("warns exactly when the server it is connected to still runs the default pool", async () => {
    const admin = new pg.Client({ connectionString: database!.url });
    await admin.connect();
    const { rows } = await admin
      .query<{ bytes: string; shown: string }>(
        "SELECT pg_size_bytes(current_setting('shared_buffers'))::text AS bytes, current_setting('shared_buffers') AS shown",
      )
      .finally(() => admin.end());
    const { bytes, shown } = rows[0]!;
    const warnings = await store.settingsWarnings();
    if (Number(bytes) <= 128 * MB) expect(warnings).toEqual([sharedBuffersWarning(Number(bytes), shown)]);
    else expect(warnings).toEqual([]);
  });
});
