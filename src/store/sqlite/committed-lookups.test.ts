import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ProfileState } from "../../engine/types.js";
import { blankProfile, newAccount } from "../conformance/fixtures.js";
import { LookupTable } from "./committed-lookups.js";
import { SqliteStore } from "./sqlite-store.js";

/** A store on a file of its own with one account, new for each test of the describe block that calls this. */
function freshStore(): { store: SqliteStore; file: string; accountId: string } {
  const context = { store: undefined as unknown as SqliteStore, file: "", accountId: "" };
  let dir = "";
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "portrait-lookups-"));
    context.file = join(dir, "portrait.db");
    context.store = SqliteStore.open(context.file);
    const account = newAccount();
    await context.store.createAccount(account);
    context.accountId = account.id;
  });
  afterEach(async () => {
    await context.store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return context;
}

const failed = new Error("rolled back on purpose");

describe("device owners and profile statuses remembered across transactions", () => {
  const context = freshStore();
  let store: SqliteStore;
  let file: string;
  let accountId: string;
  beforeEach(() => {
    ({ store, file, accountId } = context);
  });

  async function newProfile(): Promise<ProfileState> {
    const state = blankProfile();
    await store.write(accountId, (tx) => tx.insertProfile(accountId, state));
    return state;
  }
  const device = (deviceId: string, profileId: string) => ({ deviceId, profileId, pushToken: null, platform: "web" });
  const ownerOf = (s: SqliteStore, deviceId: string) =>
    s.write(accountId, async (tx) => (await tx.findDevice(accountId, deviceId))?.profileId ?? null);
  const statusOf = (s: SqliteStore, profileId: string) =>
    s.write(accountId, (tx) => tx.peekProfile(accountId, profileId));

  it("answers a device's new owner once a later transaction repoints or deletes it, and keeps it when that rolls back", async () => {
    const [a, b] = [await newProfile(), await newProfile()];
    await store.write(accountId, (tx) => tx.claimDevice(accountId, device("d1", a.id)));
    expect(await ownerOf(store, "d1")).toBe(a.id);

    await store.write(accountId, (tx) => tx.upsertDevice(accountId, device("d1", b.id)));
    expect(await ownerOf(store, "d1")).toBe(b.id);

    await expect(
      store.write(accountId, async (tx) => {
        await tx.upsertDevice(accountId, device("d1", a.id));
        // Its own write, inside the transaction.
        expect((await tx.findDevice(accountId, "d1"))?.profileId).toBe(a.id);
        throw failed;
      }),
    ).rejects.toBe(failed);
    expect(await ownerOf(store, "d1")).toBe(b.id);

    await store.write(accountId, (tx) => tx.deleteDevice(accountId, "d1"));
    expect(await ownerOf(store, "d1")).toBeNull();
  });

  it("hands out copies: changing an answer changes nothing remembered", async () => {
    const a = await newProfile();
    await store.write(accountId, (tx) => tx.claimDevice(accountId, device("d1", a.id)));
    expect(await ownerOf(store, "d1")).toBe(a.id);
    await store.write(accountId, async (tx) => {
      const found = (await tx.findDevice(accountId, "d1"))!;
      found.profileId = "somebody else";
    });
    expect(await ownerOf(store, "d1")).toBe(a.id);
  });

  it("forgets the devices of a deleted profile", async () => {
    const a = await newProfile();
    await store.write(accountId, async (tx) => {
      await tx.claimDevice(accountId, device("d1", a.id));
      await tx.claimDevice(accountId, device("d2", a.id));
    });
    expect([await ownerOf(store, "d1"), await ownerOf(store, "d2")]).toEqual([a.id, a.id]);
    expect((await statusOf(store, a.id))?.mergedInto).toBeNull();

    await store.write(accountId, (tx) => tx.deleteProfileData(accountId, a.id));
    expect([await ownerOf(store, "d1"), await ownerOf(store, "d2")]).toEqual([null, null]);
    expect(await statusOf(store, a.id)).toBeNull();
  });

  it("answers a profile's status once a later transaction merges it, and keeps it when that rolls back", async () => {
    const [source, target] = [await newProfile(), await newProfile()];
    expect(await statusOf(store, source.id)).toEqual({ mergedInto: null, journalMergeId: null });

    await store.write(accountId, async (tx) => {
      const state = (await tx.lockProfile(accountId, source.id))!;
      await tx.updateProfile(accountId, { ...state, mergedInto: target.id });
    });
    expect(await statusOf(store, source.id)).toEqual({ mergedInto: target.id, journalMergeId: null });

    await expect(
      store.write(accountId, async (tx) => {
        const state = (await tx.lockProfile(accountId, source.id))!;
        await tx.updateProfile(accountId, { ...state, mergedInto: null });
        expect((await tx.peekProfile(accountId, source.id))?.mergedInto).toBeNull();
        throw failed;
      }),
    ).rejects.toBe(failed);
    expect(await statusOf(store, source.id)).toEqual({ mergedInto: target.id, journalMergeId: null });
  });

  it("answers what another connection to the file committed since", async () => {
    const [a, b] = [await newProfile(), await newProfile()];
    await store.write(accountId, (tx) => tx.claimDevice(accountId, device("d1", a.id)));
    expect(await ownerOf(store, "d1")).toBe(a.id);
    expect((await statusOf(store, a.id))?.mergedInto).toBeNull();

    const other = SqliteStore.open(file);
    try {
      await other.write(accountId, async (tx) => {
        await tx.upsertDevice(accountId, device("d1", b.id));
        const state = (await tx.lockProfile(accountId, a.id))!;
        await tx.updateProfile(accountId, { ...state, mergedInto: b.id });
      });
      // `other` learned these in its own transaction; `store` must not answer from what it learned before.
      expect(await ownerOf(store, "d1")).toBe(b.id);
      expect((await statusOf(store, a.id))?.mergedInto).toBe(b.id);
    } finally {
      await other.close();
    }
  });
});

describe("activity added to profiles a transaction saw live", () => {
  const context = freshStore();
  let store: SqliteStore;
  let accountId: string;
  beforeEach(() => {
    ({ store, accountId } = context);
  });

  const T0 = 1_700_000_000_000;
  async function twoProfiles(): Promise<[ProfileState, ProfileState]> {
    const [a, b] = [blankProfile(), blankProfile()];
    await store.write(accountId, async (tx) => {
      await tx.insertProfile(accountId, a);
      await tx.insertProfile(accountId, b);
    });
    return [a, b];
  }

  it("is refused once the transaction itself merged the profile it had seen live", async () => {
    const [source, target] = await twoProfiles();
    await store.write(accountId, async (tx) => {
      expect((await tx.peekProfile(accountId, source.id))?.mergedInto).toBeNull();
      const state = (await tx.lockProfile(accountId, source.id))!;
      await tx.updateProfile(accountId, { ...state, mergedInto: target.id });
      await expect(
        tx.addActivity(accountId, [{ profileId: source.id, firstTs: T0, lastTs: T0, events: 1 }]),
      ).rejects.toThrow(/not live/);
    });
  });

  it("is refused when what the transaction saw live was its own change, since rolled back", async () => {
    const [source, target] = await twoProfiles();
    await store.write(accountId, async (tx) => {
      const state = (await tx.lockProfile(accountId, source.id))!;
      await tx.updateProfile(accountId, { ...state, mergedInto: target.id });
      await expect(
        tx.savepoint(async () => {
          await tx.updateProfile(accountId, { ...state, mergedInto: null });
          expect((await tx.peekProfile(accountId, source.id))?.mergedInto).toBeNull();
          throw failed;
        }),
      ).rejects.toBe(failed);
      await expect(
        tx.addActivity(accountId, [{ profileId: source.id, firstTs: T0, lastTs: T0, events: 1 }]),
      ).rejects.toThrow(/not live/);
    });
  });

  it("adds to a profile seen live, from what the look-ups remembered as well as from its row", async () => {
    const [a] = await twoProfiles();
    for (let round = 0; round < 2; round++) {
      await store.write(accountId, async (tx) => {
        expect((await tx.peekProfile(accountId, a.id))?.mergedInto).toBeNull();
        await tx.addActivity(accountId, [{ profileId: a.id, firstTs: T0 + round, lastTs: T0 + round, events: 2 }]);
      });
    }
    const stored = (await store.reader.getProfile(accountId, a.id))!;
    expect([stored.firstSeen, stored.lastSeen, stored.stats.events]).toEqual([T0, T0 + 1, 4]);
  });
});

describe("LookupTable", () => {
  it("keeps at most its limit over all accounts, dropping the oldest eighth of the largest account's when full", () => {
    const table = new LookupTable<number>(16);
    for (let i = 0; i < 12; i++) table.set("big", `k${i}`, i);
    for (let i = 0; i < 4; i++) table.set("small", `k${i}`, 100 + i);
    expect(table.size).toBe(16);
    table.set("small", "k4", 104);
    expect(table.size).toBe(15);
    expect([table.get("big", "k0"), table.get("big", "k1"), table.get("big", "k2")]).toEqual([undefined, undefined, 2]);
    expect(table.get("small", "k0")).toBe(100);
    // Replacing an entry that is there evicts nothing; the same id in another account is another entry.
    table.set("small", "k4", 204);
    expect([table.size, table.get("small", "k4"), table.get("big", "k4")]).toEqual([15, 204, 4]);
    table.delete("big", "k4");
    table.delete("big", "k4");
    expect([table.size, table.get("big", "k4")]).toEqual([14, undefined]);
  });
});
