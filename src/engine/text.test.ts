import { describe, expect, it } from "vitest";
import { PortraitError } from "./errors.js";
import { assertStorableText } from "./text.js";

function codeAndField(input: unknown): [string, string | undefined] | null {
  try {
    assertStorableText(input);
    return null;
  } catch (e) {
    if (e instanceof PortraitError) return [e.code, e.field];
    throw e;
  }
}

describe("assertStorableText", () => {
  it("accepts ordinary text, emoji (paired surrogates) and non-strings", () => {
    expect(codeAndField({ a: "héllo 👋", b: [1, true, null, { c: "日本" }] })).toBeNull();
  });
  it("refuses NUL and unpaired surrogates in values and keys, naming the path", () => {
    expect(codeAndField({ properties: { Name: "a\u0000b" } })).toEqual(["INVALID_VALUE", "properties.Name"]);
    expect(codeAndField({ list: ["ok", "\uD800"] })).toEqual(["INVALID_VALUE", "list[1]"]);
    expect(codeAndField({ x: "\uDC00tail" })).toEqual(["INVALID_VALUE", "x"]);
    expect(codeAndField({ "bad\u0000key": 1 })).toEqual(["INVALID_KEY", "bad\u0000key"]);
  });
});
