/**
 * SDK batches carry `sentAt`, the browser's clock at send time: records' ts are corrected for that clock's skew
 * (the rule itself: engine/clock-skew.ts and its tests). A sentAt that is no such time refuses the batch.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PUBLIC, startTestServer, type TestServer } from "../test-support/server.js";

describe("POST /v1/sdk/batch with sentAt", () => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer();
  });
  afterAll(async () => {
    await s.close();
  });

  const send = (body: unknown) =>
    fetch(`${s.url}/v1/sdk/batch?key=${PUBLIC}`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: JSON.stringify(body),
    });
  const eventsOf = async (deviceId: string) => {
    const [profile] = (await s.api("GET", `/v1/profiles?deviceId=${deviceId}`)).body.profiles;
    return (await s.api("GET", `/v1/profiles/${profile.id}/events`)).body.events as Array<{ ts: string }>;
  };

  it("stores records from a clock 3 days fast (refused as future before) and a year slow at the server's time", async () => {
    for (const [deviceId, skewS] of [
      ["skew-fast", 3 * 86_400],
      ["skew-slow", -365 * 86_400],
    ] as const) {
      const browserNow = Date.now() / 1000 + skewS;
      const res = await send({
        sentAt: browserNow,
        records: [{ type: "event", id: `${deviceId}-1`, deviceId, name: "Clicked", ts: browserNow - 30 }],
      });
      expect(res.status).toBe(200);
      expect((await res.json()).unprocessed).toEqual([]);
      const [event] = await eventsOf(deviceId);
      expect(Math.abs(Date.parse(event?.ts ?? "") - (Date.now() - 30_000))).toBeLessThan(5_000);
    }
  });

  it("refuses the whole batch for a sentAt that is not epoch seconds, naming sentAt and what it got", async () => {
    const now = Date.now() / 1000;
    const records = [{ type: "event", deviceId: "skew-bad", name: "S", ts: now - 60 }];
    for (const [sentAt, got] of [
      ["abc", 'string "abc"'],
      [-1, "number -1"],
      [0, "number 0"],
      [true, "boolean true"],
      [[], "array []"],
      [null, "null"],
      ["2025-01-10T00:00:00Z", 'string "2025-01-10T00:00:00Z"'],
      [String(Math.round(now)), `string "${Math.round(now)}"`],
      [1e300, "number 1e+300"],
      [now * 1000, `number ${now * 1000}`],
    ] as const) {
      const res = await send({ sentAt, records });
      expect(res.status, String(sentAt)).toBe(400);
      const { error } = await res.json();
      expect(error).toMatchObject({ code: "INVALID_VALUE", field: "sentAt" });
      expect(error.message).toMatch(/^sentAt must be /);
      expect(error.message).toContain(`got ${got}`);
    }
    // Nothing of those batches was applied.
    const found = await s.api("GET", "/v1/profiles?deviceId=skew-bad");
    expect(found.body.profiles).toEqual([]);
    // Without sentAt the same records are taken as they are.
    const plain = await send({ records });
    expect((await plain.json()).unprocessed).toEqual([]);
  });

  it("blames the pair, not ts alone, when a valid sentAt and a record's ts disagree by more than a day", async () => {
    const now = Date.now() / 1000;
    const res = await send({
      sentAt: 1_000_000_000,
      records: [
        { type: "event", deviceId: "skew-pair", name: "Late", ts: now - 60 },
        { type: "event", deviceId: "skew-pair", name: "Ok", ts: 1_000_000_000 - 60 },
      ],
    });
    expect(res.status).toBe(200);
    const body = await res.json();
    expect(body.unprocessed).toEqual([
      {
        index: 0,
        code: "INVALID_TIMESTAMP",
        field: "ts",
        error: expect.stringMatching(
          /at most one day after the batch's sentAt \(1000000000.*ts and sentAt must come from one clock/,
        ),
      },
    ]);
    const [event] = await eventsOf("skew-pair");
    expect(Math.abs(Date.parse(event?.ts ?? "") - (Date.now() - 60_000))).toBeLessThan(5_000);
  });
});
