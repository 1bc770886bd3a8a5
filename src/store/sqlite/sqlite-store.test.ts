import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { NewEvent } from "../../engine/types.js";
import { describeStoreConformance } from "../conformance/conformance.js";
import { blankProfile, newAccount, newId } from "../conformance/fixtures.js";
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

  it("upgrades a version-5 database: open merge journals move into their column, activity into its own table", async () => {
    const db = new Database(file);
    db.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL) STRICT");
    for (const m of MIGRATIONS.filter((x) => x.version <= 5)) {
      db.exec(m.sql);
      db.prepare("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)").run(m.version);
    }
    const account = newAccount();
    const [plain, target] = [blankProfile(), { ...blankProfile(), journalMergeId: "ab".repeat(16) }];
    const active = { ...blankProfile(), firstSeen: 1_700_000_000_000, lastSeen: 1_700_000_009_000 };
    active.stats.events = 41;
    const insert = db.prepare(
      "INSERT INTO profiles (account_id, id, created_at, updated_at, state) VALUES (?, ?, 0, 0, ?)",
    );
    for (const p of [plain, target, active]) insert.run(account.id, p.id, JSON.stringify(p));
    db.close();

    const store = SqliteStore.open(file);
    try {
      await store.migrate();
      expect(appliedVersions().at(-1)).toBe(LATEST_VERSION);
      expect(await store.reader.getProfile(account.id, active.id)).toEqual(active);
      expect(await store.reader.getProfile(account.id, plain.id)).toEqual(plain);
      const columns = new Database(file, { readonly: true });
      expect(
        columns
          .prepare(
            `SELECT first_seen, last_seen, event_count FROM profiles p JOIN profile_activity a USING (pk)
             WHERE p.id = ?`,
          )
          .get(active.id),
      ).toEqual({ first_seen: 1_700_000_000_000, last_seen: 1_700_000_009_000, event_count: 41 });
      columns.close();
      const seen = await store.write(account.id, async (tx) => ({
        plain: await tx.peekProfile(account.id, plain.id),
        target: await tx.peekProfile(account.id, target.id),
      }));
      expect(seen).toEqual({
        plain: { mergedInto: null, journalMergeId: null },
        target: { mergedInto: null, journalMergeId: "ab".repeat(16) },
      });
      // The journalled target takes no count-only addition: its events must be journalled.
      await expect(
        store.write(account.id, (tx) =>
          tx.addActivity(account.id, [{ profileId: target.id, firstTs: 1, lastTs: 1, events: 1 }]),
        ),
      ).rejects.toThrow();
    } finally {
      await store.close();
    }
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

/** What only this adapter does: integer profile keys, events written behind, lazy savepoints (sqlite-store.ts). */
describe("SqliteStore internals", () => {
  let dir: string;
  let file: string;
  let store: SqliteStore;
  let accountId: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "portrait-sqlite-"));
    file = join(dir, "portrait.db");
    store = SqliteStore.open(file);
    const account = newAccount();
    await store.createAccount(account);
    accountId = account.id;
  });

  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const T0 = 1_700_000_000_000;
  function event(profileId: string, ts: number, name = "Viewed"): NewEvent {
    return { profileId, id: newId(), name, ts, properties: { n: ts - T0 }, deviceId: null, platform: null };
  }
  async function newProfile(): Promise<string> {
    const state = blankProfile();
    await store.write(accountId, (tx) => tx.insertProfile(accountId, state));
    return state.id;
  }

  it("runs records without SQL savepoints, and a transaction again with them once a record fails after writing", async () => {
    const [a, b, c] = [blankProfile(), blankProfile(), blankProfile()];
    const exists = async (id: string) => (await store.reader.getProfile(accountId, id)) !== null;
    let runs = 0;
    await store.write(accountId, async (tx) => {
      runs++;
      for (const p of [a, b]) await tx.savepoint(() => tx.insertProfile(accountId, p));
    });
    expect({ runs, reruns: store.savepointReruns }).toEqual({ runs: 1, reruns: 0 });

    // The second record writes, then fails; its caller swallows the error and goes on, as a batch does.
    const [kept, lost, after] = [blankProfile(), blankProfile(), blankProfile()];
    runs = 0;
    const seen: unknown[] = [];
    await store.write(accountId, async (tx) => {
      runs++;
      await tx.savepoint(() => tx.insertProfile(accountId, kept));
      seen.push(
        await tx
          .savepoint(async () => {
            await tx.insertProfile(accountId, lost);
            throw new Error("refused after writing");
          })
          .catch((e: unknown) => (e as Error).message),
      );
      await tx.savepoint(() => tx.insertProfile(accountId, after));
    });
    // Run once without savepoints (the failure could not be taken back alone), then once with them.
    expect(runs).toBe(2);
    expect(seen[0]).toMatch(/runs again with them/);
    expect(seen[1]).toBe("refused after writing");
    expect(store.savepointReruns).toBe(1);
    expect([await exists(kept.id), await exists(lost.id), await exists(after.id)]).toEqual([true, false, true]);
    expect(await exists(c.id)).toBe(false);

    // The next transactions take savepoints from their first run: a failing record costs no second run.
    runs = 0;
    await store.write(accountId, async (tx) => {
      runs++;
      await tx.savepoint(() => tx.insertProfile(accountId, c));
      await tx
        .savepoint(async () => {
          await tx.insertProfile(accountId, blankProfile());
          throw new Error("refused again");
        })
        .catch(() => undefined);
    });
    expect({ runs, reruns: store.savepointReruns, c: await exists(c.id) }).toEqual({ runs: 1, reruns: 1, c: true });
  });

  it("shows pending events to reads inside the transaction, and commits them", async () => {
    const p = await newProfile();
    const seqs = await store.write(accountId, async (tx) => {
      const seqs = await tx.insertEvents(accountId, [event(p, T0), event(p, T0 + 1)]);
      expect(await tx.maxEventSeq(accountId)).toBe(seqs[1]);
      expect(await tx.listEventSeqs(accountId, p)).toEqual(seqs);
      expect((await tx.listEvents(accountId, [p], { limit: 10 })).events.map((e) => e.seq)).toEqual(
        [...seqs].reverse(),
      );
      expect((await tx.listEventsBySeq(accountId, seqs)).map((e) => e.ts)).toEqual([T0, T0 + 1]);
      return seqs;
    });
    expect((await store.reader.listEvents(accountId, [p], { limit: 10 })).events.map((e) => e.seq)).toEqual(
      [...seqs].reverse(),
    );
    expect(await store.reader.maxEventSeq(accountId)).toBe(seqs[1]);
  });

  it("keeps the events added before a failed savepoint and drops those added inside it, at any depth", async () => {
    const p = await newProfile();
    const kept = await store.write(accountId, async (tx) => {
      const kept: number[] = [];
      kept.push(...(await tx.insertEvents(accountId, [event(p, T0)])));
      // A record that only adds events and fails.
      await tx
        .savepoint(async () => {
          await tx.insertEvents(accountId, [event(p, T0 + 1)]);
          throw new Error("no");
        })
        .catch(() => undefined);
      // A record that also writes through SQL (which opens its savepoint) and fails.
      await tx
        .savepoint(async () => {
          await tx.insertEvents(accountId, [event(p, T0 + 2)]);
          await tx.claimIdentity(accountId, "Email", "lost@example.com", p);
          await tx.insertEvents(accountId, [event(p, T0 + 3)]);
          // A read of events writes the pending ones: those from before the savepoint must survive its rollback.
          expect(await tx.listEventSeqs(accountId, p)).toHaveLength(3);
          throw new Error("no");
        })
        .catch(() => undefined);
      // Nested: the outer savepoint keeps its events around a failed inner one.
      await tx.savepoint(async () => {
        kept.push(...(await tx.insertEvents(accountId, [event(p, T0 + 4)])));
        await tx
          .savepoint(async () => {
            await tx.insertEvents(accountId, [event(p, T0 + 5)]);
            await tx.claimRecordId(accountId, "inner", T0);
            throw new Error("no");
          })
          .catch(() => undefined);
        kept.push(...(await tx.insertEvents(accountId, [event(p, T0 + 6)])));
        await tx.claimRecordId(accountId, "outer", T0);
      });
      kept.push(...(await tx.insertEvents(accountId, [event(p, T0 + 7)])));
      return kept;
    });
    const stored = (await store.reader.listEvents(accountId, [p], { limit: 20 })).events;
    expect(stored.map((e) => e.ts)).toEqual([T0 + 7, T0 + 6, T0 + 4, T0]);
    expect(stored.map((e) => e.seq)).toEqual([...kept].reverse());
    expect(new Set(kept).size).toBe(kept.length);
    expect(await store.reader.maxEventSeq(accountId)).toBe(Math.max(...kept));
    expect(await store.reader.findProfileByIdentity(accountId, "Email", "lost@example.com")).toBeNull();
    await store.write(accountId, async (tx) => {
      expect(await tx.claimRecordId(accountId, "inner", T0)).toBe(true);
      expect(await tx.claimRecordId(accountId, "outer", T0)).toBe(false);
    });
  });

  it("releases the record ids of a failed savepoint, which claims them outside itself, and keeps the others", async () => {
    const p = await newProfile();
    // Only the claim: the savepoint is never opened in SQL.
    await store.write(accountId, async (tx) => {
      await tx
        .savepoint(async () => {
          expect(await tx.claimRecordId(accountId, "alone", T0)).toBe(true);
          throw new Error("no");
        })
        .catch(() => undefined);
      // The same transaction may claim it again once the failed record let it go.
      expect(await tx.claimRecordId(accountId, "alone", T0)).toBe(true);
      await tx.savepoint(async () => expect(await tx.claimRecordId(accountId, "kept", T0)).toBe(true));
    });
    // A claim, then a write that opens the savepoint: both go.
    await store.write(accountId, async (tx) => {
      await tx
        .savepoint(async () => {
          await tx.claimRecordId(accountId, "with a write", T0);
          await tx.claimIdentity(accountId, "Email", "gone@example.com", p);
          throw new Error("no");
        })
        .catch(() => undefined);
      // A claim kept by its own savepoint, inside one that fails: it goes with the outer one.
      await tx
        .savepoint(async () => {
          await tx.savepoint(() => tx.claimRecordId(accountId, "nested", T0));
          throw new Error("no");
        })
        .catch(() => undefined);
    });
    expect(await store.reader.findProfileByIdentity(accountId, "Email", "gone@example.com")).toBeNull();
    await store.write(accountId, async (tx) => {
      expect(await tx.claimRecordId(accountId, "alone", T0)).toBe(false);
      expect(await tx.claimRecordId(accountId, "kept", T0)).toBe(false);
      expect(await tx.claimRecordId(accountId, "with a write", T0)).toBe(true);
      expect(await tx.claimRecordId(accountId, "nested", T0)).toBe(true);
    });
  });

  it("forgets the key of a profile whose insert a savepoint took back", async () => {
    const p = await newProfile();
    const lost = blankProfile();
    const after = blankProfile();
    await store.write(accountId, async (tx) => {
      await tx
        .savepoint(async () => {
          await tx.insertProfile(accountId, lost);
          await tx.insertEvents(accountId, [event(lost.id, T0)]);
          throw new Error("no");
        })
        .catch(() => undefined);
      // The next profile takes the pk the lost one had; events of the lost id must not land on it.
      await tx.insertProfile(accountId, after);
      await expect(tx.insertEvents(accountId, [event(lost.id, T0)])).rejects.toThrow(/no profile/);
      await expect(tx.updateProfile(accountId, lost)).rejects.toThrow(/no profile/);
      await tx.insertEvents(accountId, [event(p, T0)]);
    });
    expect((await store.reader.listEvents(accountId, [after.id], { limit: 5 })).events).toEqual([]);
    expect(await store.reader.getProfile(accountId, after.id)).toEqual(after);
  });

  it("rewrites the columns beside the state when a read profile changes them", async () => {
    const [owner, p] = [await newProfile(), await newProfile()];
    await store.write(accountId, async (tx) => {
      const state = (await tx.lockProfile(accountId, p))!;
      await tx.updateProfile(accountId, { ...state, orphanOf: owner, updatedAt: T0 + 1 });
      await tx.updateProfile(accountId, { ...state, orphanOf: owner, updatedAt: T0 + 2 });
    });
    expect(await store.reader.listOrphans(accountId, owner)).toEqual([p]);
    await store.write(accountId, async (tx) => {
      const state = (await tx.lockProfile(accountId, p))!;
      // An orphan uses no exclusion slot (docs/semantics.md "Control groups"): counted once it is one no more.
      const excluded = { ...state, orphanOf: null, flags: { test: false, controlGroupExcluded: true } };
      await tx.updateProfile(accountId, excluded);
      expect(await tx.countControlGroupExcluded(accountId)).toBe(1);
      await tx.updateProfile(accountId, state);
      expect(await tx.countControlGroupExcluded(accountId)).toBe(0);
      expect(await tx.listOrphans(accountId, owner)).toEqual([p]);
      await tx.updateProfile(accountId, { ...state, orphanOf: null, mergedInto: owner });
    });
    expect(await store.reader.listOrphans(accountId, owner)).toEqual([]);
    expect(await store.reader.listTombstones(accountId, owner)).toEqual([p]);
    expect(await store.reader.countControlGroupExcluded(accountId)).toBe(0);
    expect((await store.reader.getProfile(accountId, p))?.mergedInto).toBe(owner);
  });

  it("writes many events of one call in order, across several multi-row inserts", async () => {
    const [p, q] = [await newProfile(), await newProfile()];
    const batch = Array.from({ length: 300 }, (_, i) => ({
      ...event(i % 3 ? p : q, T0 + (i % 17)),
      deviceId: i % 2 ? `d${i}` : null,
      platform: i % 5 ? null : "ios",
    }));
    const seqs = await store.write(accountId, (tx) => tx.insertEvents(accountId, batch));
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i));
    const stored = await store.write(accountId, (tx) => tx.listEventsBySeq(accountId, seqs));
    expect(stored).toEqual(batch.map((e, i) => ({ ...e, seq: seqs[i] })));
  });

  it("refuses a malformed event or an unknown profile inside the record, not at commit", async () => {
    const p = await newProfile();
    const outcome = await store.write(accountId, async (tx) => {
      const bad = [
        { ...event(p, T0), ts: T0 + 0.5 },
        { ...event(p, T0), name: 7 as unknown as string },
        { ...event(p, T0), deviceId: 7 as unknown as string },
        event(newId(), T0),
      ];
      const errors: unknown[] = [];
      for (const e of bad) {
        errors.push(await tx.savepoint(() => tx.insertEvents(accountId, [event(p, T0), e])).catch((x: unknown) => x));
      }
      return { errors, good: await tx.insertEvents(accountId, [event(p, T0 + 1)]) };
    });
    for (const error of outcome.errors) expect(error).toBeInstanceOf(Error);
    expect((await store.reader.listEvents(accountId, [p], { limit: 10 })).events.map((e) => e.seq)).toEqual(
      outcome.good,
    );
  });

  it("refuses to move events to a profile the account does not have", async () => {
    const p = await newProfile();
    const seqs = await store.write(accountId, (tx) => tx.insertEvents(accountId, [event(p, T0)]));
    await expect(store.write(accountId, (tx) => tx.moveEvents(accountId, seqs, newId()))).rejects.toThrow(/no profile/);
    expect(await store.write(accountId, (tx) => tx.listEventSeqs(accountId, p))).toEqual(seqs);
  });

  it("never hands out a seq twice when two stores write to one file", async () => {
    const other = SqliteStore.open(file);
    try {
      const p = await newProfile();
      const seqs: number[] = [];
      for (let round = 0; round < 5; round++) {
        for (const s of [store, other]) {
          seqs.push(...(await s.write(accountId, (tx) => tx.insertEvents(accountId, [event(p, T0), event(p, T0)]))));
        }
      }
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).toBe(seqs.length);
      expect(await other.reader.maxEventSeq(accountId)).toBe(seqs.at(-1));
    } finally {
      await other.close();
    }
  });

  it("never follows a remembered profile key that now names another row", async () => {
    // Another process deletes a profile and creates one that takes the same pk (the highest was deleted).
    const other = SqliteStore.open(file);
    try {
      const gone = blankProfile();
      // The first profile of the file: pk 1.
      await store.write(accountId, (tx) => tx.insertProfile(accountId, gone));
      expect(await store.reader.getProfile(accountId, gone.id)).toEqual(gone);
      const stranger = newAccount();
      await other.createAccount(stranger);
      const newcomer = blankProfile();
      await other.write(accountId, (tx) => tx.deleteProfileData(accountId, gone.id));
      await other.write(stranger.id, (tx) => tx.insertProfile(stranger.id, newcomer));
      const raw = new Database(file, { readonly: true });
      try {
        const pkOf = raw.prepare<[string], number>("SELECT pk FROM profiles WHERE id = ?").pluck();
        expect(pkOf.get(newcomer.id)).toBe(1);
      } finally {
        raw.close();
      }
      const reused = blankProfile(gone.id);
      await other.write(stranger.id, (tx) => tx.insertProfile(stranger.id, { ...reused, bucket: 3 }));

      expect(await store.reader.getProfile(accountId, gone.id)).toBeNull();
      expect(await store.reader.listEvents(accountId, [gone.id], { limit: 5 })).toEqual({ events: [], next: null });
      await store.write(accountId, async (tx) => {
        expect(await tx.getProfile(accountId, gone.id)).toBeNull();
        await expect(tx.updateProfile(accountId, gone)).rejects.toThrow(/no profile/);
        await expect(tx.insertEvents(accountId, [event(gone.id, T0)])).rejects.toThrow(/no profile/);
      });
      expect((await store.reader.getProfile(stranger.id, gone.id))?.bucket).toBe(3);
      expect(await store.reader.getProfile(stranger.id, newcomer.id)).toEqual(newcomer);
    } finally {
      await other.close();
    }
  });
});
