/** Settings patches (validateSettings): the rules of the SDK's settings, entry by entry. */
import { describe, expect, it } from "vitest";
import { PortraitError } from "../engine/errors.js";
import { DEFAULT_SETTINGS } from "../engine/types.js";
import { validateSettings } from "./accounts.js";

function refusal(patch: unknown): PortraitError {
  try {
    validateSettings(DEFAULT_SETTINGS, patch);
  } catch (e) {
    expect(e).toBeInstanceOf(PortraitError);
    expect((e as PortraitError).code).toBe("INVALID_SETTING");
    return e as PortraitError;
  }
  throw new Error(`${JSON.stringify(patch)} was accepted`);
}

describe("publicProperties", () => {
  it("takes top-level property keys, system and custom, as given", () => {
    const keys = ["Name", "Plan", "Customer Type", "Age", "k".repeat(120), "🎉", "constructor"];
    expect(validateSettings(DEFAULT_SETTINGS, { publicProperties: keys }).publicProperties).toEqual(keys);
    expect(validateSettings(DEFAULT_SETTINGS, { publicProperties: [] }).publicProperties).toEqual([]);
  });

  it.each([
    [["Name", "Address.city"], "publicProperties[1]", /top-level property key \(nested paths are not supported/],
    [["Name", "Plan", "k".repeat(121)], "publicProperties[2]", /must be 1-120 characters, got 121/],
    [["__proto__"], "publicProperties[0]", /top-level property key: .*not allowed/],
    [["Price$"], "publicProperties[0]", /must not contain any of/],
    [[" "], "publicProperties[0]", /blank/],
    [["a\u0007b"], "publicProperties[0]", /control characters/],
    [["Name", "*"], "publicProperties[1]", /"\*", which does not mean all properties/],
    [["Name", "Plan", "Name"], "publicProperties[2]", /repeats "Name", already publicProperties\[0\]/],
  ])("refuses %j naming %s", (keys, field, message) => {
    const e = refusal({ publicProperties: keys });
    expect(e.field).toBe(field);
    expect(e.message.startsWith(`${field} `)).toBe(true);
    expect(e.message).toMatch(message);
  });

  it("keeps the list checks it had: an array of at most 1000 non-empty strings", () => {
    expect(refusal({ publicProperties: "Name" }).field).toBe("publicProperties");
    expect(refusal({ publicProperties: ["Name", 5] }).field).toBe("publicProperties[1]");
    expect(refusal({ publicProperties: ["Name", ""] }).field).toBe("publicProperties[1]");
  });
});
