/**
 * The SDK's client-side cleaning against the server's own parsers: whatever the SDK lets through must be accepted
 * by the engine (so a sloppy page loses a key with a warning, never a whole record), and the limits are the same.
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import * as events from "../engine/properties/event-properties.js";
import { MAX_CUSTOM_KEYS, MAX_KEY_LENGTH } from "../engine/properties/keys.js";
import * as parse from "../engine/properties/parse.js";
import { MAX_STRING_LENGTH } from "../engine/properties/values.js";
import { assertStorableText } from "../engine/text.js";
import { IDENTITY_KEYS as SERVER_IDENTITY_KEYS } from "../engine/types.js";
import * as sdk from "./sanitize.js";

const NOW = Date.UTC(2026, 0, 15, 12);
const serverParse = (props: unknown) => parse.parsePropertySet(props, { timezone: "UTC", now: NOW });

beforeAll(() => {
  vi.spyOn(console, "warn").mockImplementation(() => {});
});
afterAll(() => {
  vi.restoreAllMocks();
});

describe("limits mirror the server's", () => {
  it("has the same numbers, reserved names, identity keys and system properties", () => {
    expect(sdk.MAX_KEY_LENGTH).toBe(MAX_KEY_LENGTH);
    expect(sdk.MAX_STRING_LENGTH).toBe(MAX_STRING_LENGTH);
    expect(sdk.MAX_CUSTOM_KEYS).toBe(MAX_CUSTOM_KEYS);
    expect(sdk.MAX_MULTI_VALUES).toBe(parse.MAX_MULTI_VALUES);
    expect(sdk.MAX_NESTING_DEPTH).toBe(parse.MAX_NESTING_DEPTH);
    expect(sdk.MAX_NESTED_KEYS).toBe(parse.MAX_NESTED_KEYS);
    expect(sdk.MAX_EVENT_PROPERTIES).toBe(events.MAX_EVENT_PROPERTIES);
    expect(sdk.MAX_EVENT_PROPERTIES).toBe(events.MAX_ITEM_PROPERTIES);
    expect(sdk.MAX_CHARGED_ITEMS).toBe(events.MAX_CHARGED_ITEMS);
    expect(sdk.MAX_EVENT_NAME_LENGTH).toBe(events.MAX_EVENT_NAME_LENGTH);
    expect([...sdk.RESERVED_EVENT_NAMES].sort()).toEqual([...events.RESERVED_EVENT_NAMES].sort());
    expect([...sdk.IDENTITY_KEYS].sort()).toEqual([...SERVER_IDENTITY_KEYS].sort());
    expect([...sdk.SYSTEM_PROPERTIES].sort()).toEqual(Object.keys(parse.SYSTEM_PROPERTY_TYPES).sort());
  });
});

describe("keys (SEMANTICS §4: the SDK strips . : $ ' \" \\ with a console warning)", () => {
  it("strips the forbidden characters and warns", () => {
    const warn = vi.mocked(console.warn);
    warn.mockClear();
    expect(sdk.cleanKey(`a.b:c$d'e"f\\g`, "test")).toBe("abcdefg");
    expect(warn).toHaveBeenCalledOnce();
    expect(sdk.cleanKey("plain key", "test")).toBe("plain key");
    expect(warn).toHaveBeenCalledOnce();
  });

  it("drops keys that nothing usable is left of", () => {
    expect(sdk.cleanKey("...", "test")).toBeNull();
    expect(sdk.cleanKey("  ", "test")).toBeNull();
    expect(sdk.cleanKey("__proto__", "test")).toBeNull();
    expect(sdk.cleanKey("k".repeat(121), "test")).toBeNull();
    expect(sdk.cleanKey("😀".repeat(120), "test")).toBe("😀".repeat(120));
  });
});

describe("values", () => {
  it("DOB from a Date is its local calendar date; other Dates are {$date}", () => {
    const dob = new Date(1997, 7, 14, 23, 59);
    const out = sdk.cleanProfileProperties(
      { DOB: dob, Seen: new Date(Date.UTC(2024, 0, 2, 3, 4, 5)) },
      "t",
      new Date(NOW),
    );
    expect(out).toEqual({ DOB: "1997-08-14", Seen: { $date: "2024-01-02T03:04:05.000Z" } });
    expect(sdk.localCalendarDate(new Date(5, 0, 1))).toMatch(/^\d{4}-01-01$/);
  });

  it("cuts strings to 512 characters, drops null, NaN and functions, refuses Age", () => {
    const out = sdk.cleanProfileProperties(
      { Long: "x".repeat(600), Nothing: null, Bad: Number.NaN, Fn: () => 1, Age: 30, Ok: 1 },
      "t",
      new Date(NOW),
    );
    expect(out).toEqual({ Long: "x".repeat(512), Ok: 1 });
  });

  it("drops is_test_user, which the server refuses (Portrait's mirror of the test flag), whatever the operation", () => {
    for (const value of ["No", { $delete: true }]) {
      expect(sdk.cleanProfileProperties({ is_test_user: value, Ok: 1 }, "t", new Date(NOW))).toEqual({ Ok: 1 });
    }
  });

  it("turns operations into the server's forms and refuses bad operands", () => {
    const out = sdk.cleanProfileProperties(
      {
        Points: { $incr: 2 },
        Credits: { $decr: -1 },
        Tags: { $add: ["a", "a", 3] },
        Gone: { $delete: true },
        Once: { $setOnce: "x" },
        Weird: { $nope: 1 },
        Email: { $add: "x@y.z" },
      },
      "t",
      new Date(NOW),
    );
    expect(out).toEqual({
      Points: { $incr: 2 },
      Tags: { $add: ["a", "3"] },
      Gone: { $delete: true },
      Once: { $setOnce: "x" },
    });
    expect(serverParse(out)).toHaveLength(4);
  });

  it("keeps event properties scalar except Charged Items", () => {
    expect(sdk.cleanEventProperties("Viewed", { a: 1, b: [1], c: { d: 1 }, "e.f": "g" })).toEqual({ a: 1, ef: "g" });
    const charged = sdk.cleanEventProperties("Charged", { Amount: 5, Items: [{ Sku: "a", Bad: [1] }, 7] });
    expect(charged).toEqual({ Amount: 5, Items: [{ Sku: "a" }] });
    expect(() => events.parseEventProperties("Charged", charged, { timezone: "UTC" })).not.toThrow();
  });

  it("drops an object the cleaning emptied, but keeps one sent empty", () => {
    const deep = sdk.cleanProfileProperties({ Deep: { a: { b: { c: { d: 1 } } } }, Empty: {} }, "t", new Date(NOW));
    // c is a fourth level: dropped, which empties b, then a, then Deep.
    expect(deep).toEqual({ Empty: {} });
    expect(sdk.cleanProfileProperties({ P: { a: 1, b: { c: {} } } }, "t", new Date(NOW))).toEqual({
      P: { a: 1, b: { c: {} } },
    });
  });

  it("drops NUL and replaces a lone surrogate, keeping whole pairs", () => {
    expect(sdk.storableText("a\u0000b\ud800c\udc00d\ud83d\udc4b")).toBe("ab\ufffdc\ufffdd\ud83d\udc4b");
    expect(sdk.storableText("\ud83d")).toBe("\ufffd");
    expect(sdk.cleanEventProperties("E", { a: "x\u0000y", b: 1 })).toEqual({ a: "xy", b: 1 });
  });

  it("refuses event names the server would refuse", () => {
    expect(sdk.cleanEventName("Identity Set")).toBeNull();
    expect(sdk.cleanEventName(" ")).toBeNull();
    expect(sdk.cleanEventName("a\nb")).toBeNull();
    expect(sdk.cleanEventName("e".repeat(121))).toBeNull();
    expect(sdk.cleanEventName(42)).toBeNull();
    expect(sdk.cleanEventName("Product Viewed")).toBe("Product Viewed");
    expect(sdk.cleanEventName("Viewed \ud800")).toBe("Viewed \ufffd");
    // Trimmed as the server trims it.
    expect(sdk.cleanEventName(" Identity Set ")).toBeNull();
    expect(sdk.cleanEventName(" Charged ")).toBe("Charged");
  });
});

// Arbitrary page input: hostile keys, any scalar, Dates (valid or not), arrays and objects nested too deep.
// Any UTF-16 code unit, NUL and lone surrogates included, which the server refuses as text.
const codeUnits = (maxLength: number) =>
  fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength });
const anyKey = fc.oneof(
  fc.string({ maxLength: 8 }),
  codeUnits(6),
  fc.constantFrom(".", "$", "a.b", "a:b", "'q'", '"', "\\", "__proto__", " ", "k".repeat(125), "\u0001x"),
);
const scalar = fc.oneof(
  fc.string({ maxLength: 20 }),
  codeUnits(12),
  fc.string({ minLength: 510, maxLength: 530 }),
  fc.double(),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(undefined),
  fc.date({ noInvalidDate: false }),
);
const value = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    scalar,
    fc.array(fc.oneof(scalar, tie("value")), { maxLength: 5 }),
    fc.dictionary(anyKey, tie("value"), { maxKeys: 4 }),
    fc.record({
      op: fc.constantFrom("$incr", "$decr", "$add", "$remove", "$set", "$setOnce", "$delete"),
      v: tie("value"),
    }),
  ),
})).value;
// System properties have value rules of their own (Email, Phone, Gender…) that the SDK leaves to the server.
const notSystem = (k: string) => {
  const key = sdk.cleanKey(k, "t");
  return key === null || !sdk.SYSTEM_PROPERTIES.includes(key);
};
const input = fc
  .dictionary(anyKey.filter(notSystem), value, { maxKeys: 8 })
  .map((d) =>
    Object.fromEntries(
      Object.entries(d).map(([k, v]) =>
        v !== null && typeof v === "object" && "op" in v && "v" in v ? [k, { [v.op as string]: v.v }] : [k, v],
      ),
    ),
  );

describe("whatever the SDK sends, the server accepts", () => {
  it("profile property sets", () => {
    fc.assert(
      fc.property(input, (raw) => {
        const cleaned = sdk.cleanProfileProperties(raw, "t", new Date(NOW));
        expect(cleaned).not.toBeNull();
        assertStorableText(cleaned);
        serverParse(JSON.parse(JSON.stringify(cleaned)));
      }),
      { numRuns: 500 },
    );
  });

  it("event properties", () => {
    fc.assert(
      fc.property(input, (raw) => {
        const cleaned = sdk.cleanEventProperties("Custom", raw);
        assertStorableText(cleaned);
        events.parseEventProperties("Custom", JSON.parse(JSON.stringify(cleaned)), { timezone: "UTC" });
      }),
      { numRuns: 500 },
    );
  });
});
