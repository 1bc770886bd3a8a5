import { describe, expect, it } from "vitest";
import { randomIds, timeOrderedId } from "./clock.js";

describe("profile ids", () => {
  it("are 32 lowercase hex characters and never repeat", () => {
    const ids = Array.from({ length: 20_000 }, () => randomIds.profileId());
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("sort by creation time, so new profiles land at the end of indexes keyed by id", () => {
    const earlier = timeOrderedId(Date.UTC(2026, 0, 1));
    const later = timeOrderedId(Date.UTC(2026, 0, 1) + 1);
    expect(earlier < later).toBe(true);
    expect(earlier.slice(0, 12)).toBe(Date.UTC(2026, 0, 1).toString(16).padStart(12, "0"));
  });

  it("keep 80 random bits after the time", () => {
    const at = Date.UTC(2026, 5, 1);
    const tails = new Set(Array.from({ length: 1000 }, () => timeOrderedId(at).slice(12)));
    expect(tails.size).toBe(1000);
    for (const tail of tails) expect(tail).toHaveLength(20);
  });
});

describe("opaque ids", () => {
  it("are 24 hex characters and never repeat", () => {
    const ids = Array.from({ length: 10_000 }, () => randomIds.opaque());
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{24}$/);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
