import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { prefixEnd } from "./prefix-end.js";

describe("prefixEnd (startsWith's upper bound, shared by both compilers)", () => {
  /** The smallest string above every string starting with `s`, by its definition on code points. */
  function reference(s: string): string | null {
    const points = Array.from(s, (c) => c.codePointAt(0) as number);
    while (points.length > 0 && points[points.length - 1] === 0x10ffff) points.pop();
    const last = points.pop();
    if (last === undefined) return null;
    return (
      points.map((p) => String.fromCodePoint(p)).join("") + String.fromCodePoint(last === 0xd7ff ? 0xe000 : last + 1)
    );
  }

  it("is the next string in code point order, past U+10FFFF and the surrogate gap", () => {
    expect(prefixEnd("abc")).toBe("abd");
    expect(prefixEnd("a\u{10FFFF}\u{10FFFF}")).toBe("b");
    expect(prefixEnd("\u{10FFFF}")).toBeNull();
    expect(prefixEnd("")).toBeNull();
    expect(prefixEnd("a\uD7FF")).toBe("a\uE000");
    expect(prefixEnd("a😀")).toBe("a😁");
    fc.assert(fc.property(fc.string({ unit: "grapheme" }), (s) => prefixEnd(s) === reference(s)));
  });

  it("takes a value of millions of characters (it spread every code point into one call, a stack overflow)", () => {
    const long = "é".repeat(3_000_000);
    expect(prefixEnd(long)).toBe(`${"é".repeat(2_999_999)}ê`);
  });
});
