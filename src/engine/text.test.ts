import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PortraitError, show } from "./errors.js";
import { assertStorableText, compareCodePoints, MAX_JSON_DEPTH } from "./text.js";

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
  it("refuses numbers JSON.parse made infinite, naming the path", () => {
    expect(codeAndField(JSON.parse('{"doc":{"big":[1,1e400]}}'))).toEqual(["INVALID_VALUE", "doc.big[1]"]);
    // The message says what is known of the number sent (its sign), not always "1e400".
    const message = (json: string) => {
      try {
        assertStorableText(JSON.parse(json));
      } catch (e) {
        return (e as Error).message;
      }
      return null;
    };
    expect(message('{"n":1e309}')).toBe(
      "numbers must be finite: got a number above 1.7976931348623157e+308, beyond a double",
    );
    expect(message('{"n":-1e309}')).toBe(
      "numbers must be finite: got a number below -1.7976931348623157e+308, beyond a double",
    );
    expect(message('{"n":{"$incr":1e999}}')).not.toContain("1e400");
    expect(codeAndField({ n: 1.7976931348623157e308, m: -0 })).toBeNull();
  });
  it("refuses a __proto__ key anywhere, as JSON.parse makes it (an own key), naming the path", () => {
    expect(codeAndField(JSON.parse('{"user_profile":{"a":[{"__proto__":{"polluted":1}}]}}'))).toEqual([
      "INVALID_KEY",
      "user_profile.a[0].__proto__",
    ]);
    expect(codeAndField(JSON.parse('{"constructor":{"prototype":1}}'))).toBeNull();
  });
  it("refuses JSON nested deeper than 64 levels, however deep, with the path to where it went too far", () => {
    const nest = (levels: number, inner: unknown = 1) => {
      let v: unknown = inner;
      for (let i = 0; i < levels; i++) v = i % 2 === 0 ? [v] : { k: v };
      return v;
    };
    expect(codeAndField({ p: nest(MAX_JSON_DEPTH - 1) })).toBeNull();
    const [code, field] = codeAndField({ p: nest(MAX_JSON_DEPTH) })!;
    expect(code).toBe("NESTING_TOO_DEEP");
    expect(field?.startsWith("p")).toBe(true);
    expect(codeAndField({ p: nest(100_000) })?.[0]).toBe("NESTING_TOO_DEEP");
  });
});

describe("assertStorableText on any JSON value", () => {
  // UTF-16 units biased towards the refused ones, so that most runs put a NUL or a lone surrogate somewhere deep.
  const unit = fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom("\u0000", "\uD800", "\uDFFF", "\uD83D\uDC4B") },
    { weight: 30, arbitrary: fc.integer({ min: 0x20, max: 0xffff }).map((n) => String.fromCharCode(n)) },
  );
  const text = fc.string({ unit, maxLength: 6 });
  const json = fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: "small", withCrossShrink: true },
      text,
      // What JSON can carry; infinite numbers have a test of their own.
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.boolean(),
      fc.constant(null),
      fc.array(tie("value"), { maxLength: 4 }),
      fc.dictionary(text, tie("value"), { maxKeys: 4 }),
    ),
  })).value;

  function hasFault(value: unknown): boolean {
    // Unit by unit, independently of the pattern under test.
    const faulty = (s: string) => {
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        if (c === 0) return true;
        if (c >= 0xd800 && c <= 0xdbff) {
          const next = s.charCodeAt(i + 1);
          if (next >= 0xdc00 && next <= 0xdfff) i++;
          else return true;
        } else if (c >= 0xdc00 && c <= 0xdfff) return true;
      }
      return false;
    };
    if (typeof value === "string") return faulty(value);
    if (Array.isArray(value)) return value.some(hasFault);
    if (typeof value === "object" && value !== null) {
      return Object.entries(value).some(([k, v]) => faulty(k) || hasFault(v));
    }
    return false;
  }

  it("refuses exactly the values holding unstorable text somewhere, with the code of what it found", () => {
    fc.assert(
      fc.property(json, (value) => {
        const found = codeAndField({ record: value });
        expect(found !== null).toBe(hasFault(value));
        if (found !== null) expect(["INVALID_VALUE", "INVALID_KEY"]).toContain(found[0]);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("compareCodePoints", () => {
  const byCodePoints = (a: string, b: string): number => {
    const x = Array.from(a, (c) => c.codePointAt(0) as number);
    const y = Array.from(b, (c) => c.codePointAt(0) as number);
    for (let i = 0; i < Math.min(x.length, y.length); i++)
      if (x[i] !== y[i]) return (x[i] as number) - (y[i] as number);
    return x.length - y.length;
  };
  it("orders characters above U+FFFF after U+E000–U+FFFF, where UTF-16 code units put them before", () => {
    expect("😀" < "ｚ").toBe(true); // what JavaScript's own comparison says
    expect(compareCodePoints("😀", "ｚ")).toBeGreaterThan(0);
    expect(compareCodePoints("a😀", "a\uFFFF")).toBeGreaterThan(0);
    expect(compareCodePoints("B", "a")).toBeLessThan(0);
    expect(compareCodePoints("ab", "a")).toBeGreaterThan(0);
    expect(compareCodePoints("", "")).toBe(0);
  });
  it("agrees in sign with comparing the code point sequences", () => {
    // Characters on both sides of the surrogate range, and any code point at all.
    const unit = fc.oneof(
      fc.constantFrom("a", "\uD7FF", "\uE000", "ｚ", "\uFFFF", "𐀀", "😀", "\u{10FFFF}"),
      fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
    );
    const text = fc.string({ unit, maxLength: 5 });
    fc.assert(
      fc.property(text, text, (a, b) => {
        expect(Math.sign(compareCodePoints(a, b))).toBe(Math.sign(byCodePoints(a, b)));
      }),
      { numRuns: 2000 },
    );
  });
});

describe("show (values in messages)", () => {
  it("describes a value nested too deep for JSON.stringify without overflowing the stack", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(show(deep)).toBe("[…]");
    expect(show({ a: deep })).toBe("{…}");
    expect(show([1, [2]])).toBe("[1,[2]]");
  });
});
