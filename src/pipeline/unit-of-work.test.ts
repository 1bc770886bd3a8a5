/** The working set's pending count-only events across records that fail, flushes inside records, and loads. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newProfileState } from "../engine/profile.js";
import type { ProfileState } from "../engine/types.js";
import { type Harness, makeHarness, T0 } from "../test-support/portrait.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { UnitOfWork } from "./unit-of-work.js";

const stores = await storesUnderTest();

describe.each(stores)("%s store", (store) => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness({}, store);
  });
  afterAll(async () => {
    await h.close();
  });

  async function profile(): Promise<ProfileState> {
    const state = newProfileState(`p-${Math.random().toString(36).slice(2)}`, T0, 1);
    await h.store.write(h.account.id, (tx) => tx.insertProfile(h.account.id, state));
    return state;
  }

  /** Runs `fn` with a working set in one transaction, flushing at the end as the pipeline does. */
  function inTransaction(fn: (uow: UnitOfWork) => Promise<void>): Promise<void> {
    return h.store.write(h.account.id, async (tx) => {
      const uow = new UnitOfWork(tx, h.account, h.portrait.types, h.clock);
      await fn(uow);
      await uow.flush();
    });
  }

  const refused = new Error("record refused");

  /** A record that does `fn` and then fails. */
  async function failingRecord(uow: UnitOfWork, fn: () => unknown): Promise<void> {
    await expect(
      uow.atomically(async () => {
        await fn();
        throw refused;
      }),
    ).rejects.toBe(refused);
  }

  it("a failed record takes back its own count-only events, and only those", async () => {
    const p = await profile();
    await inTransaction(async (uow) => {
      await uow.atomically(async () => uow.countActivity(p.id, T0 + 10));
      await failingRecord(uow, () => uow.countActivity(p.id, T0 + 20));
    });
    expect(await h.store.reader.getProfile(h.account.id, p.id)).toMatchObject({
      firstSeen: T0 + 10,
      lastSeen: T0 + 10,
      stats: { events: 1 },
    });
  });

  it("a record that flushes and then fails keeps the earlier records' count-only events", async () => {
    const p = await profile();
    await inTransaction(async (uow) => {
      await uow.atomically(async () => uow.countActivity(p.id, T0 + 10));
      await failingRecord(uow, async () => {
        uow.countActivity(p.id, T0 + 30);
        // As a merge does before it reads profile rows: the pending events reach the store inside this savepoint.
        await uow.flush();
      });
    });
    expect(await h.store.reader.getProfile(h.account.id, p.id)).toMatchObject({
      lastSeen: T0 + 10,
      stats: { events: 1 },
    });
  });

  it("a flush in the middle adds each pending event once, and a later load sees them", async () => {
    const p = await profile();
    await inTransaction(async (uow) => {
      await uow.atomically(async () => uow.countActivity(p.id, T0 + 10));
      await uow.atomically(() => uow.flush());
      await uow.atomically(async () => uow.countActivity(p.id, T0 + 40));
      const loaded = await uow.load(p.id);
      expect(loaded).toMatchObject({ firstSeen: T0 + 10, lastSeen: T0 + 40, stats: { events: 2 } });
      // Loaded now: its changes go through its state.
      expect(() => uow.countActivity(p.id, T0 + 50)).toThrow(/is loaded/);
      uow.put({ ...loaded!, bucket: 9 });
    });
    expect(await h.store.reader.getProfile(h.account.id, p.id)).toMatchObject({
      bucket: 9,
      lastSeen: T0 + 40,
      stats: { events: 2 },
    });
  });

  it("a load that finds another zone than the one its pending events restamp asks for the transaction again", async () => {
    const p = await profile();
    await h.store.write(h.account.id, (tx) =>
      tx.updateProfile(h.account.id, {
        ...p,
        props: { Timezone: { v: "Europe/Paris", t: "string", ts: T0 } },
        timezoneFromContext: true,
      }),
    );
    await expect(
      inTransaction(async (uow) => {
        // As if the status had been read before another writer changed the zone (PostgreSQL only).
        await uow.atomically(async () => uow.countActivity(p.id, T0 + 10, "UTC"));
        await uow.load(p.id);
      }),
    ).rejects.toMatchObject({ code: "40001" });
    const stored = await h.store.reader.getProfile(h.account.id, p.id);
    expect(stored?.stats.events).toBe(0);
    // Two status reads that disagree on the zone (another writer in between) cannot fold either.
    await expect(
      inTransaction(async (uow) => {
        await uow.atomically(async () => uow.countActivity(p.id, T0 + 10, "Europe/Paris"));
        await uow.atomically(async () => uow.countActivity(p.id, T0 + 20, "UTC"));
      }),
    ).rejects.toMatchObject({ code: "40001" });
    // The same zone folds in.
    await inTransaction(async (uow) => {
      await uow.atomically(async () => uow.countActivity(p.id, T0 + 10, "Europe/Paris"));
      expect((await uow.load(p.id))?.props.Timezone).toEqual({ v: "Europe/Paris", t: "string", ts: T0 + 10 });
    });
  });

  it("a load inside a failed record folds the pending events into a state that the rollback forgets", async () => {
    const p = await profile();
    await inTransaction(async (uow) => {
      await uow.atomically(async () => uow.countActivity(p.id, T0 + 10));
      await failingRecord(uow, () => uow.load(p.id));
      expect(uow.isLoaded(p.id)).toBe(false);
      await uow.atomically(async () => uow.countActivity(p.id, T0 + 20));
    });
    expect(await h.store.reader.getProfile(h.account.id, p.id)).toMatchObject({
      lastSeen: T0 + 20,
      stats: { events: 2 },
    });
  });

  it("flushAndForget writes what changed once, forgets every profile, and refuses inside a record", async () => {
    const [p, q] = [await profile(), await profile()];
    await inTransaction(async (uow) => {
      const loaded = await uow.load(p.id);
      await uow.load(q.id);
      uow.put({ ...loaded!, bucket: 7 });
      await uow.flushAndForget();
      expect(uow.isLoaded(p.id)).toBe(false);
      expect(uow.isLoaded(q.id)).toBe(false);
      // Read again, the profile is what was written; a later flush writes nothing of it (its mark went with it).
      expect((await uow.load(p.id))?.bucket).toBe(7);
      await uow.atomically(async () => {
        await expect(uow.flushAndForget()).rejects.toThrow(/not inside a record/);
      });
    });
    expect((await h.store.reader.getProfile(h.account.id, p.id))?.bucket).toBe(7);
    expect((await h.store.reader.getProfile(h.account.id, q.id))?.bucket).toBe(1);
  });
});
