import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { describeStoreConformance } from "../conformance/conformance.js";
import { blankProfile, newAccount } from "../conformance/fixtures.js";
import type { Store } from "../store.js";
import { LATEST_VERSION, MIGRATIONS } from "./schema.js";
import { SqliteStore } from "./sqlite-store.js";

/** Each store lives in its own temporary directory, removed with it. */
const directories = new WeakMap<Store, string>();

describeStoreConformance(
  "sqlite",
  async () => {
    const dir = await mkdtemp(join(tmpdir(), "portrait-sqlite-"));
    const store = SqliteStore.open(join(dir, "portrait.db"));
    directories.set(store, dir);
    return store;
  },
  async (store) => {
    await store.close();
    const dir = directories.get(store);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  },
);

describe("SqliteStore on a file", () => {
  let dir: string;
  let file: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "portrait-sqlite-"));
    file = join(dir, "portrait.db");
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function appliedVersions(): number[] {
    const db = new Database(file, { readonly: true });
    try {
      return db.prepare<[], number>("SELECT version FROM schema_migrations ORDER BY version").pluck().all();
    } finally {
      db.close();
    }
  }

  it("keeps its data across close and reopen", async () => {
    const account = newAccount();
    const profile = blankProfile();
    const first = SqliteStore.open(file);
    await first.createAccount(account);
    const seqs = await first.write(account.id, async (tx) => {
      await tx.insertProfile(account.id, profile);
      await tx.claimIdentity(account.id, "Email", "kept@example.com", profile.id);
      return tx.insertEvents(account.id, [
        { profileId: profile.id, id: "e1", name: "Viewed", ts: 1, properties: {}, deviceId: null, platform: null },
      ]);
    });
    await first.close();

    const second = SqliteStore.open(file);
    try {
      expect(await second.getAccount(account.id)).toEqual(account);
      expect(await second.reader.getProfile(account.id, profile.id)).toEqual(profile);
      expect(await second.reader.findProfileByIdentity(account.id, "Email", "kept@example.com")).toBe(profile.id);
      expect(await second.reader.maxEventSeq(account.id)).toBe(seqs[0]);
      // Seqs continue after the reopen, never reused.
      const [next] = await second.write(account.id, (tx) =>
        tx.insertEvents(account.id, [
          { profileId: profile.id, id: "e2", name: "Viewed", ts: 2, properties: {}, deviceId: null, platform: null },
        ]),
      );
      expect(next!).toBeGreaterThan(seqs[0]!);
    } finally {
      await second.close();
    }
  });

  it("records every migration once and applies nothing again on reopen", async () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual([...MIGRATIONS.map((m) => m.version)].sort((a, b) => a - b));
    const store = SqliteStore.open(file);
    await store.migrate();
    await store.close();
    expect(appliedVersions()).toEqual(MIGRATIONS.map((m) => m.version));

    const reopened = SqliteStore.open(file);
    await reopened.migrate();
    await reopened.close();
    expect(appliedVersions()).toEqual(MIGRATIONS.map((m) => m.version));
    expect(appliedVersions().at(-1)).toBe(LATEST_VERSION);
  });

  it("refuses a database from a newer Portrait", async () => {
    await SqliteStore.open(file).close();
    const db = new Database(file);
    db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)").run(LATEST_VERSION + 1, 0);
    db.close();
    expect(() => SqliteStore.open(file)).toThrow(/newer/);
  });

  it("opens in WAL mode with synchronous=NORMAL", async () => {
    const store = SqliteStore.open(file);
    await store.close();
    const db = new Database(file, { readonly: true });
    try {
      expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    } finally {
      db.close();
    }
  });

  it("runs write transactions one at a time, in call order", async () => {
    const store = SqliteStore.open(file);
    try {
      const account = newAccount();
      await store.createAccount(account);
      const log: string[] = [];
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          store.write(account.id, async (tx) => {
            log.push(`start ${i}`);
            await new Promise((resolve) => setTimeout(resolve, 1));
            await tx.insertProfile(account.id, blankProfile());
            log.push(`end ${i}`);
          }),
        ),
      );
      expect(log).toEqual(Array.from({ length: 10 }, (_, i) => [`start ${i}`, `end ${i}`]).flat());
    } finally {
      await store.close();
    }
  });

  it("closes only after the write in progress has committed", async () => {
    const store = SqliteStore.open(file);
    const account = newAccount();
    await store.createAccount(account);
    const profile = blankProfile();
    const writing = store.write(account.id, async (tx) => {
      await new Promise((resolve) => setTimeout(resolve, 5));
      await tx.insertProfile(account.id, profile);
    });
    await store.close();
    await writing;
    const reopened = SqliteStore.open(file);
    try {
      expect(await reopened.reader.getProfile(account.id, profile.id)).toEqual(profile);
    } finally {
      await reopened.close();
    }
  });

  it("works in memory too", async () => {
    const store = SqliteStore.open(":memory:");
    try {
      const account = newAccount();
      await store.createAccount(account);
      expect(await store.listAccounts()).toEqual([account]);
    } finally {
      await store.close();
    }
  });
});
