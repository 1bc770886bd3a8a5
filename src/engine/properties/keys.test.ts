import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PortraitError } from "../errors.js";
import { charLength, isPlainObject, MAX_CUSTOM_KEYS, own, validateKey } from "./keys.js";

function errorOf(fn: () => unknown): PortraitError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PortraitError) return e;
    throw e;
  }
  throw new Error("expected a PortraitError, nothing was thrown");
}

describe("validateKey", () => {
  it.each(["a", "Customer Type", "MSG-email", "x".repeat(120), "ünïcödé", "🎉".repeat(120), "a_b-c/d", "constructor"])(
    "accepts %j",
    (key) => {
      expect(() => validateKey(key, "f")).not.toThrow();
    },
  );

  it.each([
    ["", "1-120 characters"],
    ["x".repeat(121), "got 121"],
    ["🎉".repeat(121), "got 121"],
    ["a.b", '"."'],
    ["a:b", '":"'],
    ["$a", '"$"'],
    ["it's", `"'"`],
    ['say "hi"', '"\\""'],
    ["back\\slash", '"\\\\"'],
    ["   ", "blank"],
    ["tab\there", "control"],
    ["nul\u0000", "control"],
    ["__proto__", "not allowed"],
  ])("refuses %j with INVALID_KEY naming the key", (key, fragment) => {
    const e = errorOf(() => validateKey(key, "properties.x"));
    expect(e.code).toBe("INVALID_KEY");
    expect(e.field).toBe("properties.x");
    expect(e.message).toContain(fragment);
    if (key.length > 0 && key.length < 50) expect(e.message).toContain(JSON.stringify(key));
  });

  it("refuses a non-string key", () => {
    expect(errorOf(() => validateKey(5 as unknown as string, "k")).code).toBe("INVALID_KEY");
  });

  it("accepts every 1-120 character key free of the forbidden and control characters (property)", () => {
    const char = fc.string({ minLength: 1, maxLength: 1, unit: "grapheme" }).filter((c) => !/[.:$'"\\\p{Cc}]/u.test(c));
    fc.assert(
      fc.property(
        fc.array(char, { minLength: 1, maxLength: 40 }).map((cs) => cs.join("")),
        (key) => {
          fc.pre(key.trim() !== "" && key !== "__proto__" && charLength(key) <= 120);
          validateKey(key, "k");
        },
      ),
    );
  });

  it("refuses every key containing a forbidden character (property)", () => {
    fc.assert(
      fc.property(fc.string(), fc.constantFrom(".", ":", "$", "'", '"', "\\"), fc.string(), (a, bad, b) => {
        const key = `${a}${bad}${b}`;
        fc.pre(charLength(key) <= 120);
        expect(errorOf(() => validateKey(key, "k")).code).toBe("INVALID_KEY");
      }),
    );
  });
});

describe("helpers", () => {
  it("MAX_CUSTOM_KEYS is 256", () => {
    expect(MAX_CUSTOM_KEYS).toBe(256);
  });

  it("charLength counts code points", () => {
    expect(charLength("abc")).toBe(3);
    expect(charLength("🎉🎉")).toBe(2);
    expect("🎉🎉".length).toBe(4);
  });

  it("own never reaches Object.prototype", () => {
    const rec: Record<string, number> = { a: 1 };
    expect(own(rec, "a")).toBe(1);
    expect(own(rec, "constructor")).toBeUndefined();
    expect(own(rec, "toString")).toBeUndefined();
  });

  it("isPlainObject accepts JSON objects only", () => {
    expect(isPlainObject({})).toBe(true);
    expect(isPlainObject(JSON.parse('{"a":1}'))).toBe(true);
    expect(isPlainObject(Object.create(null))).toBe(true);
    expect(isPlainObject([])).toBe(false);
    expect(isPlainObject(null)).toBe(false);
    expect(isPlainObject(new Date())).toBe(false);
    expect(isPlainObject("x")).toBe(false);
  });
});
