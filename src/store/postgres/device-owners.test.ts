import { describe, expect, it } from "vitest";
import { DeviceOwners } from "./device-owners.js";

const entry = (deviceId: string, profileId = "p", rev = 0) => ({
  device: { deviceId, profileId, pushToken: null, platform: null },
  rev,
});

describe("DeviceOwners", () => {
  it("keeps each account's devices apart and replaces an entry in place", () => {
    const owners = new DeviceOwners(10);
    owners.set("a", entry("d1", "p", 1));
    owners.set("b", entry("d1", "q", 2));
    owners.set("a", entry("d1", "r", 3));
    expect(owners.get("a", "d1")).toEqual(entry("d1", "r", 3));
    expect(owners.get("b", "d1")).toEqual(entry("d1", "q", 2));
    owners.delete("a", "d1");
    expect(owners.get("a", "d1")).toBeUndefined();
    expect(owners.get("b", "d1")).toBeDefined();
  });

  it("stays within its bound by forgetting the oldest eighth, across accounts, whatever is replaced or deleted", () => {
    const owners = new DeviceOwners(16);
    for (let i = 0; i < 8; i++) owners.set("a", entry(`a${i}`));
    for (let i = 0; i < 8; i++) owners.set("b", entry(`b${i}`));
    // Replacing and deleting must keep the count right: 15 entries after these, then one more fits.
    owners.set("a", entry("a0", "other"));
    owners.delete("b", "b7");
    owners.set("b", entry("b8"));
    const held = () =>
      [...Array(9).keys()].flatMap((i) => [`a${i}`, `b${i}`]).filter((d) => owners.get(d[0]!, d) !== undefined);
    expect(held()).toHaveLength(16);
    owners.set("b", entry("b9"));
    // Full at 16: the two oldest went (a1 and a2; a0 was learnt again after them).
    expect(owners.get("a", "a1")).toBeUndefined();
    expect(owners.get("a", "a2")).toBeUndefined();
    expect(owners.get("a", "a0")).toBeDefined();
    expect(owners.get("b", "b9")).toBeDefined();
    expect(held().length + 1).toBe(15);
  });

  it("keeps an entry learnt for an account whose devices making room for it removed", () => {
    const owners = new DeviceOwners(8);
    owners.set("a", entry("a0"));
    for (let i = 0; i < 7; i++) owners.set("b", entry(`b${i}`));
    // Full: room is made by forgetting a0, the account's only device, and then a1 must still be remembered.
    owners.set("a", entry("a1"));
    expect(owners.get("a", "a0")).toBeUndefined();
    expect(owners.get("a", "a1")).toBeDefined();
    // And the count stayed true: seven more fit before the next round of forgetting.
    owners.set("b", entry("b7"));
    expect([...Array(8).keys()].filter((i) => owners.get("b", `b${i}`) !== undefined)).toHaveLength(7);
  });

  it("remembers nothing with a bound of 0", () => {
    const owners = new DeviceOwners(0);
    owners.set("a", entry("d1"));
    expect(owners.get("a", "d1")).toBeUndefined();
  });
});
