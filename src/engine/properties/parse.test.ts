import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PortraitError } from "../errors.js";
import type { PropertyOp } from "../records.js";
import { parsePropertySet, SYSTEM_PROPERTY_TYPES } from "./parse.js";

const NOW = Date.parse("2024-11-20T12:00:00Z");
const opts = { timezone: "UTC", now: NOW };

function parse(input: unknown, o: { timezone?: string; now?: number; field?: string } = {}): PropertyOp[] {
  return parsePropertySet(input, { ...opts, ...o });
}

function one(key: string, value: unknown, o: { timezone?: string; now?: number } = {}): PropertyOp {
  const ops = parse({ [key]: value }, o);
  expect(ops).toHaveLength(1);
  return ops[0]!;
}

function errorOf(fn: () => unknown): PortraitError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PortraitError) return e;
    throw e;
  }
  throw new Error("expected a PortraitError, nothing was thrown");
}

function refuse(input: unknown, code: string, field: string | undefined, ...fragments: string[]): PortraitError {
  const e = errorOf(() => parse(input));
  expect(e.code).toBe(code);
  expect(e.field).toBe(field);
  for (const f of fragments) expect(e.message).toContain(f);
  return e;
}

describe("the property set itself", () => {
  it.each([null, [], "x", 5, true])("refuses %j with INVALID_RECORD at the given field", (input) => {
    const e = errorOf(() => parse(input, { field: "properties" }));
    expect(e.code).toBe("INVALID_RECORD");
    expect(e.field).toBe("properties");
  });

  it("leaves the field to the caller when none is given", () => {
    expect(errorOf(() => parse([])).field).toBeUndefined();
  });

  it("returns the operations in key order", () => {
    expect(parse({ b: 1, a: "x", c: true }).map((op) => op.key)).toEqual(["b", "a", "c"]);
  });

  it("accepts an empty set", () => {
    expect(parse({})).toEqual([]);
  });

  it("validates each key", () => {
    refuse({ ok: 1, "a.b": 1 }, "INVALID_KEY", "a.b", '"a.b"');
    refuse({ $weird: 1 }, "INVALID_KEY", "$weird");
    refuse({ "": 1 }, "INVALID_KEY", "");
  });

  it("refuses Age with AGE_IS_DERIVED", () => {
    refuse({ Age: 27 }, "AGE_IS_DERIVED", "Age", "DOB");
    refuse({ Age: { $incr: 1 } }, "AGE_IS_DERIVED", "Age");
  });

  it("refuses every client write of is_test_user, the mirror of the test flag (SEMANTICS §9)", () => {
    for (const value of ["Yes", "No", { $delete: true }, { $setOnce: "Yes" }, { $add: ["Yes"] }, { $incr: 1 }, 1]) {
      refuse({ Name: "T", is_test_user: value }, "INVALID_KEY", "is_test_user", "PUT /v1/profiles/{id}/test");
    }
    // Only the top-level key is Portrait's: a nested key or a look-alike is a client's own.
    expect(parse({ Info: { is_test_user: "No" }, Is_Test_User: "No" })).toHaveLength(2);
  });

  it("allows 256 custom keys plus system properties, refuses 257 custom keys", () => {
    const set: Record<string, unknown> = { Name: "Ana", Email: "a@x.io", "MSG-email": true };
    for (let i = 0; i < 256; i++) set[`k${i}`] = i;
    expect(parse(set)).toHaveLength(259);
    set.k256 = 1;
    const e = errorOf(() => parse(set, { field: "properties" }));
    expect(e.code).toBe("TOO_MANY_PROPERTIES");
    expect(e.field).toBe("properties");
    expect(e.message).toContain("257");
  });

  it("treats keys named like Object.prototype members as custom keys", () => {
    expect(parse({ constructor: 1, toString: "x" })).toEqual([
      { kind: "set", key: "constructor", value: 1, type: "number" },
      { kind: "set", key: "toString", value: "x", type: "string" },
    ]);
  });
});

