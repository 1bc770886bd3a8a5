import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseCondition } from "../../engine/segment/parse.js";
import { blankProfile, newAccount, newId } from "../conformance/fixtures.js";
import { describeSegmentConformance } from "../conformance/segments.js";
import type { Store } from "../store.js";
import { MIGRATIONS } from "./schema.js";
import { SqliteSegmentCompiler } from "./sqlite-segment-compiler.js";
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

  it("tests a property per profile through the primary key, not by reading the value range of the path", async () => {
    const file = join(dir, "portrait.db");
    const store = SqliteStore.open(file);
    const account = newAccount();
    await store.createAccount(account);
    await store.write(account.id, async (tx) => {
      for (let i = 0; i < 50; i++) {
        const p = blankProfile();
        p.props.Score = { v: i, t: "number", ts: 1 };
        await tx.insertProfile(account.id, p);
      }
    });
    const ctx = { now: Date.now(), timezone: "UTC", segment: () => undefined };
    const condition = parseCondition({ property: "Score", op: "between", value: [10, 20] }, { timezone: "UTC" });
    const compiled = new SqliteSegmentCompiler(account.id, ctx, {
      values: "row",
      events: () => "row",
      skip: new Set(),
    }).compile(condition);
    const db = new Database(file, { readonly: true });
    try {
      const plan = db
        .prepare(`EXPLAIN QUERY PLAN SELECT count(*) FROM profiles p WHERE ${compiled.where}`)
        .all(compiled.params) as Array<{ detail: string }>;
      const reads = plan.map((r) => r.detail).filter((d) => d.includes("segment_values"));
      expect(reads).toHaveLength(1);
      expect(reads[0]).toMatch(/^SEARCH segment_values .*USING PRIMARY KEY \(profile_pk=\? AND path_id=\?\)$/);
      expect(await store.segments.countSegment(account.id, condition, ctx)).toBe(11);
    } finally {
      db.close();
      await store.close();
    }
  });

  // The property index keys its rows by path id (migration 5).
  const ctx = { now: Date.now(), timezone: "UTC", segment: () => undefined };
  const cityIs = (city: string) => parseCondition({ property: "City", op: "eq", value: city }, { timezone: "UTC" });
  const has = (property: string) => parseCondition({ property, op: "exists" }, { timezone: "UTC" });

  it("moves a version-4 database's rows to path ids, each account's paths apart", async () => {
    const file = join(dir, "portrait.db");
    const db = new Database(file);
    db.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT");
    for (const m of MIGRATIONS.filter((x) => x.version <= 4)) {
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)").run(m.version);
    }
    const [a, b] = [newAccount(), newAccount()];
    const profile = db.prepare(
      `INSERT INTO profiles (pk, account_id, id, created_at, updated_at, state) VALUES (?, ?, ?, 0, 0, ?)`,
    );
    const row = db.prepare(
      `INSERT INTO segment_values (profile_pk, path, ord, account_id, kind, many, str, num) VALUES (?, 'City', 0, ?, 's', 0, ?, NULL)`,
    );
    // Account a: Paris ×2, Oslo; account b: Paris.
    const people: Array<[number, string, string]> = [
      [1, a.id, "Paris"],
      [2, a.id, "Paris"],
      [3, a.id, "Oslo"],
      [4, b.id, "Paris"],
    ];
    for (const [pk, accountId, city] of people) {
      const state = blankProfile();
      state.props.City = { v: city, t: "string", ts: 1 };
      profile.run(pk, accountId, state.id, JSON.stringify(state));
      row.run(pk, accountId, city);
    }
    db.close();

    const store = SqliteStore.open(file);
    try {
      await store.createAccount(a);
      await store.createAccount(b);
      expect(await store.segments.countSegment(a.id, cityIs("Paris"), ctx)).toBe(2);
      expect(await store.segments.countSegment(a.id, cityIs("Oslo"), ctx)).toBe(1);
      expect(await store.segments.countSegment(b.id, cityIs("Paris"), ctx)).toBe(1);
      expect(await store.segments.countSegment(b.id, cityIs("Oslo"), ctx)).toBe(0);
      expect(await store.segments.countSegment(a.id, has("Nowhere"), ctx)).toBe(0);
    } finally {
      await store.close();
    }
  });

  it("finds a path whose first write was rolled back (savepoint or whole transaction) once it is written again", async () => {
    const store = SqliteStore.open(join(dir, "portrait.db"));
    try {
      const account = newAccount();
      await store.createAccount(account);
      const withProp = (key: string) => {
        const p = blankProfile();
        p.props[key] = { v: "x", t: "string", ts: 1 };
        return p;
      };
      // A savepoint creates the path, then rolls back; the same transaction writes it again and commits.
      await store.write(account.id, async (tx) => {
        await expect(
          tx.savepoint(async () => {
            await tx.insertProfile(account.id, withProp("Fresh"));
            throw new Error("record refused");
          }),
        ).rejects.toThrow("record refused");
        await tx.insertProfile(account.id, withProp("Fresh"));
      });
      expect(await store.segments.countSegment(account.id, has("Fresh"), ctx)).toBe(1);

      // A whole transaction creates a path and rolls back; a later one writes it.
      await expect(
        store.write(account.id, async (tx) => {
          await tx.insertProfile(account.id, withProp("Gone"));
          throw new Error("batch refused");
        }),
      ).rejects.toThrow("batch refused");
      expect(await store.segments.countSegment(account.id, has("Gone"), ctx)).toBe(0);
      // In between, another path takes the id the rolled-back one had.
      await store.write(account.id, (tx) => tx.insertProfile(account.id, withProp("Other")));
      await store.write(account.id, async (tx) => {
        await tx.insertProfile(account.id, withProp("Gone"));
        await tx.insertProfile(account.id, withProp("Gone"));
      });
      expect(await store.segments.countSegment(account.id, has("Gone"), ctx)).toBe(2);
      expect(await store.segments.countSegment(account.id, has("Other"), ctx)).toBe(1);
      expect(await store.segments.countSegment(account.id, has("Fresh"), ctx)).toBe(1);
    } finally {
      await store.close();
    }
  });

  it("orders a string property by code point and is false on a multi-value, through the text index", async () => {
    const file = join(dir, "portrait.db");
    const store = SqliteStore.open(file);
    const account = newAccount();
    await store.createAccount(account);
    const codes = ["B", "2025-01-01", "1999", "A", "a", "ｚ", "𝒫"];
    await store.write(account.id, async (tx) => {
      for (const code of codes) {
        const p = blankProfile();
        p.props.Code = { v: code, t: "string", ts: 1 };
        p.props.Tags = { v: ["a", "b"], t: "multi", ts: 1 };
        await tx.insertProfile(account.id, p);
      }
    });
    const types = (path: string) => (path === "Code" ? "string" : path === "Tags" ? "multi" : undefined);
    const opts = { timezone: "UTC", types } as const;
    const count = (where: unknown) => store.segments.countSegment(account.id, parseCondition(where, opts), ctx);
    try {
      expect(await count({ property: "Code", op: "gt", value: "A" })).toBe(4); // B, a, ｚ, 𝒫
      expect(await count({ property: "Code", op: "gt", value: "2024-01-01" })).toBe(6); // all but 1999
      expect(await count({ property: "Code", op: "lte", value: "2025-01-01" })).toBe(2);
      // Above U+FFFF by code point, below U+FF5A by UTF-16 unit.
      expect(await count({ property: "Code", op: "between", value: ["a", "ｚ"] })).toBe(2);
      expect(await count({ property: "Code", op: "gte", value: "𝒫" })).toBe(1);
      expect(await count({ property: "Tags", op: "lt", value: "z" })).toBe(0);
      expect(await count({ not: { property: "Tags", op: "between", value: ["a", "z"] } })).toBe(7);
      const condition = parseCondition({ property: "Code", op: "gt", value: "A" }, opts);
      const compiled = new SqliteSegmentCompiler(account.id, ctx).compile(condition);
      const db = new Database(file, { readonly: true });
      try {
        const plan = db
          .prepare(`EXPLAIN QUERY PLAN SELECT count(*) FROM profiles p WHERE ${compiled.where}`)
          .all(compiled.params) as Array<{ detail: string }>;
        // A range of the (path_id, kind, str) index, not a scan of the path's rows.
        expect(plan.map((r) => r.detail)).toContainEqual(
          expect.stringMatching(/segment_values_by_str \(path_id=\? AND kind=\? AND str>\?\)/),
        );
      } finally {
        db.close();
      }
    } finally {
      await store.close();
    }
  });
});
