/** Concurrent writers through HTTP: no lost increment, one profile per identity however many race for it. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../test-support/server.js";

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s.close();
});

describe("concurrency", () => {
  it("200 parallel increments of one key lose nothing", async () => {
    const responses = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        s.api("POST", "/v1/ingest", {
          records: [
            {
              type: "profile",
              identity: { Identity: "counter" },
              properties: { n: { $incr: 1 }, m: { $decr: i % 2 } },
            },
          ],
        }),
      ),
    );
    expect(responses.every((r) => r.status === 200 && r.body.status === "success")).toBe(true);
    const [p] = (await s.api("GET", "/v1/profiles?identity=counter")).body.profiles;
    expect(p.properties.n).toBe(200);
    expect(p.properties.m).toBe(-100);
  });

  it("parallel logins with one new identity create exactly one profile", async () => {
    const responses = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        s.api("POST", "/v1/ingest", {
          records: [{ type: "login", deviceId: `race-${i}`, properties: { Email: "race@x.io" } }],
        }),
      ),
    );
    const ids = new Set(responses.map((r) => r.body.results[0].profileId));
    expect(ids.size).toBe(1);
    const [p] = (await s.api("GET", "/v1/profiles?email=race@x.io")).body.profiles;
    expect(p.devices).toHaveLength(40);
  });
});