describe("plain values", () => {
  it("sets strings, numbers and booleans", () => {
    expect(one("Plan", "pro")).toEqual({ kind: "set", key: "Plan", value: "pro", type: "string" });
    expect(one("Points", 10.5)).toEqual({ kind: "set", key: "Points", value: 10.5, type: "number" });
    expect(one("Vip", false)).toEqual({ kind: "set", key: "Vip", value: false, type: "boolean" });
    expect(one("Empty", "")).toEqual({ kind: "set", key: "Empty", value: "", type: "string" });
  });

  it("stores -0 as 0", () => {
    const op = one("Points", -0);
    expect(op.kind === "set" && Object.is(op.value, 0)).toBe(true);
  });

  it("limits strings to 512 characters (code points)", () => {
    expect(one("Bio", "x".repeat(512))).toMatchObject({ type: "string" });
    expect(one("Bio", "🎉".repeat(512))).toMatchObject({ type: "string" });
    refuse({ Bio: "x".repeat(513) }, "VALUE_TOO_LONG", "Bio", '"Bio"', "512", "513");
  });

  it("refuses NaN and Infinity with INVALID_VALUE", () => {
    refuse({ Points: Number.NaN }, "INVALID_VALUE", "Points", '"Points"', "finite", "NaN");
    refuse({ Points: Number.POSITIVE_INFINITY }, "INVALID_VALUE", "Points", "Infinity");
  });

  it("refuses null with TYPE_MISMATCH pointing to $delete", () => {
    refuse({ Plan: null }, "TYPE_MISMATCH", "Plan", '"Plan"', '{"$delete": true}');
    refuse({ Name: null }, "TYPE_MISMATCH", "Name", '{"$delete": true}');
    refuse({ Email: null }, "TYPE_MISMATCH", "Email", '{"$delete": true}');
  });

  it("refuses values that are not JSON", () => {
    refuse({ Fn: () => 1 }, "TYPE_MISMATCH", "Fn", "function");
  });

  it("reads date forms as dates (epoch ms, to the second)", () => {
    expect(one("Signup", "$D_1732000000")).toEqual({
      kind: "set",
      key: "Signup",
      value: 1_732_000_000_000,
      type: "date",
    });
    expect(one("Signup", { $date: "2024-11-20T10:00:00.5Z" })).toEqual({
      kind: "set",
      key: "Signup",
      value: Date.parse("2024-11-20T10:00:00Z"),
      type: "date",
    });
    expect(one("Signup", { $date: "2024-11-20" }, { timezone: "Europe/Paris" })).toMatchObject({
      value: Date.parse("2024-11-19T23:00:00Z"),
    });
    refuse({ Signup: "$D_soon" }, "INVALID_DATE", "Signup");
    refuse({ Signup: { $date: "2024-02-30" } }, "INVALID_DATE", "Signup");
  });

  it("keeps ISO-looking plain strings as strings", () => {
    expect(one("Note", "2024-11-20")).toMatchObject({ type: "string", value: "2024-11-20" });
  });
});

describe("multi-values (string arrays)", () => {
  it("de-duplicates keeping the first occurrence", () => {
    expect(one("Tags", ["b", "a", "b", "c", "a"])).toEqual({
      kind: "set",
      key: "Tags",
      value: ["b", "a", "c"],
      type: "multi",
    });
  });

  it("accepts an empty array", () => {
    expect(one("Tags", [])).toEqual({ kind: "set", key: "Tags", value: [], type: "multi" });
  });

  it("counts distinct values against the 100 limit", () => {
    const hundred = Array.from({ length: 100 }, (_, i) => `t${i}`);
    expect(one("Tags", [...hundred, ...hundred])).toMatchObject({ value: hundred });
    refuse({ Tags: [...hundred, "t100"] }, "TOO_MANY_VALUES", "Tags", '"Tags"', "100", "101");
  });

  it("refuses non-string elements at their index", () => {
    refuse({ Tags: ["a", 1] }, "TYPE_MISMATCH", "Tags[1]", '"Tags"', "string", "number 1");
    refuse({ Tags: ["a", null] }, "TYPE_MISMATCH", "Tags[1]");
    refuse({ Tags: [["a"]] }, "TYPE_MISMATCH", "Tags[0]");
    refuse({ Tags: [{ a: 1 }] }, "TYPE_MISMATCH", "Tags[0]");
  });

  it("limits each element to 512 characters", () => {
    refuse({ Tags: ["ok", "x".repeat(513)] }, "VALUE_TOO_LONG", "Tags[1]");
  });
});

