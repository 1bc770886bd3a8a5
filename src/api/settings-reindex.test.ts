/**
 * A settings change that reindexes many profiles (a lowered identity limit, an identity key added or removed) runs in
 * one transaction but gives the event loop back a page at a time: on SQLite nothing else would run until it ends,
 * /healthz included (300k profiles held the server for minutes). It reads only the profiles it may change
 * (pipeline/settings.ts; pipeline/settings.test.ts proves that and compares with a walk over every profile).
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
    // Every profile holds two Emails, so lowering the limit to 1 changes all 3,000 of them: 6 pages.
    for (let batch = 0; batch < 6; batch++) {
      const records = Array.from({ length: 500 }, (_, i) =>
        ["old", "new"].map((age, n) => ({
          type: "profile",
          identity: { Identity: `reindex-${batch}-${i}` },
          ts: 1732000000 + 100 * n,
          properties: { Email: `${age}-${batch}-${i}@x.io` },
        })),
      ).flat();
      expect((await s.api("POST", "/v1/ingest", { records })).body.status).toBe("success");
    }

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
    // The newest Email stays; the older one is released, on the first page as on the last.
    for (const at of ["0-0", "5-499"]) {
      const [kept] = (await s.api("GET", `/v1/profiles?email=new-${at}%40x.io`)).body.profiles;
      expect(kept.identities).toEqual({ Identity: `reindex-${at}`, Email: `new-${at}@x.io` });
      expect((await s.api("GET", `/v1/profiles?email=old-${at}%40x.io`)).body.profiles).toHaveLength(0);
    }
  }, 60_000);

  it("trims only what is over the new limit, and identity keys added or removed take effect", async () => {
    const other = await s.api("POST", "/v1/ingest", {
      records: [
        { type: "profile", identity: { Identity: "keep-1" }, ts: 1732000000, properties: { Email: "k1@x.io" } },
        { type: "profile", identity: { Identity: "trim-1" }, ts: 1732000000, properties: { Email: "t-old@x.io" } },
        { type: "profile", identity: { Identity: "phone-1" }, ts: 1732000000, properties: { Phone: "+33612345678" } },
      ],
    });
    expect(other.body.status).toBe("success");
    expect((await s.api("PATCH", "/v1/account/settings", { identityLimits: { Email: 2 } })).status).toBe(200);
    await s.api("POST", "/v1/ingest", {
      records: [
        { type: "profile", identity: { Identity: "trim-1" }, ts: 1732000100, properties: { Email: "t-new@x.io" } },
      ],
    });
    const find = async (q: string) => (await s.api("GET", `/v1/profiles?${q}`)).body.profiles;
    const kept = (await find("identity=keep-1"))[0];
    expect((await find("email=t-old%40x.io")).length).toBe(1);
    expect((await s.api("PATCH", "/v1/account/settings", { identityLimits: { Email: 1 } })).status).toBe(200);
    expect(await find("email=t-old%40x.io")).toEqual([]);
    expect((await find("email=t-new%40x.io"))[0].properties.Identity).toBe("trim-1");
    // A profile under the limit is as it was.
    expect((await find("identity=keep-1"))[0].system.updatedAt).toBe(kept.system.updatedAt);

    const keys = (identityKeys: string[]) => s.api("PATCH", "/v1/account/settings", { identityKeys });
    expect((await keys(["Identity", "Email", "Phone"])).status).toBe(200);
    expect((await find("phone=%2B33612345678"))[0].properties.Identity).toBe("phone-1");
    expect((await keys(["Identity", "Email"])).status).toBe(200);
    expect((await s.api("GET", "/v1/profiles?identity=phone-1")).body.profiles[0].properties.Phone).toBe(
      "+33612345678",
    );
    expect((await keys(["Identity", "Email", "Phone"])).status).toBe(200);
    expect((await find("phone=%2B33612345678")).length).toBe(1);
  }, 60_000);
});
