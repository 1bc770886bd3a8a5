/**
 * PostgreSQL ending the server's connections (a restart, a failover, an administrator): the statement in flight
 * fails, and the process goes on, writing through new connections and listening for account changes again.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deferred } from "../../test-support/deferred.js";
import { createTestDatabase, type TestDatabase } from "../../test-support/postgres.js";
import { blankProfile, newAccount } from "../conformance/fixtures.js";
import type { AccountChange } from "../store.js";
import { PostgresStore } from "./postgres-store.js";

// Decided while the file is collected: skipped (reason printed) without a server, except in CI where that fails.
const db: TestDatabase | null = await createTestDatabase();

async function eventually(check: () => void, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe.skipIf(db === null)("PostgreSQL connections ended by the server", () => {
  let store: PostgresStore;
  let admin: pg.Client;
  const account = newAccount();
  const terminate = async (filter: string) =>
    (
      await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND ${filter}`,
      )
    ).rowCount ?? 0;

  beforeAll(async () => {
    store = await PostgresStore.connect(db!.url);
    await store.migrate();
    await store.createAccount(account);
    admin = new pg.Client({ connectionString: db!.url });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await store?.close();
    await db?.drop();
  });

  it("a write whose connection is ended fails or retries, and the next writes go through new connections", async () => {
    const inside = deferred();
    const ended = deferred();
    const write = store.write(account.id, async (tx) => {
      inside.resolve();
      await ended.promise;
      await tx.insertProfile(account.id, blankProfile());
    });
    const settled = write.then(
      () => "committed",
      () => "failed",
    );
    await inside.promise;
    expect(await terminate("application_name <> 'portrait-listen'")).toBeGreaterThan(0);
    ended.resolve();
    // Either is right (a retry on a new connection may commit it); what must not happen is the process ending.
    expect(["committed", "failed"]).toContain(await settled);
    const id = blankProfile().id;
    await store.write(account.id, (tx) => tx.insertProfile(account.id, { ...blankProfile(), id }));
    expect((await store.reader.getProfile(account.id, id))?.id).toBe(id);
  });

  it("listens again for account changes after its connection is ended, and says that some may have been missed", async () => {
    const heard: AccountChange[] = [];
    const stop = await store.watchAccounts((change) => heard.push(change));
    try {
      expect(await terminate("application_name = 'portrait-listen'")).toBe(1);
      await eventually(() => expect(heard).toContainEqual({ kind: "all" }));
      const key = {
        id: "key-after-loss",
        accountId: account.id,
        kind: "secret" as const,
        name: "k",
        hash: "h".repeat(64),
        prefix: "sk_x",
        createdAt: Date.now(),
        revokedAt: null,
      };
      await store.insertApiKey(key);
      expect(await store.revokeApiKey(account.id, key.id, Date.now())).toBe(true);
      await eventually(() => expect(heard).toContainEqual({ kind: "key", accountId: account.id, keyId: key.id }));
    } finally {
      await stop();
    }
  });
});
