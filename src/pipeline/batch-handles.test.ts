import { describe, expect, it } from "vitest";
import { parseRecord } from "../engine/parse-record.js";
import { DEFAULT_SETTINGS } from "../engine/types.js";
import { batchHandles } from "./batch-handles.js";

const account = { id: "acc", name: "A", settings: DEFAULT_SETTINGS, createdAt: 0 };
const now = 1_790_000_000_000;
const records = (...inputs: unknown[]) =>
  inputs.map((input) => parseRecord(input, { settings: DEFAULT_SETTINGS, now }));

describe("batchHandles", () => {
  it("names the handles that only count-only events reach, and whether any of those events carries context", () => {
    const plain = batchHandles(
      account,
      records(
        { type: "event", deviceId: "d1", name: "Viewed" },
        { type: "event", deviceId: "d2", name: "Viewed", context: { ip: "192.0.2.1" } },
        { type: "event", deviceId: "d3", name: "Charged", properties: { Amount: 5 } },
        { type: "profile", deviceId: "d2", properties: { Name: "Ada" } },
      ),
    );
    expect(plain.deviceIds).toEqual(["d1", "d2", "d3", "d2"]);
    // d2 is named by a profile push and d3 by a Charged event: their owners are loaded, not only peeked.
    expect(plain.countOnly).toEqual({ deviceIds: ["d1"], identities: [], profileIds: [], context: false });

    for (const context of [
      { timezone: "Europe/Paris" },
      { referrer: "https://example.com/" },
      { utm_source: "mail" },
    ]) {
      const withContext = batchHandles(
        account,
        records(
          { type: "event", deviceId: "d1", name: "Viewed" },
          { type: "event", deviceId: "d4", name: "Viewed", context },
        ),
      );
      expect(withContext.countOnly).toEqual({ deviceIds: ["d1", "d4"], identities: [], profileIds: [], context: true });
    }
  });
});