describe("nested objects", () => {
  it("keeps scalars and turns date leaves into ISO-8601 UTC strings", () => {
    const value = { city: "Paris", geo: { lat: 48.8, ok: true }, since: "$D_1732000000", at: { $date: "2024-11-20" } };
    expect(one("Address", value, { timezone: "Asia/Tokyo" })).toEqual({
      kind: "set",
      key: "Address",
      type: "object",
      value: {
        city: "Paris",
        geo: { lat: 48.8, ok: true },
        since: "2024-11-19T07:06:40.000Z",
        at: "2024-11-19T15:00:00.000Z",
      },
    });
  });

  it("accepts 3 levels of objects, refuses a 4th with NESTING_TOO_DEEP at its path", () => {
    expect(one("a", { b: { c: { d: 1 } } })).toMatchObject({ type: "object", value: { b: { c: { d: 1 } } } });
    refuse({ a: { b: { c: { d: { e: 1 } } } } }, "NESTING_TOO_DEEP", "a.b.c.d", '"a"', "3");
  });

  it("counts keys at all levels against the 100 limit", () => {
    const flat = Object.fromEntries(Array.from({ length: 99 }, (_, i) => [`k${i}`, i]));
    expect(one("o", { ...flat, inner: {} })).toMatchObject({ type: "object" });
    refuse({ o: { ...flat, inner: { x: 1 } } }, "TOO_MANY_PROPERTIES", "o", '"o"', "100");
  });

  it("applies the key rules to inner keys", () => {
    refuse({ o: { "a.b": 1 } }, "INVALID_KEY", "o.a.b");
    refuse({ o: { in: { $incr: 1 } } }, "INVALID_KEY", "o.in.$incr");
    refuse({ o: { __proto__x: 1, ["__proto__"]: 2 } }, "INVALID_KEY", "o.__proto__");
  });

  it("refuses arrays, null and bad scalars inside objects", () => {
    refuse({ o: { list: ["a"] } }, "TYPE_MISMATCH", "o.list", "arrays are top-level only");
    refuse({ o: { x: { y: null } } }, "TYPE_MISMATCH", "o.x.y", '{"$delete": true}');
    refuse({ o: { s: "x".repeat(513) } }, "VALUE_TOO_LONG", "o.s");
    refuse({ o: { n: Number.NaN } }, "INVALID_VALUE", "o.n");
    refuse({ o: { d: "$D_x" } }, "INVALID_DATE", "o.d");
  });

  it("accepts an empty object", () => {
    expect(one("o", {})).toEqual({ kind: "set", key: "o", value: {}, type: "object" });
  });
});

