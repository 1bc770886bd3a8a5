import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseCondition } from "../../engine/segment/parse.js";
import { blankProfile, newAccount, newId } from "../conformance/fixtures.js";
import { describeSegmentConformance } from "../conformance/segments.js";
import type { Store } from "../store.js";
import { SqliteStore } from "./sqlite-store.js";

const directories = new WeakMap<Store, string>();

describeSegmentConformance(
  "sqlite",
  async () => {
    const dir = await mkdtemp(join(tmpdir(), "portrait-sqlite-segments-"));
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

describe("SQLite segments on a file", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "portrait-sqlite-segments-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("rebuilds the property index of profiles written before it existed, when the store opens", async () => {
    const file = join(dir, "portrait.db");
    const account = newAccount();
    const first = SqliteStore.open(file);
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
    // As a database from before the migration: no rows, and the migration's marker.
    const db = new Database(file);
    db.exec("DELETE FROM segment_values; INSERT INTO meta (key, value) VALUES ('segment_values.backfill', '0')");
    db.close();
    const second = SqliteStore.open(file);
    try {
      const c = parseCondition({ property: "Rank", op: "gte", value: 1000 }, { timezone: "UTC" });
      const ctx = { now: Date.now(), timezone: "UTC", segment: () => undefined };
      expect(await second.segments.countSegment(account.id, c, ctx)).toBe(500);
      expect(await second.getMeta("segment_values.backfill")).toBeNull();
    } finally {
      await second.close();
    }
  });
});
