/** SDK batches carry `sentAt`, the browser's clock at send time: records' ts are corrected for that clock's skew. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PUBLIC, startTestServer, type TestServer } from "../test-support/server.js";
import { CLOCK_SKEW_TOLERANCE_MS, correctClockSkew } from "./routes/sdk.js";

describe("correctClockSkew", () => {
  const now = Date.UTC(2025, 0, 10);
  const day = 86_400;

  it("shifts every numeric ts by the sender's skew, keeping the records' spacing", () => {
    const sentAt = now / 1000 + 3 * day; // a clock 3 days fast
    const body = { sentAt, records: [{ ts: sentAt - 60.5 }, { ts: sentAt }, { type: "event" }] };
    expect(correctClockSkew(body, now)).toEqual({
      sentAt,
      records: [{ ts: now / 1000 - 60.5 }, { ts: now / 1000 }, { type: "event" }],
    });
    expect(body.records[0]?.ts).toBe(sentAt - 60.5); // the parsed body is not changed in place
  });

  it("leaves the batch alone within the tolerance, without sentAt, and with a sentAt that is no time", () => {
    const near = { sentAt: (now + CLOCK_SKEW_TOLERANCE_MS - 1) / 1000, records: [{ ts: 1 }] };
    expect(correctClockSkew(near, now)).toBe(near);
    for (const sentAt of [undefined, "1736467200", -5, 0, Number.NaN, null]) {
      const body = { sentAt, records: [{ ts: 1 }] };
      expect(correctClockSkew(body, now)).toBe(body);
    }
    expect(correctClockSkew(null, now)).toBeNull();
  });

  it("leaves ISO-8601 and junk ts to the parser, which judges them as before", () => {
    const body = { sentAt: now / 1000 - 365 * day, records: [{ ts: "2024-01-01T00:00:00Z" }, { ts: true }, 7, null] };
    expect(correctClockSkew(body, now)).toEqual({ ...body, records: body.records });
  });
});

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
});