describe("operations", () => {
  it("$incr and $decr take finite numbers >= 0", () => {
    expect(one("Points", { $incr: 10 })).toEqual({ kind: "incr", key: "Points", by: 10 });
    expect(one("Points", { $decr: 2.5 })).toEqual({ kind: "incr", key: "Points", by: -2.5 });
    expect(one("Points", { $incr: 0 })).toEqual({ kind: "incr", key: "Points", by: 0 });
    const decr0 = one("Points", { $decr: 0 });
    expect(decr0.kind === "incr" && Object.is(decr0.by, 0)).toBe(true);
  });

  it.each([-1, "5", null, Number.NaN, Number.POSITIVE_INFINITY, [1], true])(
    "refuses $incr/$decr of %j with INVALID_OPERATION",
    (n) => {
      refuse({ Points: { $incr: n } }, "INVALID_OPERATION", "Points", '"$incr"', '"Points"', ">= 0");
      refuse({ Points: { $decr: n } }, "INVALID_OPERATION", "Points", '"$decr"');
    },
  );

  it("$add and $remove take a string or an array of strings", () => {
    expect(one("Tags", { $add: "x" })).toEqual({ kind: "add", key: "Tags", values: ["x"] });
    expect(one("Tags", { $add: ["a", "b", "a"] })).toEqual({ kind: "add", key: "Tags", values: ["a", "b"] });
    expect(one("Tags", { $remove: "x" })).toEqual({ kind: "remove", key: "Tags", values: ["x"] });
    expect(one("Tags", { $remove: ["x", "y"] })).toEqual({ kind: "remove", key: "Tags", values: ["x", "y"] });
    expect(one("Tags", { $add: [] })).toEqual({ kind: "add", key: "Tags", values: [] });
  });

  it("refuses bad $add/$remove operands", () => {
    refuse({ Tags: { $add: 5 } }, "TYPE_MISMATCH", "Tags", '"$add"', "a string or an array of strings");
    refuse({ Tags: { $remove: [1] } }, "TYPE_MISMATCH", "Tags[0]");
    refuse({ Tags: { $add: "x".repeat(513) } }, "VALUE_TOO_LONG", "Tags");
    refuse({ Tags: { $add: ["x".repeat(513)] } }, "VALUE_TOO_LONG", "Tags[0]");
    refuse({ Tags: { $add: Array.from({ length: 101 }, (_, i) => `t${i}`) } }, "TOO_MANY_VALUES", "Tags");
  });

  it("$set replaces a multi-value", () => {
    expect(one("Tags", { $set: ["a", "b", "a"] })).toEqual({ kind: "setMulti", key: "Tags", values: ["a", "b"] });
    expect(one("Tags", { $set: "a" })).toEqual({ kind: "setMulti", key: "Tags", values: ["a"] });
    expect(one("Tags", { $set: [] })).toEqual({ kind: "setMulti", key: "Tags", values: [] });
    refuse({ Tags: { $set: 5 } }, "TYPE_MISMATCH", "Tags", '"$set"');
    refuse({ Tags: { $set: [true] } }, "TYPE_MISMATCH", "Tags[0]");
  });

  it("$setOnce takes any plain value with its type", () => {
    expect(one("First", { $setOnce: "web" })).toEqual({ kind: "setOnce", key: "First", value: "web", type: "string" });
    expect(one("First", { $setOnce: 3 })).toEqual({ kind: "setOnce", key: "First", value: 3, type: "number" });
    expect(one("First", { $setOnce: "$D_1732000000" })).toEqual({
      kind: "setOnce",
      key: "First",
      value: 1_732_000_000_000,
      type: "date",
    });
    expect(one("First", { $setOnce: ["a", "a"] })).toEqual({
      kind: "setOnce",
      key: "First",
      value: ["a"],
      type: "multi",
    });
    expect(one("First", { $setOnce: { a: 1 } })).toEqual({
      kind: "setOnce",
      key: "First",
      value: { a: 1 },
      type: "object",
    });
    refuse({ First: { $setOnce: null } }, "TYPE_MISMATCH", "First", '{"$delete": true}');
    refuse({ First: { $setOnce: "x".repeat(513) } }, "VALUE_TOO_LONG", "First");
  });

  it("$delete must be true", () => {
    expect(one("Plan", { $delete: true })).toEqual({ kind: "delete", key: "Plan" });
    refuse({ Plan: { $delete: false } }, "INVALID_OPERATION", "Plan", '"$delete"', "true", "boolean false");
    refuse({ Plan: { $delete: 1 } }, "INVALID_OPERATION", "Plan");
  });

  it("refuses unknown operations and operation objects with other keys", () => {
    refuse({ Plan: { $unset: true } }, "INVALID_OPERATION", "Plan", '"$unset"', "$incr");
    refuse({ Plan: { $incr: 1, x: 2 } }, "INVALID_OPERATION", "Plan", "exactly one");
    refuse({ Plan: { $incr: 1, $decr: 1 } }, "INVALID_OPERATION", "Plan");
  });

  it("treats an object with $date as a date, not an operation", () => {
    expect(one("Plan", { $date: "2024-01-01T00:00:00Z" })).toMatchObject({ kind: "set", type: "date" });
    refuse({ Plan: { $date: "2024-01-01", $incr: 1 } }, "INVALID_DATE", "Plan");
  });
});

