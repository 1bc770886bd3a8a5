/**
 * Each process caches the account's type registry (TypeCache). The one change a registration allows, string → multi by
 * `$add`, made through another process must be what this process checks its very next write against, not only after
 * a restart. Two Portrait services on one store stand for two processes here (the cache is the service's); the
 * PostgreSQL multi-process suite proves the same with two real `portrait serve` processes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
