import pg from "pg";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { contextStatusOf } from "../../engine/activity.js";
import { PortraitError } from "../../engine/errors.js";
import type { NewEvent, ProfileState } from "../../engine/types.js";
import { Accounts } from "../../pipeline/accounts.js";
import { Portrait } from "../../pipeline/portrait.js";
import { deferred } from "../../test-support/deferred.js";
import { createTestDatabase, type TestDatabase } from "../../test-support/postgres.js";
import { describeStoreConformance } from "../conformance/conformance.js";
import { blankProfile, fullProfile, newAccount, newId } from "../conformance/fixtures.js";
import type { BatchHandles, NewMerge, Store } from "../store.js";
import { PooledReader, PostgresStore, SQL } from "./postgres-store.js";
import { LATEST_VERSION, MIGRATIONS } from "./schema.js";

// Decided while the file is collected: skipped (reason printed) without a server, except in CI where that fails.
const conformanceDb = await createTestDatabase();

describe.skipIf(conformanceDb === null)("PostgreSQL", () => {
  afterAll(async () => {
    await conformanceDb?.drop();
  });

  describeStoreConformance(
    "postgres",
    async () => {
      const store = await PostgresStore.connect(conformanceDb!.url);
      await store.migrate();
      return store;
    },
    (store: Store) => store.close(),
  );

  describe("PostgresStore on its own database", () => {
    let db: TestDatabase;
    const opened: PostgresStore[] = [];

    async function open(opts: { max?: number } = {}): Promise<PostgresStore> {
      const store = await PostgresStore.connect(db.url, opts);
      opened.push(store);
      await store.migrate();
      return store;
    }

    /** A plain connection beside the store, to look at what it wrote. */
    async function sql<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
      const client = new pg.Client(db.url);
      await client.connect();
      try {
        return (await client.query<R>(text, values)).rows;
      } finally {
        await client.end();
      }
    }

    const event = (profileId: string, ts: number): NewEvent => ({
      profileId,
      id: newId(),
      name: "Viewed",
      ts,
      properties: {},
      deviceId: null,
      platform: null,
    });

    /** A store with an account holding `count` blank profiles. */
    async function withProfiles(count: number) {
      const store = await open();
      const account = newAccount();
      await store.createAccount(account);
      const profiles = Array.from({ length: count }, () => blankProfile());
      await store.write(account.id, async (tx) => {
        for (const profile of profiles) await tx.insertProfile(account.id, profile);
      });
      return { store, account, profiles };
    }

    /** A store with an account holding one full profile `p` that owns device "dp". */
    async function withDeviceOwner() {
      const store = await open();
      const account = newAccount();
      await store.createAccount(account);
      const p = fullProfile();
      await store.write(account.id, async (tx) => {
        await tx.insertProfile(account.id, p);
        await tx.upsertDevice(account.id, { deviceId: "dp", profileId: p.id, pushToken: null, platform: null });
      });
      return { store, account, p };
    }

    beforeEach(async () => {
      db = (await createTestDatabase())!;
    });

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
      await db.drop();
    });

    it("applies every migration once, even with several processes starting at once", async () => {
      expect(MIGRATIONS.map((m) => m.version)).toEqual([...MIGRATIONS.map((m) => m.version)].sort((a, b) => a - b));
      // Separate pools stand for separate processes: the advisory lock makes all but one find the work done.
      const stores = await Promise.all(Array.from({ length: 4 }, () => PostgresStore.connect(db.url, { max: 1 })));
      opened.push(...stores);
      await Promise.all(stores.map((s) => s.migrate()));
      const versions = await sql<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
      expect(versions.map((r) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
      expect(versions.at(-1)?.version).toBe(LATEST_VERSION);
      await stores[0]!.migrate();
      expect(await sql("SELECT version FROM schema_migrations")).toHaveLength(MIGRATIONS.length);
    });

    it("moves each profile's activity into the activity columns when it upgrades a database to schema version 6", async () => {
      const { store, account } = await withProfiles(0);
      const active = { ...blankProfile(), firstSeen: 1_700_000_000_000, lastSeen: 1_700_000_009_000 };
      active.stats.events = 41;
      const quiet = blankProfile();
      await store.write(account.id, async (tx) => {
        await tx.insertProfile(account.id, active);
        await tx.insertProfile(account.id, quiet);
      });
      // Back to version 5: the columns gone, the activity only in the state documents.
      await sql(`ALTER TABLE profiles DROP COLUMN first_seen, DROP COLUMN last_seen, DROP COLUMN event_count;
        DELETE FROM schema_migrations WHERE version = 6`);
      await store.migrate();
      expect(await sql("SELECT version FROM schema_migrations WHERE version = 6")).toHaveLength(1);
      expect(await store.reader.getProfile(account.id, active.id)).toEqual(active);
      expect(await store.reader.getProfile(account.id, quiet.id)).toEqual(quiet);
      const columns = await sql("SELECT first_seen, last_seen, event_count FROM profiles ORDER BY id = $1 DESC", [
        active.id,
      ]);
      expect(columns).toEqual([
        { first_seen: 1_700_000_000_000, last_seen: 1_700_000_009_000, event_count: 41 },
        { first_seen: null, last_seen: null, event_count: 0 },
      ]);
    });

    it("refuses a database from a newer Portrait", async () => {
      await open();
      await sql("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, 0)", [LATEST_VERSION + 1]);
      const store = await PostgresStore.connect(db.url);
      opened.push(store);
      await expect(store.migrate()).rejects.toThrow(/newer/);
    });

    it("fails to connect at once when the database does not exist", async () => {
      const missing = new URL(db.url);
      missing.pathname = `/portrait_missing_${newId()}`;
      await expect(PostgresStore.connect(missing.toString())).rejects.toThrow();
    });

    it("re-runs a transaction that PostgreSQL aborts as a deadlock victim", async () => {
      const { store, account, profiles } = await withProfiles(2);
      const [p, q] = profiles as [ProfileState, ProfileState];
      // Each locks one profile, waits until the other has too, then locks the other: a certain deadlock.
      let locked = 0;
      const bothLocked = new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (locked >= 2) {
            clearInterval(check);
            resolve();
          }
        }, 1);
      });
      const runs = { a: 0, b: 0 };
      const crossing = (run: "a" | "b", first: string, second: string) =>
        store.write(account.id, async (tx) => {
          runs[run]++;
          const state = (await tx.lockProfile(account.id, first))!;
          if (runs[run] === 1) {
            locked++;
            await bothLocked;
          }
          await tx.lockProfile(account.id, second);
          await tx.updateProfile(account.id, { ...state, bucket: state.bucket + 1 });
          return run;
        });
      expect(await Promise.all([crossing("a", p.id, q.id), crossing("b", q.id, p.id)])).toEqual(["a", "b"]);
      expect(runs.a + runs.b).toBe(3);
      expect((await store.reader.getProfile(account.id, p.id))?.bucket).toBe(1);
      expect((await store.reader.getProfile(account.id, q.id))?.bucket).toBe(1);
    });

    /** A promise and the function that settles it, to order two transactions step by step. */
    function signal(): { done: Promise<void>; fire: () => void } {
      let fire!: () => void;
      const done = new Promise<void>((resolve) => {
        fire = resolve;
      });
      return { done, fire };
    }

    /** A batch's handles when its only record is a count-only event on `deviceId` (`context`: whether it carries any). */
    const countOnlyDevice = (deviceId: string, context: boolean): BatchHandles => ({
      deviceIds: [deviceId],
      identities: [],
      profileIds: [],
      countOnly: { deviceIds: [deviceId], identities: [], profileIds: [], context },
    });

    /**
     * A transaction that changes `profileId` (bucket, and 10 events) and holds its row lock: `locked` once the change is
     * sent, then it commits when `release` is fired; `writer` is the whole write.
     */
    function changeAndHold(store: PostgresStore, accountId: string, profileId: string, bucket: number) {
      const locked = signal();
      const release = signal();
      const writer = store.write(accountId, async (tx) => {
        const state = (await tx.lockProfile(accountId, profileId))!;
        await tx.updateProfile(accountId, { ...state, bucket, stats: { ...state.stats, events: 10 } });
        await tx.getProfile(accountId, profileId); // the update is written behind: this sends it
        locked.fire();
        await release.done;
      });
      return { locked: locked.done, release: release.fire, writer };
    }

    it("runs again a transaction whose count-only profile was merged after it peeked, and adds to the target then", async () => {
      const { store, account, profiles } = await withProfiles(2);
      const [p, q] = profiles as [ProfileState, ProfileState];
      const peeked = signal();
      const merged = signal();
      let runs = 0;
      const adding = store.write(account.id, async (tx) => {
        runs++;
        const status = (await tx.peekProfile(account.id, p.id))!;
        if (runs === 1) {
          peeked.fire();
          await merged.done;
        }
        // As the pipeline does: a tombstone's events go to its target.
        const to = status.mergedInto ?? p.id;
        await tx.addActivity(account.id, [{ profileId: to, firstTs: 5, lastTs: 7, events: 2 }]);
        return to;
      });
      await peeked.done;
      await store.write(account.id, (tx) => tx.updateProfile(account.id, { ...p, mergedInto: q.id }));
      merged.fire();
      expect(await adding).toBe(q.id);
      expect(runs).toBe(2);
      expect((await store.reader.getProfile(account.id, q.id))?.stats.events).toBe(2);
      expect(await store.reader.getProfile(account.id, p.id)).toEqual({ ...p, mergedInto: q.id });
    });

    it("adds to a profile that another writer changed while the addition waited for its row lock", async () => {
      const { store, account, profiles } = await withProfiles(1);
      const p = profiles[0]!;
      const { locked, release, writer } = changeAndHold(store, account.id, p.id, 5);
      await locked;
      let runs = 0;
      const adding = store.write(account.id, async (tx) => {
        runs++;
        await tx.addActivity(account.id, [{ profileId: p.id, firstTs: 5, lastTs: 7, events: 2 }]);
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      release();
      await writer;
      await adding;
      expect(runs).toBe(1);
      expect(await store.reader.getProfile(account.id, p.id)).toMatchObject({
        bucket: 5,
        firstSeen: 5,
        lastSeen: 7,
        stats: { events: 12 },
      });
    });

    it("adds count-only activity at the rows prefetch read, and by id where another writer moved one since", async () => {
      const { store, account, profiles } = await withProfiles(3);
      const [p, q, r] = profiles as [ProfileState, ProfileState, ProfileState];
      await store.write(account.id, async (tx) => {
        for (const [device, owner] of [
          ["dp", p],
          ["dq", q],
          ["dr", r],
        ] as const) {
          await tx.upsertDevice(account.id, { deviceId: device, profileId: owner.id, pushToken: null, platform: null });
        }
      });
      const prefetched = signal();
      const moved = signal();
      let runs = 0;
      const adding = store.write(account.id, async (tx) => {
        runs++;
        const devices = ["dp", "dq", "dr"];
        await tx.prefetch!(account.id, {
          deviceIds: devices,
          identities: [],
          profileIds: [],
          countOnly: { deviceIds: devices, identities: [], profileIds: [] },
        });
        prefetched.fire();
        await moved.done;
        const owners = [];
        for (const d of devices) owners.push((await tx.findDevice(account.id, d))!.profileId);
        await tx.addActivity(
          account.id,
          owners.map((profileId) => ({ profileId, firstTs: 5, lastTs: 7, events: 2 })),
        );
      });
      await prefetched.done;
      // q moves and commits before the addition; r moves in a transaction that commits only while the addition waits.
      await store.write(account.id, (tx) => tx.updateProfile(account.id, { ...q, bucket: 7 }));
      const { locked, release, writer } = changeAndHold(store, account.id, r.id, 9);
      await locked;
      moved.fire();
      await new Promise((resolve) => setTimeout(resolve, 100));
      release();
      await Promise.all([writer, adding]);
      expect(runs).toBe(1);
      const added = { firstSeen: 5, lastSeen: 7 };
      expect(await store.reader.getProfile(account.id, p.id)).toMatchObject({ ...added, stats: { events: 2 } });
      expect(await store.reader.getProfile(account.id, q.id)).toMatchObject({
        ...added,
        bucket: 7,
        stats: { events: 2 },
      });
      expect(await store.reader.getProfile(account.id, r.id)).toMatchObject({
        ...added,
        bucket: 9,
        stats: { events: 12 },
      });
    });

    it("adds two groups' activity to shared profiles side by side: the second waits, neither runs again", async () => {
      const { store, account, profiles } = await withProfiles(80);
      const ids = profiles.map((p) => p.id).sort();
      const add = (from: number, to: number) =>
        ids.slice(from, to).map((profileId) => ({ profileId, firstTs: 5, lastTs: 7, events: 1 }));
      const added = signal();
      const release = signal();
      const runs = { first: 0, second: 0 };
      const first = store.write(account.id, async (tx) => {
        runs.first++;
        await tx.addActivity(account.id, add(0, 50));
        added.fire();
        await release.done;
      });
      await added.done;
      // Overlapping rows, in another order: the second group's rows are locked in id order whatever it was given.
      const second = store.write(account.id, async (tx) => {
        runs.second++;
        await tx.addActivity(account.id, add(25, 80).reverse());
      });
      await new Promise((resolve) => setTimeout(resolve, 100));
      release.fire();
      await Promise.all([first, second]);
      expect(runs).toEqual({ first: 1, second: 1 });
      const counts = await sql<{ id: string; events: string }>(
        "SELECT id, event_count AS events FROM profiles WHERE account_id = $1 ORDER BY id",
        [account.id],
      );
      expect(counts.map((r) => Number(r.events))).toEqual(ids.map((_, i) => (i >= 25 && i < 50 ? 2 : 1)));
    });

    it("adds count-only activity through the addresses it probed, even where statistics say profiles is tiny", async () => {
      const { store, account, profiles } = await withProfiles(19);
      // Statistics from when the account was small (autovacuum would refresh them only later), then 1,000 more people.
      await sql("ALTER TABLE profiles SET (autovacuum_enabled = false)");
      await sql("ANALYZE profiles");
      await store.write(account.id, async (tx) => {
        for (let i = 0; i < 1000; i++) await tx.insertProfile(account.id, blankProfile());
      });
      const rowsOf = await sql<{ id: string; row: string }>(
        "SELECT id, ctid::text AS row FROM profiles WHERE account_id = $1 AND id = ANY($2::text[])",
        [account.id, profiles.slice(0, 3).map((p) => p.id)],
      );
      const document = JSON.stringify(rowsOf.map((r) => ({ id: r.id, row: r.row, first: 1, last: 2, events: 1 })));
      // The function's body, planned with the settings the function sets (migration 8).
      const [fn] = await sql<{ body: string; config: string[] }>(
        "SELECT prosrc AS body, proconfig AS config FROM pg_proc WHERE proname = 'portrait_add_activity'",
      );
      const settings = fn!.config.map((c) => `SET ${c.replace("=", " = ")};`).join(" ");
      const body = fn!.body.replace("$2", `'${document}'::jsonb`).replaceAll("$1", `'${account.id}'`);
      const client = new pg.Client(db.url);
      await client.connect();
      let text: string;
      try {
        await client.query(settings);
        const plan = await client.query<{ "QUERY PLAN": string }>(`EXPLAIN ${body}`);
        text = plan.rows.map((row) => row["QUERY PLAN"]).join("\n");
      } finally {
        await client.end();
      }
      // The profiles it updates are reached by their row addresses one at a time, never by scanning the account.
      expect(text).toMatch(/Nested Loop[\s\S]*Tid Scan on profiles p\s+.*\n\s+TID Cond: \(ctid = d\."row"\)/);
      expect(text).not.toMatch(/(Seq|Bitmap Heap|Index) Scan on profiles p\b/);
      // And the function returns exactly the rows it updated.
      const updated = await sql<{ id: string }>(SQL.addActivityRows, [account.id, document]);
      expect(updated.map((r) => r.id).sort()).toEqual(rowsOf.map((r) => r.id).sort());
    });

    /** Whether another transaction holds profile `id`'s row lock now (a NOWAIT probe: no waiting, no timing). */
    async function rowLocked(id: string): Promise<boolean> {
      try {
        await sql("SELECT id FROM profiles WHERE id = $1 FOR UPDATE NOWAIT", [id]);
        return false;
      } catch (error) {
        if ((error as { code?: string }).code === "55P03") return true;
        throw error;
      }
    }

    /**
     * Prefetch of a batch (`countOnly`: which of dp and r only count-only events name; dq is named by another record
     * when `full`), held open: which of p (dp's owner), q (dq's) and r it locked, and what it answered.
     */
    async function prefetchLocks(full: boolean) {
      const { store, account, profiles } = await withProfiles(3);
      const [p, q, r] = profiles as [ProfileState, ProfileState, ProfileState];
      await store.write(account.id, async (tx) => {
        await tx.upsertDevice(account.id, { deviceId: "dp", profileId: p.id, pushToken: null, platform: null });
        await tx.upsertDevice(account.id, { deviceId: "dq", profileId: q.id, pushToken: null, platform: null });
      });
      const prefetched = signal();
      const release = signal();
      const batch = store.write(account.id, async (tx) => {
        await tx.prefetch!(account.id, {
          deviceIds: full ? ["dp", "dq"] : ["dp"],
          identities: [],
          profileIds: [r.id],
          countOnly: { deviceIds: ["dp"], identities: [], profileIds: [r.id] },
        });
        const seen = {
          device: await tx.findDevice(account.id, "dp"),
          status: await tx.peekProfile(account.id, p.id),
          named: await tx.peekProfile(account.id, r.id),
        };
        prefetched.fire();
        await release.done;
        return seen;
      });
      await prefetched.done;
      const locked = { p: await rowLocked(p.id), q: await rowLocked(q.id), r: await rowLocked(r.id) };
      release.fire();
      expect(await batch).toEqual({
        device: { deviceId: "dp", profileId: p.id, pushToken: null, platform: null },
        status: { mergedInto: null, journalMergeId: null },
        named: { mergedInto: null, journalMergeId: null },
      });
      return locked;
    }

    it("prefetch of count-only events alone only peeks their owners: their activity update locks them", async () => {
      expect(await prefetchLocks(false)).toEqual({ p: false, q: false, r: false });
    });

    it("prefetch locks the count-only events' owners with the profiles other records name, in one statement", async () => {
      // Every profile lock the group knows it will take, in one pass in id order: two groups that share people then
      // wait for each other rather than deadlock (the concurrency audit's F2; count-only-events.test.ts).
      expect(await prefetchLocks(true)).toEqual({ p: true, q: true, r: true });
    });

    it("prefetch reads count-only owners' status alone when no event carries context, and their context when asked", async () => {
      const { store, account, p } = await withDeviceOwner();
      for (const context of [false, true]) {
        const seen = await store.write(account.id, async (tx) => {
          await tx.prefetch!(account.id, countOnlyDevice("dp", context));
          return { status: await tx.peekProfile(account.id, p.id), context: await tx.peekContext(account.id, p.id) };
        });
        expect(seen).toEqual({
          status: { mergedInto: null, journalMergeId: p.journalMergeId },
          context: contextStatusOf(p),
        });
      }
    });

    describe("count-only devices remembered across transactions (DeviceOwners)", () => {
      /** A group whose only record is a count-only event on `deviceId`: what the transaction then knows of it. */
      const countOnlyRead = (store: PostgresStore, accountId: string, deviceId: string) =>
        store.write(accountId, async (tx) => {
          await tx.prefetch!(accountId, countOnlyDevice(deviceId, false));
          return tx.findDevice(accountId, deviceId);
        });
      const device = (deviceId: string, profileId: string, pushToken: string | null = null) => ({
        deviceId,
        profileId,
        pushToken,
        platform: null,
      });

      it("answers a device from memory while its owner's devices stay as they were, and follows every change another process makes", async () => {
        const { store: here, account, profiles } = await withProfiles(2);
        const there = await open();
        const [p, q] = profiles as [ProfileState, ProfileState];
        await there.write(account.id, (tx) => tx.upsertDevice(account.id, device("dp", p.id)));

        expect(await countOnlyRead(here, account.id, "dp")).toEqual(device("dp", p.id));
        expect(here.deviceOwners.hits).toBe(0);
        expect(await countOnlyRead(here, account.id, "dp")).toEqual(device("dp", p.id));
        expect(here.deviceOwners.hits).toBe(1);

        // Moved by another process: the owner's revision moved with it, so the device is probed again.
        await there.write(account.id, (tx) => tx.upsertDevice(account.id, device("dp", q.id)));
        expect(await countOnlyRead(here, account.id, "dp")).toEqual(device("dp", q.id));
        expect(here.deviceOwners.hits).toBe(1);
        expect(await countOnlyRead(here, account.id, "dp")).toEqual(device("dp", q.id));
        expect(here.deviceOwners.hits).toBe(2);

        // A new push token, then the device gone, then back: each is seen at once.
        await there.write(account.id, (tx) => tx.upsertDevice(account.id, device("dp", q.id, "token-1")));
        expect(await countOnlyRead(here, account.id, "dp")).toEqual(device("dp", q.id, "token-1"));
        await there.write(account.id, (tx) => tx.deleteDevice(account.id, "dp"));
        expect(await countOnlyRead(here, account.id, "dp")).toBeNull();
        await there.write(account.id, (tx) => tx.upsertDevice(account.id, device("dp", p.id)));
        expect(await countOnlyRead(here, account.id, "dp")).toEqual(device("dp", p.id));

        // The owner deleted with its devices.
        await there.write(account.id, (tx) => tx.deleteProfileData(account.id, p.id));
        expect(await countOnlyRead(here, account.id, "dp")).toBeNull();
        // A changed row that names the same owner moves its revision all the same; an unchanged one does not.
        const revision = async (id: string) =>
          (await sql<{ rev: string }>("SELECT handles_rev::text AS rev FROM profiles WHERE id = $1", [id]))[0]?.rev;
        await there.write(account.id, (tx) => tx.upsertDevice(account.id, device("dq", q.id)));
        const before = await revision(q.id);
        await there.write(account.id, (tx) => tx.upsertDevice(account.id, device("dq", q.id)));
        expect(await revision(q.id)).toBe(before);
        await there.write(account.id, (tx) => tx.upsertDevice(account.id, device("dq", q.id, "token-2")));
        expect(await revision(q.id)).toBe(String(Number(before) + 1));
      });

      it("reads a remembered device's owner with its context when the events carry context", async () => {
        const { store, account, p } = await withDeviceOwner();
        const read = () =>
          store.write(account.id, async (tx) => {
            await tx.prefetch!(account.id, countOnlyDevice("dp", true));
            return {
              device: await tx.findDevice(account.id, "dp"),
              status: await tx.peekProfile(account.id, p.id),
              context: await tx.peekContext(account.id, p.id),
            };
          });
        const expected = {
          device: device("dp", p.id),
          status: { mergedInto: null, journalMergeId: p.journalMergeId },
          context: contextStatusOf(p),
        };
        expect(await read()).toEqual(expected);
        expect(await read()).toEqual(expected);
        expect(store.deviceOwners.hits).toBe(1);
      });

      it("learns nothing that a transaction read of a device it wrote itself, whatever became of the write", async () => {
        const { store, account, profiles } = await withProfiles(2);
        const [p, q] = profiles as [ProfileState, ProfileState];
        await store.write(account.id, (tx) => tx.upsertDevice(account.id, device("dp", p.id)));
        // Moved inside a record that then fails: the read saw the move, the commit does not keep it.
        await store.write(account.id, async (tx) => {
          await tx
            .savepoint(async () => {
              await tx.upsertDevice(account.id, device("dp", q.id));
              await tx.prefetch!(account.id, countOnlyDevice("dp", false));
              throw new Error("the record fails");
            })
            .catch(() => undefined);
        });
        expect(await countOnlyRead(store, account.id, "dp")).toEqual(device("dp", p.id));
        expect(await countOnlyRead(store, account.id, "dp")).toEqual(device("dp", p.id));
        expect(store.deviceOwners.hits).toBe(1);
      });
    });

    it("keeps a handle that a transaction found free for it until commit, as one writer at a time would", async () => {
      const { store, account, profiles } = await withProfiles(2);
      const [p, q] = profiles as [ProfileState, ProfileState];
      const lookedUp = deferred();
      const mayProceed = deferred();
      const first = store.write(account.id, async (tx) => {
        const none = [
          await tx.findProfileByIdentity(account.id, "Email", "new@example.com"),
          await tx.findDevice(account.id, "new-device"),
        ];
        lookedUp.resolve();
        await mayProceed.promise;
        await tx.upsertDevice(account.id, { deviceId: "new-device", profileId: p.id, pushToken: null, platform: null });
        return { none, owner: await tx.claimIdentity(account.id, "Email", "new@example.com", p.id) };
      });
      await lookedUp.promise;
      const finished: string[] = [];
      const claimer = store
        .write(account.id, (tx) => tx.claimIdentity(account.id, "Email", "new@example.com", q.id))
        .finally(() => finished.push("claim"));
      const reader = store
        .write(account.id, async (tx) => (await tx.findDevice(account.id, "new-device"))?.profileId)
        .finally(() => finished.push("look-up"));
      await new Promise((resolve) => setTimeout(resolve, 100));
      // Both wait for the first transaction instead of slipping in between its look-ups and its claims.
      expect(finished).toEqual([]);
      // Outside transactions nothing waits.
      expect(await store.reader.findProfileByIdentity(account.id, "Email", "new@example.com")).toBeNull();
      mayProceed.resolve();
      expect(await first).toEqual({ none: [null, null], owner: p.id });
      expect(await claimer).toBe(p.id);
      expect(await reader).toBe(p.id);
    });

    it("reads the revisions after the account lock: a settings change it waited for is what it sees", async () => {
      const { store, account } = await withProfiles(0);
      const before = (await store.reader.revisions(account.id)).settings;
      const written = deferred();
      const mayCommit = deferred();
      const change = store.write(account.id, async (tx) => {
        await tx.lockAccount(account.id);
        await tx.updateSettings(account.id, { ...account.settings, timezone: "Asia/Tokyo" });
        written.resolve();
        await mayCommit.promise;
      });
      await written.promise;
      let read = false;
      const writer = store
        .write(account.id, (tx) => tx.revisions(account.id))
        .finally(() => {
          read = true;
        });
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(read).toBe(false);
      mayCommit.resolve();
      await change;
      expect((await writer).settings).toBe(before + 1);
    });

    it("announces revoked keys and settings changes to every watcher when they commit, and nothing rolled back", async () => {
      const { store, account } = await withProfiles(0);
      const other = await open();
      const heard: unknown[] = [];
      const stop = await other.watchAccounts!((change) => heard.push(change));
      try {
        const accounts = new Accounts(store);
        const { row } = await accounts.createKey(account.id, "secret", "to revoke");
        await expect(
          store.write(account.id, async (tx) => {
            await tx.updateSettings(account.id, { ...account.settings, timezone: "Asia/Tokyo" });
            throw new Error("rolled back");
          }),
        ).rejects.toThrow("rolled back");
        expect(await store.revokeApiKey(account.id, row.id, Date.now())).toBe(true);
        await store.write(account.id, (tx) => tx.updateSettings(account.id, account.settings));
        await store.write(account.id, (tx) => tx.updateSettings(account.id, account.settings));
        for (let waited = 0; waited < 3_000 && heard.length < 3; waited += 20) {
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        expect(heard).toEqual([
          { kind: "key", accountId: account.id, keyId: row.id },
          { kind: "settings", accountId: account.id },
          { kind: "settings", accountId: account.id },
        ]);
        // Revoking a key that is not the account's announces nothing.
        expect(await store.revokeApiKey(account.id, "key_unknown", Date.now())).toBe(false);
      } finally {
        await stop();
      }
    });

    it("gives up after 5 attempts and rethrows, and never re-runs other errors", async () => {
      const store = await open();
      const account = newAccount();
      await store.createAccount(account);
      let runs = 0;
      const deadlock = Object.assign(new Error("deadlock detected"), { code: "40P01" });
      await expect(
        store.write(account.id, async () => {
          runs++;
          throw deadlock;
        }),
      ).rejects.toBe(deadlock);
      expect(runs).toBe(5);

      runs = 0;
      await expect(
        store.write(account.id, async (tx) => {
          runs++;
          await tx.insertProfile(account.id, blankProfile());
          throw new Error("not retryable");
        }),
      ).rejects.toThrow("not retryable");
      expect(runs).toBe(1);
    });

    it("brings a transaction back from a failed statement inside a savepoint", async () => {
      const store = await open();
      const account = newAccount();
      await store.createAccount(account);
      const [kept, after] = [blankProfile(), blankProfile()];
      const snapshot = { state: kept, devices: [], userAccounts: [], documents: [], chargedIds: [], orphans: [] };
      const merge: NewMerge = {
        id: newId(),
        targetId: kept.id,
        sourceId: after.id,
        createdAt: 1,
        undoneAt: null,
        eventSeqAtMerge: 0,
        target: snapshot,
        source: snapshot,
        movedEventSeqs: [],
        droppedEvents: [],
      };
      await store.write(account.id, async (tx) => {
        await tx.insertProfile(account.id, kept);
        await tx.insertMerge(account.id, merge);
        // A unique violation aborts a PostgreSQL transaction; ROLLBACK TO SAVEPOINT is what makes it usable again.
        // (New profiles are written behind, so a merge id inserted twice is the statement that fails at once here.)
        await expect(tx.savepoint(() => tx.insertMerge(account.id, merge))).rejects.toThrow();
        expect(await tx.claimRecordId(account.id, "after the failure", 1)).toBe(true);
        await tx.insertProfile(account.id, after);
      });
      for (const p of [kept, after]) expect(await store.reader.getProfile(account.id, p.id)).toEqual(p);
      expect((await store.reader.getMerge(account.id, merge.id))?.targetId).toBe(kept.id);
    });

    it("closes only after the write in progress has committed", async () => {
      const store = await PostgresStore.connect(db.url);
      await store.migrate();
      const account = newAccount();
      await store.createAccount(account);
      const profile = blankProfile();
      const writing = store.write(account.id, async (tx) => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        await tx.insertProfile(account.id, profile);
      });
      await new Promise((resolve) => setTimeout(resolve, 5));
      await store.close();
      await writing;
      await store.close();
      const reopened = await open();
      expect(await reopened.reader.getProfile(account.id, profile.id)).toEqual(profile);
    });

    it("sorts text in byte order, as SQLite does, whatever the database's locale", async () => {
      const store = await open();
      const account = newAccount();
      await store.createAccount(account);
      const ids = ["b", "B", "a", "A", "_", "é", "e", "Z"];
      const owner = blankProfile();
      await store.write(account.id, async (tx) => {
        await tx.insertProfile(account.id, owner);
        for (const id of ids) {
          await tx.insertProfile(account.id, { ...blankProfile(id), orphanOf: owner.id });
          await tx.upsertDevice(account.id, { deviceId: id, profileId: owner.id, pushToken: null, platform: null });
        }
      });
      const bytewise = [...ids].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      expect(await store.reader.listOrphans(account.id, owner.id)).toEqual(bytewise);
      expect((await store.reader.listDevices(account.id, owner.id)).map((d) => d.deviceId)).toEqual(bytewise);
      expect(await store.reader.listProfileIds(account.id, "_", 100)).toEqual(
        [...bytewise, owner.id].sort().filter((id) => id > "_"),
      );
    });

    it("numbers a batch of 1000 events in order with one statement", async () => {
      const { store, account, profiles } = await withProfiles(1);
      const p = profiles[0]!;
      const batch = Array.from({ length: 1000 }, (_, i) => event(p.id, 1_700_000_000_000 + ((i * 7919) % 1000)));
      const seqs = await store.write(account.id, (tx) => tx.insertEvents(account.id, batch));
      expect(seqs).toHaveLength(1000);
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
      const stored = await store.write(account.id, (tx) => tx.listEventsBySeq(account.id, seqs));
      expect(stored.map((e) => e.id)).toEqual(batch.map((e) => e.id));
      expect(stored.map((e) => e.ts)).toEqual(batch.map((e) => e.ts));
      expect(await store.reader.maxEventSeq(account.id)).toBe(seqs[999]);
    });

    it("answers record ids from the prefetch: duplicates apply nothing, a failed record frees its id", async () => {
      const store = await open();
      const clock = { now: () => Date.now() };
      const { account } = await new Accounts(store, clock).create("record ids");
      const portrait = new Portrait(store, clock);
      const record = (id: string, email: string, properties: Record<string, unknown> = {}) => ({
        type: "profile",
        id,
        identity: { Email: email },
        properties,
      });
      const ingest = (...records: unknown[]) => portrait.ingest(account, { records });
      const outcomes = (r: { results: Array<{ index: number; outcome: string }> }) =>
        r.results.map((x) => [x.index, x.outcome]);
      const owner = (email: string) => store.reader.findProfileByIdentity(account.id, "Email", email);
      const score = async (email: string) => (await store.reader.getProfile(account.id, (await owner(email))!))?.props;

      expect(outcomes(await ingest(record("r-1", "one@example.com", { Score: 1 })))).toEqual([[0, "created"]]);
      // Stored before the group, and the same id twice in one group.
      const second = await ingest(
        record("r-1", "one@example.com", { Score: 2 }),
        record("r-2", "two@example.com"),
        record("r-2", "three@example.com"),
      );
      expect(outcomes(second)).toEqual([
        [0, "duplicate"],
        [1, "created"],
        [2, "duplicate"],
      ]);
      expect((await score("one@example.com"))?.Score?.v).toBe(1);
      expect(await owner("three@example.com")).toBeNull();

      // A record that fails after its claim (PostgreSQL refuses NUL when its profile is written) leaves the id free:
      // for a later record of the same group, and for a later group.
      const failing = await ingest(
        record("r-3", "four@example.com", { Name: "a\u0000b" }),
        record("r-4", "five@example.com", { Name: "a\u0000b" }),
        record("r-4", "five@example.com", { Name: "Five" }),
      );
      expect(failing.unprocessed.map((u) => [u.index, u.code])).toEqual([
        [0, "INVALID_VALUE"],
        [1, "INVALID_VALUE"],
      ]);
      expect(outcomes(failing)).toEqual([[2, "created"]]);
      expect(await owner("four@example.com")).toBeNull();
      expect(outcomes(await ingest(record("r-3", "four@example.com", { Name: "Four" })))).toEqual([[0, "created"]]);
      expect(outcomes(await ingest(record("r-4", "five@example.com", { Name: "Again" })))).toEqual([[0, "duplicate"]]);
      expect((await score("five@example.com"))?.Name?.v).toBe("Five");
    });

    it("applies a record id once when two stores ingest it at the same time, both answering", async () => {
      const stores = [await open(), await open()];
      const clock = { now: () => Date.now() };
      const { account } = await new Accounts(stores[0]!, clock).create("racing record ids");
      const portraits = stores.map((store) => new Portrait(store, clock));
      for (let round = 0; round < 20; round++) {
        // Different identities, so that nothing but the record id makes the two transactions wait on each other.
        const results = await Promise.all(
          portraits.map((portrait, side) =>
            portrait.ingest(account, {
              records: [
                {
                  type: "profile",
                  id: `race-${round}`,
                  identity: { Email: `r${round}-${side}@example.com` },
                  properties: { Round: round },
                },
                {
                  type: "profile",
                  id: `own-${round}-${side}`,
                  identity: { Email: `o${round}-${side}@example.com` },
                  properties: { Round: round },
                },
              ],
            }),
          ),
        );
        for (const result of results) expect(result.unprocessed).toEqual([]);
        const raced = results.map((r) => r.results.find((x) => x.index === 0)?.outcome).sort();
        expect(raced).toEqual(["created", "duplicate"]);
        const owners = await Promise.all(
          [0, 1].map((side) =>
            stores[0]!.reader.findProfileByIdentity(account.id, "Email", `r${round}-${side}@example.com`),
          ),
        );
        expect(owners.filter((o) => o !== null)).toHaveLength(1);
        for (const side of [0, 1]) {
          const own = await stores[0]!.reader.findProfileByIdentity(
            account.id,
            "Email",
            `o${round}-${side}@example.com`,
          );
          expect(own).not.toBeNull();
        }
      }
    });

    it("refuses text PostgreSQL cannot store as INVALID_VALUE, leaving the transaction usable", async () => {
      const store = await open();
      const account = newAccount();
      await store.createAccount(account);
      const p = blankProfile();
      const refusals = await store.write(account.id, async (tx) => {
        await tx.insertProfile(account.id, p);
        const attempts: Array<() => Promise<unknown>> = [
          () => tx.insertEvents(account.id, [{ ...event(p.id, 1), properties: { note: "a\u0000b" } }]),
          () => tx.insertEvents(account.id, [{ ...event(p.id, 1), properties: { note: "a\ud800b" } }]),
          () => tx.upsertDevice(account.id, { deviceId: "d\u0000", profileId: p.id, pushToken: null, platform: null }),
        ];
        const errors: unknown[] = [];
        for (const attempt of attempts) errors.push(await tx.savepoint<unknown>(attempt).catch((e: unknown) => e));
        // A backslash before "u0000" is text, not an escape: stored as it is.
        await tx.insertEvents(account.id, [{ ...event(p.id, 2), properties: { note: "\\u0000 \\\\ud800" } }]);
        return errors;
      });
      for (const error of refusals) {
        expect(error).toBeInstanceOf(PortraitError);
        expect((error as PortraitError).code).toBe("INVALID_VALUE");
      }
      const { events } = await store.reader.listEvents(account.id, [p.id], { limit: 10 });
      expect(events.map((e) => e.properties)).toEqual([{ note: "\\u0000 \\\\ud800" }]);
    });

    it("reads the cards asked for in one turn with one statement per kind, and each alone when that one fails", async () => {
      const { store, account, profiles } = await withProfiles(3);
      await store.write(account.id, async (tx) => {
        for (const [i, p] of profiles.entries()) await tx.claimIdentity(account.id, "Email", `p${i}@example.com`, p.id);
      });
      const pool = new pg.Pool({ connectionString: db.url, max: 2 });
      const statements: string[] = [];
      let failNext: string | null = null;
      const reader = new PooledReader({
        query: <R extends pg.QueryResultRow>(config: pg.QueryConfig) => {
          const name = config.name ?? config.text;
          statements.push(name);
          if (name === failNext) {
            failNext = null;
            return Promise.reject(new Error("connection lost"));
          }
          return pool.query<R>(config);
        },
      });
      try {
        const byEmail = (i: number) => ({ identity: { key: "Email" as const, value: `p${i}@example.com` } });
        const cards = await Promise.all([
          reader.getProfileCard(account.id, byEmail(2)),
          reader.getProfileCard(account.id, { profileId: profiles[0]!.id }),
          reader.getProfileCard(account.id, byEmail(0)),
          reader.getProfileCard(account.id, { profileId: newId() }),
          reader.getProfileCard(account.id, byEmail(9)),
          reader.getProfileCard(account.id, { profileId: profiles[1]!.id }),
          // No stored value holds U+0000 (both stores refuse it on the way in): nobody, and nothing sent.
          reader.getProfileCard(account.id, { identity: { key: "Email", value: "a\u0000b@example.com" } }),
        ]);
        expect(cards.map((c) => c?.state.id ?? null)).toEqual([
          profiles[2]!.id,
          profiles[0]!.id,
          profiles[0]!.id,
          null,
          null,
          profiles[1]!.id,
          null,
        ]);
        expect(statements.sort()).toEqual(["profileCards", "profileCardsByIdentity"]);

        // The turn's statement fails: each look-up runs alone, and answers as it would have.
        statements.length = 0;
        failNext = "profileCardsByIdentity";
        const again = await Promise.all([1, 2, 9].map((i) => reader.getProfileCard(account.id, byEmail(i))));
        expect(again.map((c) => c?.state.id ?? null)).toEqual([profiles[1]!.id, profiles[2]!.id, null]);
        expect(statements).toEqual(["profileCardsByIdentity", ...Array(3).fill("profileCardByIdentity")]);
      } finally {
        await pool.end();
      }
    });
  });
});