describe("system properties", () => {
  it("exports their types", () => {
    expect(SYSTEM_PROPERTY_TYPES).toEqual({
      Name: "string",
      Email: "string",
      Phone: "string",
      Gender: "string",
      DOB: "date",
      Identity: "string",
      FBID: "string",
      GPID: "string",
      Timezone: "string",
      "Customer Type": "string",
      "MSG-email": "boolean",
      "MSG-push": "boolean",
      "MSG-sms": "boolean",
      "MSG-whatsapp": "boolean",
      "MSG-dndEmail": "boolean",
      "MSG-dndPhone": "boolean",
    });
  });

  it("Name and Customer Type are strings", () => {
    expect(one("Name", "Ana")).toEqual({ kind: "set", key: "Name", value: "Ana", type: "string" });
    expect(one("Customer Type", "Silver")).toMatchObject({ value: "Silver", type: "string" });
    refuse({ Name: 5 }, "TYPE_MISMATCH", "Name", '"Name"', "must be a string", "number 5");
    refuse({ Name: ["Ana"] }, "TYPE_MISMATCH", "Name");
    refuse({ Name: "$D_1732000000" }, "TYPE_MISMATCH", "Name");
    refuse({ "Customer Type": true }, "TYPE_MISMATCH", "Customer Type");
    refuse({ Name: "x".repeat(513) }, "VALUE_TOO_LONG", "Name");
  });

  it("Email is normalised and validated", () => {
    expect(one("Email", " Ana@X.IO ")).toEqual({ kind: "set", key: "Email", value: "ana@x.io", type: "string" });
    refuse({ Email: "ana" }, "INVALID_EMAIL", "Email", "Email", '"ana"');
    refuse({ Email: "null" }, "INVALID_IDENTITY", "Email");
    refuse({ Email: 5 }, "INVALID_IDENTITY", "Email");
  });

  it("Phone is normalised to E.164", () => {
    expect(one("Phone", "+49 151 2345-6789")).toEqual({
      kind: "set",
      key: "Phone",
      value: "+4915123456789",
      type: "string",
    });
    const e = refuse({ Phone: "223" }, "INVALID_PHONE", "Phone");
    expect(e.message).toBe('Phone must be E.164 (+ then 8-15 digits), got "223"');
  });

  it("Identity, FBID and GPID are strings; numbers become strings; junk is refused", () => {
    expect(one("Identity", 42)).toEqual({ kind: "set", key: "Identity", value: "42", type: "string" });
    expect(one("Identity", " u-42 ")).toMatchObject({ value: "u-42" });
    expect(one("FBID", "fb-1")).toMatchObject({ value: "fb-1", type: "string" });
    expect(one("GPID", 77)).toMatchObject({ value: "77", type: "string" });
    for (const junk of ["", "0", "-1", "null", "undefined", "anonymous", "[object Object]", "NaN", "NULL", 0, -1]) {
      refuse({ Identity: junk }, "INVALID_IDENTITY", "Identity", "Identity");
    }
    refuse({ FBID: true }, "INVALID_IDENTITY", "FBID");
  });

  it("identity keys take only a plain value or $delete", () => {
    expect(one("Email", { $delete: true })).toEqual({ kind: "delete", key: "Email" });
    for (const key of ["Identity", "Email", "Phone", "FBID", "GPID"]) {
      for (const op of [{ $setOnce: "x" }, { $incr: 1 }, { $add: "x" }, { $set: ["x"] }, { $remove: "x" }]) {
        refuse({ [key]: op }, "INVALID_OPERATION", key, key, "identity");
      }
    }
  });

  it("Gender is normalised", () => {
    expect(one("Gender", "female")).toEqual({ kind: "set", key: "Gender", value: "F", type: "string" });
    expect(one("Gender", { $setOnce: "Man" })).toEqual({ kind: "setOnce", key: "Gender", value: "M", type: "string" });
    refuse({ Gender: "x" }, "INVALID_GENDER", "Gender", '"x"');
    refuse({ Gender: 1 }, "INVALID_GENDER", "Gender");
  });

  it("DOB accepts YYYY-MM-DD, $D_ and {$date}, stored as the calendar date", () => {
    expect(one("DOB", "1997-08-14")).toEqual({ kind: "set", key: "DOB", value: "1997-08-14", type: "date" });
    // 1997-08-14T02:00:00Z is still the 13th in New York.
    const d = Date.parse("1997-08-14T02:00:00Z") / 1000;
    expect(one("DOB", `$D_${d}`)).toMatchObject({ value: "1997-08-14", type: "date" });
    expect(one("DOB", `$D_${d}`, { timezone: "America/New_York" })).toMatchObject({ value: "1997-08-13" });
    expect(one("DOB", { $date: "1997-08-14T02:00:00Z" }, { timezone: "America/New_York" })).toMatchObject({
      value: "1997-08-13",
    });
    expect(one("DOB", { $date: "1997-08-14" }, { timezone: "Pacific/Kiritimati" })).toMatchObject({
      value: "1997-08-14",
    });
    expect(one("DOB", { $setOnce: "1960-01-31" })).toEqual({
      kind: "setOnce",
      key: "DOB",
      value: "1960-01-31",
      type: "date",
    });
  });

  it("DOB may be today but not in the future (in the account timezone)", () => {
    expect(one("DOB", "2024-11-20")).toMatchObject({ value: "2024-11-20" });
    refuse({ DOB: "2024-11-21" }, "INVALID_DATE", "DOB", "future", "2024-11-21");
    // At 12:00Z it is already the 21st in Kiritimati (UTC+14).
    expect(one("DOB", "2024-11-21", { timezone: "Pacific/Kiritimati" })).toMatchObject({ value: "2024-11-21" });
    refuse({ DOB: `$D_${NOW / 1000 + 86_400 * 2}` }, "INVALID_DATE", "DOB", "future");
  });

  it.each(["1997-02-30", "14/08/1997", "1997-8-14", "", 19970814, true, ["1997-08-14"]])(
    "refuses DOB %j with INVALID_DATE",
    (dob) => {
      refuse({ DOB: dob }, "INVALID_DATE", "DOB", "DOB");
    },
  );

  it("Timezone must be an IANA name", () => {
    expect(one("Timezone", "Europe/Paris")).toEqual({
      kind: "set",
      key: "Timezone",
      value: "Europe/Paris",
      type: "string",
    });
    refuse({ Timezone: "Paris" }, "INVALID_TIMEZONE", "Timezone", '"Paris"');
    refuse({ Timezone: "+02:00" }, "INVALID_TIMEZONE", "Timezone");
    refuse({ Timezone: 2 }, "INVALID_TIMEZONE", "Timezone");
  });

  it.each(["MSG-email", "MSG-push", "MSG-sms", "MSG-whatsapp", "MSG-dndEmail", "MSG-dndPhone"])(
    "%s is a boolean only",
    (key) => {
      expect(one(key, false)).toEqual({ kind: "set", key, value: false, type: "boolean" });
      refuse({ [key]: "true" }, "TYPE_MISMATCH", key, key, "boolean", 'string "true"');
      refuse({ [key]: 1 }, "TYPE_MISMATCH", key);
    },
  );

  it("refuses operations that need another type than the system property's", () => {
    refuse({ Name: { $incr: 1 } }, "TYPE_MISMATCH", "Name", '"Name"', "string", "number");
    refuse({ Name: { $add: "x" } }, "TYPE_MISMATCH", "Name", "multi");
    refuse({ "MSG-email": { $set: ["x"] } }, "TYPE_MISMATCH", "MSG-email");
    refuse({ DOB: { $incr: 1 } }, "TYPE_MISMATCH", "DOB");
    refuse({ Name: { $setOnce: 5 } }, "TYPE_MISMATCH", "Name");
    expect(one("Name", { $delete: true })).toEqual({ kind: "delete", key: "Name" });
  });
});

describe("laws", () => {
  it("never throws anything but a PortraitError, whatever the JSON (property)", () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 5 })), (input) => {
        try {
          const ops = parse(input);
          expect(ops.length).toBe(Object.keys(input).length);
        } catch (e) {
          expect(e).toBeInstanceOf(PortraitError);
          expect((e as PortraitError).message.length).toBeGreaterThan(0);
        }
      }),
    );
  });

  it("turns plain scalars on custom keys into sets of the same value (property)", () => {
    const key = fc.string({ minLength: 1, maxLength: 20 }).map((s) => `k_${s.replace(/[.:$'"\\\p{Cc}]/gu, "_")}`);
    const value = fc.oneof(
      fc.string({ maxLength: 30 }).filter((s) => !s.startsWith("$D_")),
      fc.double({ noNaN: true, noDefaultInfinity: true }).filter((n) => !Object.is(n, -0)),
      fc.boolean(),
    );
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 20 }), (input) => {
        const ops = parse(input);
        expect(ops).toEqual(
          Object.entries(input).map(([k, v]) => ({ kind: "set", key: k, value: v, type: typeof v as string })),
        );
      }),
    );
  });
});
