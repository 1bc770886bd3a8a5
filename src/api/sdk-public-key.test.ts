/**
 * What a public key may do, which any web page can hold (docs/sdk.md "What a public key can do"): it never merges two
 * people, whatever the account's mergePolicy, and its record ids are remembered apart from the secret-key ones, so a
 * page cannot claim a backend's ids in advance (both found by the SDK audit, 2026-11-24).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storesUnderTest } from "../test-support/postgres.js";
import { PUBLIC, startTestServer, type TestServer } from "../test-support/server.js";

let s: TestServer;

// PostgreSQL is left out (reason printed) when no server answers outside CI.
const stores = await storesUnderTest();

const sdk = (records: unknown[]) => s.api("POST", `/v1/sdk/batch?key=${PUBLIC}`, { records });
const ingest = (records: unknown[]) => s.api("POST", "/v1/ingest", { records });
const byKey = async (key: string, value: string) =>
  (await s.api("GET", `/v1/profiles?${key}=${encodeURIComponent(value)}`)).body.profiles as Array<{
    id: string;
    identities: Record<string, string>;
    devices: string[];
  }>;

describe.each(stores)("%s store", (store) => {
  beforeAll(async () => {
    s = await startTestServer({}, { store });
    expect((await s.api("PATCH", "/v1/account/settings", { mergePolicy: "merge" })).status).toBe(200);
  });
  afterAll(async () => {
    await s.close();
  });

  it("never merges people under mergePolicy merge: a conflict is refused as under reject", async () => {
    await ingest([
      { type: "login", deviceId: "alice-phone", properties: { Email: "alice@x.io" } },
      { type: "login", deviceId: "bob-phone", properties: { Identity: "bob" } },
    ]);
    const r = await sdk([
      { type: "profile", deviceId: "page-device", properties: { Email: "alice@x.io", Plan: "free" } },
      { type: "profile", deviceId: "page-device", properties: { Identity: "bob" } },
    ]);
    expect(r.status).toBe(200);
    expect(r.body.processed).toBe(0);
    expect(r.body.unprocessed).toEqual([
      expect.objectContaining({ index: 0, code: "IDENTITY_CONFLICT", field: "properties.Email" }),
      expect.objectContaining({ index: 1, code: "IDENTITY_CONFLICT", field: "properties.Identity" }),
    ]);
    expect(r.body.unprocessed[0].error).toContain("public key");
    const [alice] = await byKey("email", "alice@x.io");
    const [bob] = await byKey("identity", "bob");
    expect(alice?.id).not.toBe(bob?.id);
    expect(alice?.identities).toEqual({ Email: "alice@x.io" });
    expect(alice?.devices).toEqual(["alice-phone"]);
    expect(bob?.identities).toEqual({ Identity: "bob" });
    // The same record with a secret key merges, as the policy says.
    const merged = await ingest([{ type: "profile", deviceId: "bob-phone", properties: { Email: "alice@x.io" } }]);
    expect(merged.body.results[0]).toMatchObject({ profileId: alice?.id, outcome: "updated" });
    expect((await byKey("identity", "bob"))[0]?.id).toBe(alice?.id);
  });

  it("keeps a page's record ids apart from the backend's: the backend's order-1 is stored after a page sent order-1", async () => {
    const page = await sdk([
      { type: "event", deviceId: "page-2", name: "Charged", id: "order-1", properties: { Amount: 1 } },
    ]);
    expect(page.body.results[0].outcome).toBe("stored");
    const backend = [
      { type: "event", identity: { Identity: "buyer" }, name: "Charged", id: "order-1", properties: { Amount: 500 } },
    ];
    await ingest([{ type: "profile", identity: { Identity: "buyer" }, properties: { Name: "Buyer" } }]);
    expect((await ingest(backend)).body.results[0].outcome).toBe("stored");
    const [buyer] = (await byKey("identity", "buyer")) as unknown as Array<{ stats: { revenue: number } }>;
    expect(buyer?.stats.revenue).toBe(500);
    // Each side's repeat is still a duplicate, and the id is the client's on the timeline.
    expect((await ingest(backend)).body.results[0].outcome).toBe("duplicate");
    const again = await sdk([
      { type: "event", deviceId: "page-2", name: "Charged", id: "order-1", properties: { Amount: 1 } },
    ]);
    expect(again.body.results[0].outcome).toBe("duplicate");
    const pageProfile = page.body.results[0].profileId as string;
    const timeline = await s.api("GET", `/v1/profiles/${pageProfile}/events`);
    expect(timeline.body.events.map((e: { id: string }) => e.id)).toContain("order-1");
  });
});
