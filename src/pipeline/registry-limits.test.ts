/**
 * How many property paths an account may register (type-cache.ts; docs/semantics.md "Registered properties"): a public
 * key holder registered 250k junk keys, and every segment export of the account then listed them all (hostile-input
 * audit F3). A record that would register one path too many is refused with TOO_MANY_PROPERTIES naming its field and
 * the limit; records with paths already registered go on being applied.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { Portrait } from "./portrait.js";
import { MAX_EVENT_NAMES, MAX_EVENT_PATHS, MAX_PROFILE_PATHS } from "./type-cache.js";

const stores = await storesUnderTest();

/** `n` properties named `prefix0` … */
const props = (prefix: string, n: number) =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, 1]));

describe.each(stores)("registered property limits (%s)", (kind) => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness({}, kind);
  });
  afterAll(() => h.close());

  it("refuses a record whose new profile property would be one past the account's limit, within a batch and after", async () => {
    const per = 250;
    const full = MAX_PROFILE_PATHS / per;
    const records = Array.from({ length: full + 1 }, (_, r) => ({
      type: "profile",
      deviceId: `dev-${r}`,
      properties: props(`p${r}_`, per),
    }));
    const first = await h.portrait.ingest(h.account, { records });
    expect(first.processed).toBe(full);
    expect(first.unprocessed).toEqual([
      {
        index: full,
        code: "TOO_MANY_PROPERTIES",
        error: expect.stringContaining(`the account has ${MAX_PROFILE_PATHS} profile properties`),
        field: `properties.p${full}_0`,
      },
    ]);
    expect(h.portrait.types.count(h.account.id, "profile")).toBe(MAX_PROFILE_PATHS);
    // Known keys are still written; a new one is refused by this process and by another one that reads the store.
    for (const portrait of [h.portrait, new Portrait(h.store, h.clock)]) {
      const later = await portrait.ingest(h.account, {
        records: [
          { type: "profile", deviceId: "dev-0", properties: { p0_1: 2 } },
          { type: "profile", deviceId: "dev-0", properties: { p0_2: 3, fresh: "x" } },
        ],
      });
      expect(later.unprocessed.map((u) => [u.index, u.code, u.field])).toEqual([
        [1, "TOO_MANY_PROPERTIES", "properties.fresh"],
      ]);
    }
    const [person] = await h.portrait.findProfiles(h.account, { kind: "device", deviceId: "dev-0" });
    expect(person?.properties).toMatchObject({ p0_1: 2, p0_2: 1 });
    expect(person?.properties).not.toHaveProperty("fresh");
  });

  it("refuses an event's new property past the limit per event name, and takes it on another name", async () => {
    const per = 250;
    const full = MAX_EVENT_PATHS / per;
    const records = Array.from({ length: full + 1 }, (_, r) => ({
      type: "event",
      deviceId: "ev-dev",
      name: "Wide",
      properties: props(`e${r}_`, per),
    }));
    const first = await h.portrait.ingest(h.account, { records });
    expect(first.processed).toBe(full);
    expect(first.unprocessed.map((u) => [u.index, u.code, u.field])).toEqual([
      [full, "TOO_MANY_PROPERTIES", `properties.e${full}_0`],
    ]);
    expect(first.unprocessed[0]?.error).toContain(`event Wide has ${MAX_EVENT_PATHS} properties`);
    const other = await h.portrait.ingest(h.account, {
      records: [
        { type: "event", deviceId: "ev-dev", name: "Narrow", properties: { e0_0: 1, more: 2 } },
        { type: "event", deviceId: "ev-dev", name: "Wide", properties: { e0_0: 1 } },
      ],
    });
    expect(other.unprocessed).toEqual([]);
  });

  it("refuses properties on a new event name past the limit of event names, and takes the event without them", async () => {
    const have = h.portrait.types.eventNames(h.account.id);
    const names = Array.from({ length: MAX_EVENT_NAMES - have }, (_, i) => `N${i}`);
    for (let i = 0; i < names.length; i += 1000) {
      const records = names
        .slice(i, i + 1000)
        .map((name) => ({ type: "event", deviceId: "names-dev", name, properties: { P: 1 } }));
      expect((await h.portrait.ingest(h.account, { records })).unprocessed).toEqual([]);
    }
    expect(h.portrait.types.eventNames(h.account.id)).toBe(MAX_EVENT_NAMES);
    const over = await h.portrait.ingest(h.account, {
      records: [
        { type: "event", deviceId: "names-dev", name: "OneTooMany", properties: { P: 1 } },
        { type: "event", deviceId: "names-dev", name: "OneTooMany" },
        { type: "event", deviceId: "names-dev", name: "N5", properties: { Q: "known name, new key" } },
      ],
    });
    expect(over.unprocessed.map((u) => [u.index, u.code, u.field])).toEqual([
      [0, "TOO_MANY_PROPERTIES", "properties.P"],
    ]);
    expect(over.unprocessed[0]?.error).toContain(`the account has ${MAX_EVENT_NAMES} event names with properties`);
  });
});
