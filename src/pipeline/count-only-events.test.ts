/**
 * Count-only events (engine/activity.ts) are folded per profile and added in the store without loading the profile
 * (UnitOfWork.countActivity, StoreTx.addActivity). Whatever else a batch does to the same people, the outcome must
 * be the one of applying its records one at a time.
 */
import fc from "fast-check";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Account } from "../engine/types.js";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { Portrait } from "./portrait.js";
import type { ProfileView } from "./views.js";

const stores = await storesUnderTest();
const DEVICES = ["d0", "d1", "d2"];
const at = (s: number) => 1_790_000_000 + s;

type Input = Record<string, unknown>;

/** Polls until `reached` holds: a state to wait for (a lock waiter, a step taken), not a time. */
async function until(reached: () => Promise<boolean>): Promise<void> {
  for (let tries = 0; tries < 2_000; tries++) {
    if (await reached()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("the state waited for never came");
}

/** Sessions of this client's database waiting for a lock now. */
async function lockWaiters(client: pg.Client): Promise<number> {
  const { rows } = await client.query(
    "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
  );
  return rows[0].n;
}

/** A person as the API shows them, without what is drawn at random (ids, the bucket). */
function strip(view: ProfileView) {
  const { id: _id, orphanOf: _o, mergedInto: _m, system, ...rest } = view;
  const { bucket: _b, ...kept } = system;
  return { ...rest, system: kept };
}

/** Records over three devices and two people: mostly count-only events, mixed with every kind of record that loads a profile. */
const record = (seconds: fc.Arbitrary<number>): fc.Arbitrary<Input> =>
  fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .record({ device: fc.constantFrom(...DEVICES), name: fc.constantFrom("App Launched", "Viewed"), ts: seconds })
        .map(
          ({ device, name, ts }): Input => ({
            type: "event",
            deviceId: device,
            name,
            ts: at(ts),
            properties: { Page: `p${ts}` },
          }),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .record({ device: fc.constantFrom(...DEVICES), ts: seconds, amount: fc.integer({ min: 1, max: 90 }) })
        .map(
          ({ device, ts, amount }): Input => ({
            type: "event",
            deviceId: device,
            name: "Charged",
            ts: at(ts),
            properties: { Amount: amount },
          }),
        ),
    },
    {
      weight: 1,
      arbitrary: fc
        .record({ device: fc.constantFrom(...DEVICES), ts: seconds, city: fc.constantFrom("Paris", "Oslo") })
        .map(
          ({ device, ts, city }): Input => ({
            type: "event",
            deviceId: device,
            name: "Viewed",
            ts: at(ts),
            context: { timezone: "Europe/Paris", location: { city }, utm_source: `utm-${city}` },
          }),
        ),
    },
    {
      // As the browser SDK sends them: a zone on every record, a referrer or utm_source on some pages.
      weight: 4,
      arbitrary: fc
        .record({
          device: fc.constantFrom(...DEVICES),
          ts: seconds,
          context: fc.record(
            {
              platform: fc.constant("web"),
              timezone: fc.constantFrom("Europe/Paris", "America/New_York"),
              referrer: fc.constantFrom("https://news.example/a", "https://shop.example/"),
              utm_source: fc.constantFrom("newsletter", "ads"),
            },
            { requiredKeys: ["platform"] },
          ),
        })
        .map(
          ({ device, ts, context }): Input => ({
            type: "event",
            deviceId: device,
            name: "Page Viewed",
            ts: at(ts),
            context,
          }),
        ),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({ who: fc.constantFrom("a", "b"), ts: seconds })
        .map(
          ({ who, ts }): Input => ({ type: "event", identity: { Email: `${who}@x.io` }, name: "Viewed", ts: at(ts) }),
        ),
    },
    {
      weight: 1,
      arbitrary: fc.record({ device: fc.constantFrom(...DEVICES), ts: seconds }).map(
        ({ device, ts }): Input => ({
          type: "profile",
          deviceId: device,
          ts: at(ts),
          properties: { Name: `n${ts}`, Visits: { $incr: 1 } },
        }),
      ),
    },
    {
      weight: 1,
      arbitrary: fc.record({ device: fc.constantFrom(...DEVICES), ts: seconds, who: fc.constantFrom("a", "b") }).map(
        ({ device, ts, who }): Input => ({
          type: "login",
          deviceId: device,
          ts: at(ts),
          properties: { Email: `${who}@x.io` },
        }),
      ),
    },
  );

describe.each(stores)("%s store", (store) => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness({}, store);
  });
  afterAll(async () => {
    await h.close();
  });

  /** An account whose three devices each have an anonymous profile seen once. */
  async function freshAccount(): Promise<Account> {
    const { account } = await h.accounts.create(`count-only-${Math.random().toString(36).slice(2)}`);
    const first = DEVICES.map((deviceId, i) => ({ type: "event", deviceId, name: "App Installed", ts: at(100 + i) }));
    expect((await h.portrait.ingest(account, { records: first })).unprocessed).toEqual([]);
    return account;
  }

  /** Every person the devices and identities name now, as the API shows them (ids, which differ, left out). */
  async function people(account: Account) {
    const ids = new Map<string, string | null>();
    for (const d of DEVICES)
      ids.set(`device ${d}`, (await h.store.reader.findDevice(account.id, d))?.profileId ?? null);
    for (const who of ["a", "b"]) {
      ids.set(`email ${who}`, await h.store.reader.findProfileByIdentity(account.id, "Email", `${who}@x.io`));
    }
    const seen: Record<string, unknown> = {};
    for (const [name, id] of ids) {
      if (id === null) {
        seen[name] = null;
        continue;
      }
      const view = strip(await h.portrait.requireProfile(account, id));
      const timeline = await h.portrait.timeline(account, id, { limit: 1000 });
      seen[name] = { ...view, timeline: timeline.events.map((e) => [e.name, e.ts, e.anonymous]) };
    }
    return seen;
  }

  it("a batch leaves every person as its records applied one request at a time do", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(record(fc.integer({ min: 0, max: 60 })), { minLength: 1, maxLength: 25 }),
        async (records) => {
          const [together, apart] = [await freshAccount(), await freshAccount()];
          const batch = await h.portrait.ingest(together, { records });
          const single = [];
          for (const r of records) single.push(...(await h.portrait.ingest(apart, { records: [r] })).results);
          expect(batch.unprocessed).toEqual([]);
          expect(batch.results.map((r) => r.outcome)).toEqual(single.map((r) => r.outcome));
          expect(await people(together)).toEqual(await people(apart));
        },
      ),
      { numRuns: store === "sqlite" ? 40 : 15 },
    );
  });

  it("counts each device's events and times exactly", async () => {
    const account = await freshAccount();
    const records = [5, 3, 9, 1, 7].map((s, i) => ({
      type: "event",
      deviceId: DEVICES[i % 2],
      name: "Viewed",
      ts: at(200 + s),
    }));
    expect((await h.portrait.ingest(account, { records })).unprocessed).toEqual([]);
    const d0 = await h.store.reader.findDevice(account.id, "d0");
    const state = await h.store.reader.getProfile(account.id, d0!.profileId);
    // d0: the install at 100, then 205, 209, 207.
    expect(state).toMatchObject({ firstSeen: at(100) * 1000, lastSeen: at(209) * 1000, stats: { events: 4 } });
    expect(Number.isInteger(state!.lastSeen) && Number.isInteger(state!.stats.events)).toBe(true);
  });

  it("a merge inside a batch takes the source's earlier count-only events along, and undo gives them back", async () => {
    const run = async (account: Account, together: boolean) => {
      await h.portrait.updateSettings(h.accounts, account, { mergePolicy: "merge" });
      const merged = { ...account, settings: { ...account.settings, mergePolicy: "merge" as const } };
      const send = async (records: Input[]) => {
        if (together) return void (await h.portrait.ingest(merged, { records }));
        for (const r of records) await h.portrait.ingest(merged, { records: [r] });
      };
      await send([
        { type: "login", deviceId: "d0", ts: at(110), properties: { Email: "a@x.io" } },
        { type: "login", deviceId: "d1", ts: at(111), properties: { Identity: "u-b" } },
      ]);
      await send([
        { type: "event", deviceId: "d0", name: "Viewed", ts: at(120) },
        { type: "event", deviceId: "d1", name: "Viewed", ts: at(90) },
        { type: "event", deviceId: "d1", name: "Viewed", ts: at(130) },
        // d1's person takes a@x.io, which d0's person owns: d1's person merges into d0's.
        { type: "profile", deviceId: "d1", ts: at(140), properties: { Email: "a@x.io" } },
        { type: "event", deviceId: "d1", name: "Viewed", ts: at(150) },
      ]);
      const survivor = (await h.store.reader.findDevice(account.id, "d0"))!.profileId;
      const after = await h.portrait.requireProfile(merged, survivor);
      const [mergeRow] = await h.store.reader.listMergesTouching(account.id, survivor);
      const undone = await h.portrait.undoMerge(merged, mergeRow!.id);
      return { after: strip(after), target: strip(undone.target), source: strip(undone.source) };
    };
    const together = await run(await freshAccount(), true);
    const apart = await run(await freshAccount(), false);
    expect(together).toEqual(apart);
    expect(together.after.devices).toEqual(expect.arrayContaining(["d0", "d1"]));
    expect(together.after.system).toMatchObject({ firstSeen: new Date(at(90) * 1000).toISOString() });
    // The source gets back its own events, including the count-only ones folded before the merge.
    expect(together.source.system).toMatchObject({
      firstSeen: new Date(at(90) * 1000).toISOString(),
      lastSeen: new Date(at(150) * 1000).toISOString(),
    });
  });

  it.runIf(store === "postgres")(
    "two groups sharing people, each adding events to one and writing the other, wait for each other: no deadlock",
    async () => {
      // The concurrency audit's F2: each group locked the person it writes at its start (prefetch) and the person its
      // count-only event goes to at its end (the activity update): A then B against B then A, a deadlock every time.
      const account = await freshAccount();
      const login = (deviceId: string, Identity: string) => ({ type: "login", deviceId, properties: { Identity } });
      await h.portrait.ingest(account, { records: [login("d0", "a"), login("d1", "b")] });
      const personOf = async (who: string) =>
        (await h.portrait.findProfiles(account, { kind: "identity", key: "Identity", value: who }))[0]!;
      const eventsBefore = (await personOf("a")).stats.events;
      const other = new Portrait(h.store, h.clock);
      const watcher = new pg.Client({ connectionString: h.databaseUrl! });
      await watcher.connect();
      const write = h.store.write.bind(h.store);
      let runs = 0;
      let prefetched = 0;
      try {
        // Each group's first run waits after its prefetch until the other's has prefetched too, or waits for a lock.
        h.store.write = (accountId, fn) =>
          write(accountId, async (tx) => {
            const first = ++runs <= 2;
            const prefetch = tx.prefetch!.bind(tx);
            tx.prefetch = async (id, handles) => {
              await prefetch(id, handles);
              if (!first) return;
              prefetched++;
              await until(async () => prefetched === 2 || (await lockWaiters(watcher)) > 0);
            };
            return fn(tx);
          });
        const group = (portrait: Portrait, eventOn: string, incrementOf: string) =>
          portrait.ingest(account, {
            records: [
              { type: "event", deviceId: eventOn, name: "Ping", ts: at(300) },
              { type: "profile", identity: { Identity: incrementOf }, properties: { n: { $incr: 1 } } },
            ],
          });
        const results = await Promise.all([group(h.portrait, "d1", "a"), group(other, "d0", "b")]);
        expect(results.map((r) => r.unprocessed)).toEqual([[], []]);
        // Neither lost a deadlock and ran again.
        expect(runs).toBe(2);
        for (const who of ["a", "b"]) {
          const person = await personOf(who);
          expect([who, person.properties.n, person.stats.events]).toEqual([who, 1, eventsBefore + 1]);
        }
      } finally {
        h.store.write = write;
        await watcher.end();
      }
    },
  );
});
