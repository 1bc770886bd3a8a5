/**
 * A person deleted while their device keeps sending (SEMANTICS §10): the device is released, and its next event starts
 * a fresh anonymous profile. Never UNKNOWN_PROFILE: on PostgreSQL an event's transaction could have read the device's
 * owner, unlocked, just before another transaction deleted that owner, and then kept the stale answer.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storesUnderTest } from "../test-support/postgres.js";
import { startTestServer, type TestServer } from "../test-support/server.js";

const stores = await storesUnderTest();
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.each(stores)("%s store", (store) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({}, { store });
  }, 30_000);
  afterAll(async () => {
    await s.close();
  });

  it("events from a device racing its person's deletion are stored, on the person or on a fresh profile", async () => {
    const refused: Record<string, number> = {};
    for (let r = 0; r < 10; r++) {
      // A person with an orphan and a merged-in profile, as deletions cascade through both.
      const made = await s.api("POST", "/v1/ingest", {
        records: [
          { type: "event", deviceId: `o${r}`, name: "Browsed" },
          { type: "login", deviceId: `x${r}`, properties: { Identity: `I${r}` } },
          { type: "login", deviceId: `o${r}`, properties: { Identity: `I${r}` } },
          { type: "login", deviceId: `y${r}`, properties: { Identity: `Y${r}` } },
        ],
      });
      const [, person, , other] = made.body.results as Array<{ profileId: string }>;
      await s.api("POST", "/v1/profiles/merge", { targetId: person?.profileId, sourceId: other?.profileId });
      let stop = false;
      const senders = Array.from({ length: 4 }, async () => {
        while (!stop) {
          const sent = await s.api("POST", "/v1/ingest", {
            records: [{ type: "event", deviceId: `x${r}`, name: "Tap" }],
          });
          for (const u of sent.body.unprocessed ?? []) refused[u.code] = (refused[u.code] ?? 0) + 1;
        }
      });
      await pause(100);
      expect((await s.api("DELETE", `/v1/profiles/${person?.profileId}`)).status).toBe(200);
      await pause(100);
      stop = true;
      await Promise.all(senders);
      const [fresh] = (await s.api("GET", `/v1/profiles?deviceId=x${r}`)).body.profiles;
      expect(fresh.id).not.toBe(person?.profileId);
      expect(fresh.type).toBe("anonymous");
    }
    expect(refused).toEqual({});
  }, 120_000);
});
