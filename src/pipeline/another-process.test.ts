/**
 * Each process caches what it knows of an account: its property type registry (TypeCache) and its settings (the
 * API key cache hands out account rows up to 30 s old). A change made through another process must be what this
 * process checks its very next write against: the one type change a registration allows (string → multi by `$add`),
 * and any settings change. Two Portrait services on one store stand for two processes here (both caches are the
 * service's); the PostgreSQL multi-process suite proves the same with two real `portrait serve` processes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Account } from "../engine/types.js";
import { PostgresStore } from "../store/postgres/postgres-store.js";
import { deferred } from "../test-support/deferred.js";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { Portrait } from "./portrait.js";

const stores = await storesUnderTest();

describe.each(stores)("a type changed by another process (%s)", (kind) => {
  let h: Harness;
  let other: Portrait;

  beforeAll(async () => {
    h = await makeHarness({}, kind);
    other = new Portrait(h.store, h.clock);
  });
  afterAll(() => h.close());

  const profile = (portrait: Portrait, identity: string, properties: Record<string, unknown>) =>
    portrait.ingest(h.account, { records: [{ type: "profile", identity: { Identity: identity }, properties }] });
  const codes = (r: Awaited<ReturnType<Portrait["ingest"]>>) => r.unprocessed.map((u) => u.code);

  it("is checked by this process's next write, as the process that changed it checks it", async () => {
    // Both processes have Tags cached as a string.
    expect(codes(await profile(h.portrait, "first", { Tags: "red" }))).toEqual([]);
    expect(codes(await profile(other, "second", { Tags: "blue" }))).toEqual([]);
    expect(h.portrait.types.get(h.account.id, "profile", "Tags")).toBe("string");

    // The other process turns it into a multi-value.
    expect(codes(await profile(other, "second", { Tags: { $add: ["green"] } }))).toEqual([]);

    // This one now refuses a plain string there and takes a list, exactly as the other does.
    for (const portrait of [h.portrait, other]) {
      expect(codes(await profile(portrait, "first", { Tags: "yellow" }))).toEqual(["TYPE_MISMATCH"]);
      expect(codes(await profile(portrait, "first", { Tags: ["x", "y"] }))).toEqual([]);
    }
    expect(h.portrait.types.get(h.account.id, "profile", "Tags")).toBe("multi");
    const [person] = await h.portrait.findProfiles(h.account, { kind: "identity", key: "Identity", value: "first" });
    expect(person?.properties.Tags).toEqual(["x", "y"]);
  });

  it("costs one read per transaction while nothing changes: the registry is not read again", async () => {
    const reader = h.store.reader;
    let listed = 0;
    const listTypes = reader.listTypes.bind(reader);
    reader.listTypes = (accountId) => {
      listed++;
      return listTypes(accountId);
    };
    try {
      for (let i = 0; i < 3; i++) await h.portrait.types.ensure(h.account.id);
      expect(listed).toBe(0);
      expect(codes(await profile(other, "third", { Labels: "a" }))).toEqual([]);
      expect(codes(await profile(other, "third", { Labels: { $add: ["b"] } }))).toEqual([]);
      await h.portrait.types.ensure(h.account.id);
      expect(listed).toBe(1);
      expect(h.portrait.types.get(h.account.id, "profile", "Labels")).toBe("multi");
    } finally {
      reader.listTypes = listTypes;
    }
  });
});

describe.each(stores)("settings changed by another process (%s)", (kind) => {
  let h: Harness;
  let other: Portrait;
  /** The account row as the other process cached it with its API key, before the change. */
  let cached: Account;

  beforeAll(async () => {
    h = await makeHarness({}, kind);
    other = new Portrait(h.store, h.clock);
    cached = structuredClone(h.account);
    // The other process has written under the old settings already.
    const first = await other.ingest(cached, {
      records: [{ type: "profile", identity: { Email: "a@example.com" }, properties: { Name: "Bo" } }],
    });
    expect(first.unprocessed).toEqual([]);
  });
  afterAll(() => h.close());

  it("applies to the other process's next batch, even one it parsed under its cached settings", async () => {
    await h.settings({ identityKeys: ["Identity", "Email", "Phone"] });
    expect(cached.settings.identityKeys).not.toContain("Phone");

    // Refused under the cached settings (Phone is no identity key there), taken under the stored ones.
    const byPhone = await other.ingest(cached, {
      records: [{ type: "profile", identity: { Phone: "+33612345678" }, properties: { Name: "Ana" } }],
    });
    expect(byPhone.unprocessed).toEqual([]);
    // A new person's Phone property is claimed as an identity, so the account can find them by it.
    const created = await other.ingest(cached, {
      records: [{ type: "profile", identity: { Email: "b@example.com" }, properties: { Phone: "+33700000001" } }],
    });
    expect(created.unprocessed).toEqual([]);
    const found = await h.portrait.findProfiles(h.account, { kind: "identity", key: "Phone", value: "+33700000001" });
    expect(found.map((p) => p.id)).toEqual([created.results[0]?.profileId]);
  });

  it("spends no write transaction on a batch that no settings could take", async () => {
    const write = h.store.write.bind(h.store);
    let writes = 0;
    h.store.write = (accountId, fn) => {
      writes++;
      return write(accountId, fn);
    };
    try {
      const refused = await other.ingest(cached, { records: [{ type: "profile" }, { type: "nonsense" }] });
      expect(refused.unprocessed.map((u) => u.code)).toEqual(["MISSING_HANDLE", "INVALID_RECORD"]);
      expect(writes).toBe(0);
    } finally {
      h.store.write = write;
    }
  });

  it("waits for a write transaction under way to commit before it changes anything", async () => {
    const order: string[] = [];
    const running = deferred();
    const held = deferred();
    const writer = other.transact(cached, async (uow) => {
      running.resolve();
      await held.promise;
      order.push(`writer saw timezone ${uow.account.settings.timezone}`);
    });
    await running.promise;
    const change = h.settings({ timezone: "Europe/Paris" }).then(() => order.push("settings changed"));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(order).toEqual([]);
    held.resolve();
    await Promise.all([writer, change]);
    expect(order).toEqual(["writer saw timezone UTC", "settings changed"]);
    // And the next transaction of the other process sees the new settings.
    const zone = await other.transact(cached, async (uow) => uow.account.settings.timezone);
    expect(zone).toBe("Europe/Paris");
  });
});

describe.each(stores.filter((kind) => kind === "postgres"))("a burst of writes on a cold process (%s)", (kind) => {
  let h: Harness;

  beforeAll(async () => {
    h = await makeHarness({}, kind);
  });
  afterAll(() => h.close());

  it("reads the settings in each write's own transaction: it never waits for a connection the burst holds", async () => {
    const created = await h.ingest(
      { type: "profile", identity: { Identity: "cold-a" }, properties: { n: 1 } },
      { type: "profile", identity: { Identity: "cold-b" }, properties: { n: 1 } },
    );
    const ids = created.results.map((r) => r.profileId!);
    // A process that has not read the account's settings yet (just started, or just told of a change), with as many
    // writes at once as its pool has connections: each holds one, then reads the settings.
    const pool = await PostgresStore.connect(h.databaseUrl!, { max: 2, concurrentWriters: 1 });
    try {
      const cold = new Portrait(pool, h.clock);
      const patched = await Promise.all(ids.map((id) => cold.patchProfile(h.account, id, { n: 2 })));
      expect(patched.map((p) => p.properties.n)).toEqual([2, 2]);
    } finally {
      await pool.close();
    }
  });
});
