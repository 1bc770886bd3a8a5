/**
 * A settings change that reindexes every profile (a lowered identity limit, an identity key added or removed) runs in
 * one transaction but gives the event loop back a page at a time: on SQLite nothing else would run until it ends,
 * /healthz included (300k profiles held the server for minutes).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../test-support/server.js";

let s: TestServer;

beforeAll(async () => {
  s = await startTestServer();
}, 30_000);

afterAll(async () => {
  await s?.close();
});

describe("a settings change over many profiles", () => {
  it("lets /healthz answer while it reindexes, and applies the change", async () => {
    expect((await s.api("PATCH", "/v1/account/settings", { identityLimits: { Email: 3 } })).status).toBe(200);
    for (let batch = 0; batch < 3; batch++) {
      const records = Array.from({ length: 1000 }, (_, i) => ({
        type: "profile",
        identity: { Identity: `reindex-${batch}-${i}` },
        ts: 1732000000,
        properties: { Email: `old-${batch}-${i}@x.io` },
      }));
      expect((await s.api("POST", "/v1/ingest", { records })).body.status).toBe("success");
    }
    const two = await s.api("POST", "/v1/ingest", {
      records: [
        { type: "profile", identity: { Identity: "reindex-0-0" }, ts: 1732000100, properties: { Email: "new@x.io" } },
      ],
    });
    expect(two.body.status).toBe("success");

    const order: string[] = [];
    const lowering = s.api("PATCH", "/v1/account/settings", { identityLimits: {} }).then((r) => {
      order.push("settings");
      return r;
    });
    // Sent once the change has begun: its own request went first on another connection.
    await new Promise((r) => setTimeout(r, 20));
    const health = s.api("GET", "/healthz").then((r) => {
      order.push("healthz");
      return r;
    });
    expect((await health).status).toBe(200);
    expect((await lowering).status).toBe(200);
    expect(order).toEqual(["healthz", "settings"]);
    // The newest Email stays; the older one is released.
    expect((await s.api("GET", "/v1/profiles?email=new%40x.io")).body.profiles).toHaveLength(1);
    expect((await s.api("GET", "/v1/profiles?email=old-0-0%40x.io")).body.profiles).toHaveLength(0);
  }, 60_000);
});
