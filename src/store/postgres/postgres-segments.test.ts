import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { parseCondition } from "../../engine/segment/parse.js";
import { createTestDatabase } from "../../test-support/postgres.js";
import { blankProfile, newAccount, newId } from "../conformance/fixtures.js";
import { describeSegmentConformance } from "../conformance/segments.js";
import type { Store } from "../store.js";
import { PostgresStore } from "./postgres-store.js";

// Decided while the file is collected: skipped (reason printed) without a server, except in CI where that fails.
const database = await createTestDatabase();

describe.skipIf(database === null)("PostgreSQL segments", () => {
  afterAll(async () => {
    await database?.drop();
  });

  describeSegmentConformance(
    "postgres",
    async () => {
      const store = await PostgresStore.connect(database!.url);
      await store.migrate();
      return store;
    },
    (store: Store) => store.close(),
  );

  it("rebuilds the property index of profiles written before it existed, at the next migrate", async () => {
    const first = await PostgresStore.connect(database!.url);
    await first.migrate();
    const account = newAccount();
    await first.createAccount(account);
    const ids = Array.from({ length: 1500 }, () => newId());
    await first.write(account.id, async (tx) => {
      for (const [i, id] of ids.entries()) {
        const p = blankProfile(id);
        p.props.Rank = { v: i, t: "number", ts: 1 };
        await tx.insertProfile(account.id, p);
      }
    });
    await first.close();
    const client = new pg.Client(database!.url);
    await client.connect();
    await client.query("DELETE FROM segment_values WHERE account_id = $1", [account.id]);
    await client.query("INSERT INTO meta (key, value) VALUES ('segment_values.backfill', '0')");
    await client.end();
    const second = await PostgresStore.connect(database!.url);
    try {
      await second.migrate();
      const c = parseCondition({ property: "Rank", op: "gte", value: 1000 }, { timezone: "UTC" });
      const ctx = { now: Date.now(), timezone: "UTC", segment: () => undefined };
      expect(await second.segments.countSegment(account.id, c, ctx)).toBe(500);
      expect(await second.getMeta("segment_values.backfill")).toBeNull();
    } finally {
      await second.close();
    }
  });
});
