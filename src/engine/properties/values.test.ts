import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PortraitError } from "../errors.js";
import {
  calendarDateIn,
  describeValue,
  isJunkIdentity,
  isValidEmail,
  isValidTimeZone,
  MAX_DATE_MS,
  MIN_DATE_MS,
  normaliseEmail,
  normaliseGender,
  normaliseIdentityValue,
  normalisePhone,
  parseDateInput,
  parseIso8601,
  timeZoneOffsetMs,
  toIsoUtc,
  wallClockAt,
} from "./values.js";

function errorOf(fn: () => unknown): PortraitError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PortraitError) return e;
    throw e;
  }
  throw new Error("expected a PortraitError, nothing was thrown");
}

const utc = (iso: string) => Date.parse(iso);

describe("parseDateInput: $D_", () => {
  it("reads epoch seconds as ms", () => {
    expect(parseDateInput("$D_1732000000", "UTC")).toBe(1_732_000_000_000);
    expect(parseDateInput("$D_0", "UTC")).toBe(0);
    expect(Object.is(parseDateInput("$D_-0", "UTC"), 0)).toBe(true);
  });

  it("accepts dates before 1970 (a DOB)", () => {
    expect(parseDateInput("$D_-315619200", "UTC")).toBe(utc("1960-01-01T00:00:00Z"));
  });

  it("truncates a fraction to the second, also before 1970", () => {
    expect(parseDateInput("$D_1732000000.999", "UTC")).toBe(1_732_000_000_000);
    expect(parseDateInput("$D_-1.5", "UTC")).toBe(-2000);
  });

  it("does not depend on the timezone", () => {
    expect(parseDateInput("$D_1732000000", "Asia/Kolkata")).toBe(1_732_000_000_000);
  });

  it.each(["$D_", "$D_abc", "$D_12x", "$D_ 12", "$D_1e9", "$D_99999999999999999"])(
    "refuses %j with INVALID_DATE",
    (v) => {
      const e = errorOf(() => parseDateInput(v, "UTC", "Signup"));
      expect(e.code).toBe("INVALID_DATE");
      expect(e.field).toBe("Signup");
      expect(e.message).toContain("$D_");
    },
  );

  it("refuses epochs outside years 0001-9999", () => {
    expect(errorOf(() => parseDateInput("$D_253402300800", "UTC")).code).toBe("INVALID_DATE");
    expect(parseDateInput("$D_253402300799", "UTC")).toBe(MAX_DATE_MS);
    expect(parseDateInput("$D_-62135596800", "UTC")).toBe(MIN_DATE_MS);
    expect(errorOf(() => parseDateInput("$D_-62135596801", "UTC")).code).toBe("INVALID_DATE");
  });

  it.each(["hello", "2024-01-01", "D_1", "$d_1", 5, true, null, undefined, [], { a: 1 }, { date: "2024-01-01" }])(
    "returns null for %j, which is not a date form",
    (v) => {
      expect(parseDateInput(v, "UTC")).toBeNull();
    },
  );
});

describe("parseDateInput: {$date}", () => {
  it("reads a UTC date-time, truncating to the second", () => {
    expect(parseDateInput({ $date: "2024-11-20T10:00:00.987Z" }, "Europe/Paris")).toBe(utc("2024-11-20T10:00:00Z"));
  });

  it("honours explicit offsets in every spelling", () => {
    const expected = utc("2024-11-20T08:00:00Z");
    for (const text of [
      "2024-11-20T10:00:00+02:00",
      "2024-11-20T10:00:00+0200",
      "2024-11-20T10:00+02",
      "2024-11-20 10:00:00+02:00",
    ]) {
      expect(parseDateInput({ $date: text }, "America/New_York")).toBe(expected);
    }
    expect(parseDateInput({ $date: "2024-11-20T10:00:00-05:30" }, "UTC")).toBe(utc("2024-11-20T15:30:00Z"));
  });

  it("reads an offset-less date-time in the given timezone, with its DST offset", () => {
    expect(parseDateInput({ $date: "2024-01-15T10:00:00" }, "Europe/Paris")).toBe(utc("2024-01-15T09:00:00Z"));
    expect(parseDateInput({ $date: "2024-07-15T10:00:00" }, "Europe/Paris")).toBe(utc("2024-07-15T08:00:00Z"));
    expect(parseDateInput({ $date: "2024-07-15T10:00" }, "Asia/Kolkata")).toBe(utc("2024-07-15T04:30:00Z"));
    expect(parseDateInput({ $date: "2024-07-15T10:00:00" }, "UTC")).toBe(utc("2024-07-15T10:00:00Z"));
  });

  it("reads a date-only value as the start of that day in the timezone", () => {
    expect(parseDateInput({ $date: "2024-11-20" }, "America/New_York")).toBe(utc("2024-11-20T05:00:00Z"));
    expect(parseDateInput({ $date: "2024-11-20" }, "Asia/Tokyo")).toBe(utc("2024-11-19T15:00:00Z"));
    expect(parseDateInput({ $date: "2024-11-20" }, "UTC")).toBe(utc("2024-11-20T00:00:00Z"));
  });

  it("moves a wall-clock time skipped by a spring-forward shift forward by the gap", () => {
    // 2024-03-10 02:30 does not exist in New York; 03:30 EDT = 07:30Z.
    expect(parseDateInput({ $date: "2024-03-10T02:30:00" }, "America/New_York")).toBe(utc("2024-03-10T07:30:00Z"));
  });

  it("takes the earlier instant of a wall-clock time repeated by a fall-back shift", () => {
    // 2024-11-03 01:30 happens twice in New York: first in EDT (05:30Z), then in EST (06:30Z).
    expect(parseDateInput({ $date: "2024-11-03T01:30:00" }, "America/New_York")).toBe(utc("2024-11-03T05:30:00Z"));
  });

  it.each([
    "2024-02-30",
    "2023-02-29",
    "2024-13-01",
    "2024-00-10",
    "2024-01-01T24:00:00",
    "2024-01-01T10:60",
    "2024-01-01T10:00:61",
    "2024-01-01T10:00:00+24:00",
    "2024-01-01Z",
    "20240101",
    "2024-1-1",
    "0000-01-01",
    "10000-01-01",
    "yesterday",
    "",
  ])("refuses {$date: %j} with INVALID_DATE", (text) => {
    const e = errorOf(() => parseDateInput({ $date: text }, "UTC", "When"));
    expect(e.code).toBe("INVALID_DATE");
    expect(e.field).toBe("When");
    expect(e.message).toContain("ISO-8601");
  });

  it("accepts a leap day and lower-case separators", () => {
    expect(parseDateInput({ $date: "2024-02-29" }, "UTC")).toBe(utc("2024-02-29T00:00:00Z"));
    expect(parseDateInput({ $date: "2024-02-29t12:00:00z" }, "UTC")).toBe(utc("2024-02-29T12:00:00Z"));
  });

  it("refuses a $date that is not a string, or that has company", () => {
    expect(errorOf(() => parseDateInput({ $date: 1732000000 }, "UTC")).code).toBe("INVALID_DATE");
    expect(errorOf(() => parseDateInput({ $date: null }, "UTC")).code).toBe("INVALID_DATE");
    const e = errorOf(() => parseDateInput({ $date: "2024-01-01", x: 1 }, "UTC", "D"));
    expect(e.code).toBe("INVALID_DATE");
    expect(e.message).toContain("no other key");
  });

  it("reads years 0001-0099 as themselves (not 19xx)", () => {
    expect(toIsoUtc(parseDateInput({ $date: "0050-06-01T00:00:00Z" }, "UTC")!)).toBe("0050-06-01T00:00:00.000Z");
  });

  it("agrees with Date.parse on UTC date-times (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: MIN_DATE_MS / 1000, max: MAX_DATE_MS / 1000 }), (s) => {
        const iso = new Date(s * 1000).toISOString();
        expect(parseDateInput({ $date: iso }, "Pacific/Chatham")).toBe(s * 1000);
        expect(parseDateInput(`$D_${s}`, "UTC")).toBe(s * 1000);
      }),
    );
  });

  it("reads an offset-less date-time back to the same wall clock in any zone (property)", () => {
    const zones = [
      "UTC",
      "Europe/Paris",
      "America/New_York",
      "Asia/Kolkata",
      "Australia/Lord_Howe",
      "America/Sao_Paulo",
      "Pacific/Apia",
    ];
    fc.assert(
      fc.property(fc.integer({ min: -2_000_000_000, max: 4_000_000_000 }), fc.constantFrom(...zones), (s, tz) => {
        const w = wallClockAt(s * 1000, tz);
        const p = (n: number, width = 2) => String(n).padStart(width, "0");
        const text = `${p(w.year, 4)}-${p(w.month)}-${p(w.day)}T${p(w.hour)}:${p(w.minute)}:${p(w.second)}`;
        const back = parseDateInput({ $date: text }, tz)!;
        expect(wallClockAt(back, tz)).toEqual(w);
        // The earlier instant of a repeated wall clock: never later than the original.
        expect(back).toBeLessThanOrEqual(s * 1000);
      }),
    );
  });
});

describe("time zone helpers", () => {
  it("computes offsets", () => {
    expect(timeZoneOffsetMs(utc("2024-07-01T00:00:00Z"), "UTC")).toBe(0);
    expect(timeZoneOffsetMs(utc("2024-07-01T00:00:00Z"), "Asia/Kolkata")).toBe(19_800_000);
    expect(timeZoneOffsetMs(utc("2024-07-01T00:00:00Z"), "America/New_York")).toBe(-4 * 3_600_000);
    expect(timeZoneOffsetMs(utc("2024-01-01T00:00:00Z"), "America/New_York")).toBe(-5 * 3_600_000);
  });

  it("agrees with a fresh Intl formatter at any instant, around transitions too (property)", () => {
    const zones = [
      "Europe/Paris",
      "America/New_York",
      "Australia/Lord_Howe",
      "Asia/Kathmandu",
      "Europe/Amsterdam",
      "Pacific/Apia",
    ];
    const oracle = (ms: number, tz: string) => {
      const parts = new Intl.DateTimeFormat("en-US", {
        timeZone: tz,
        hourCycle: "h23",
        year: "numeric",
        month: "numeric",
        day: "numeric",
        hour: "numeric",
        minute: "numeric",
        second: "numeric",
      }).formatToParts(new Date(ms));
      const get = (t: string) => Number(parts.find((p) => p.type === t)?.value);
      return {
        year: get("year"),
        month: get("month"),
        day: get("day"),
        hour: get("hour"),
        minute: get("minute"),
        second: get("second"),
      };
    };
    // Instants near 02:00 local on transition Sundays are the interesting ones; mix them with random ones.
    const near = fc
      .tuple(
        fc.constantFrom(
          utc("2024-03-31T01:00:00Z"),
          utc("2024-10-27T01:00:00Z"),
          utc("2024-03-10T07:00:00Z"),
          utc("2024-11-03T06:00:00Z"),
          utc("2024-04-06T15:00:00Z"),
        ),
        fc.integer({ min: -7200, max: 7200 }),
      )
      .map(([base, s]) => base + s * 1000);
    fc.assert(
      fc.property(
        fc.oneof(
          near,
          fc.integer({ min: -3_000_000_000, max: 4_000_000_000 }).map((s) => s * 1000),
        ),
        fc.constantFrom(...zones),
        (ms, tz) => {
          expect(wallClockAt(ms, tz)).toEqual(oracle(ms, tz));
        },
      ),
      { numRuns: 500 },
    );
  });

  it("takes the calendar date in a timezone", () => {
    expect(calendarDateIn(utc("2024-11-20T02:00:00Z"), "America/New_York")).toBe("2024-11-19");
    expect(calendarDateIn(utc("2024-11-20T02:00:00Z"), "UTC")).toBe("2024-11-20");
    expect(calendarDateIn(utc("1960-05-01T00:00:00Z"), "UTC")).toBe("1960-05-01");
  });

  it("validates IANA names", () => {
    expect(isValidTimeZone("Europe/Paris")).toBe(true);
    expect(isValidTimeZone("UTC")).toBe(true);
    expect(isValidTimeZone("America/Argentina/Salta")).toBe(true);
    expect(isValidTimeZone("Mars/Olympus")).toBe(false);
    expect(isValidTimeZone("+05:30")).toBe(false);
    expect(isValidTimeZone("")).toBe(false);
    expect(isValidTimeZone(5)).toBe(false);
  });

  it("refuses an unknown timezone when reading offset-less dates", () => {
    expect(errorOf(() => parseDateInput({ $date: "2024-01-01" }, "Mars/Olympus")).code).toBe("INVALID_TIMEZONE");
  });

  it("parseIso8601 keeps milliseconds and tells date-only values apart", () => {
    expect(parseIso8601("2024-11-20T10:00:00.1234Z", "UTC")).toEqual({
      ms: utc("2024-11-20T10:00:00.123Z"),
      dateOnly: false,
    });
    expect(parseIso8601("2024-11-20", "UTC")).toEqual({ ms: utc("2024-11-20T00:00:00Z"), dateOnly: true });
    expect(parseIso8601("nope", "UTC")).toBeNull();
  });
});

describe("Email", () => {
  it("trims and lower-cases", () => {
    expect(normaliseEmail("  Ana.Maria+news@Example.CO.uk ", "Email")).toBe("ana.maria+news@example.co.uk");
  });

  it.each([
    "ana",
    "ana@example",
    "@example.com",
    "ana@@example.com",
    "a@b@example.com",
    "ana maria@example.com",
    "ana@exa mple.com",
    "ana@.example.com",
    "ana@example..com",
    "ana@example.com.",
    "",
    `${"a".repeat(65)}@example.com`,
    `a@${"b".repeat(250)}.com`,
  ])("refuses %j with INVALID_EMAIL", (raw) => {
    const e = errorOf(() => normaliseEmail(raw, "Email"));
    expect(e.code).toBe("INVALID_EMAIL");
    expect(e.field).toBe("Email");
    expect(e.message).toContain("Email must be a valid address");
  });

  it("accepts a 254-character address and refuses 255", () => {
    const local = "a".repeat(64);
    const domain = (n: number) => `${"d".repeat(n - 4)}.com`;
    expect(isValidEmail(`${local}@${domain(254 - 65)}`)).toBe(true);
    expect(isValidEmail(`${local}@${domain(255 - 65)}`)).toBe(false);
  });
});

describe("Phone", () => {
  it("strips spaces and -(). then keeps E.164", () => {
    expect(normalisePhone("+49 (151) 234-567.89", "Phone")).toBe("+4915123456789");
    expect(normalisePhone("+12345678", "Phone")).toBe("+12345678");
    expect(normalisePhone("+123456789012345", "Phone")).toBe("+123456789012345");
  });

  it("refuses with the documented message", () => {
    const e = errorOf(() => normalisePhone("223", "Phone"));
    expect(e.code).toBe("INVALID_PHONE");
    expect(e.field).toBe("Phone");
    expect(e.message).toBe('Phone must be E.164 (+ then 8-15 digits), got "223"');
  });

  it.each([
    "+1234567",
    "+1234567890123456",
    "004915123456789",
    "15123456789",
    "+49abc12345",
    "++4915123456",
    "+49_151234567",
  ])("refuses %j", (raw) => {
    expect(errorOf(() => normalisePhone(raw, "Phone")).code).toBe("INVALID_PHONE");
  });
});

describe("Gender", () => {
  it.each([
    ["M", "M"],
    ["m", "M"],
    ["male", "M"],
    ["Man", "M"],
    ["F", "F"],
    ["FEMALE", "F"],
    ["woman", "F"],
    ["o", "O"],
    ["Other", "O"],
    ["u", "U"],
    [" unknown ", "U"],
  ])("normalises %j to %s", (raw, expected) => {
    expect(normaliseGender(raw, "Gender")).toBe(expected);
  });

  it.each(["X", "", "mal", "toString", 1, null, true])("refuses %j with INVALID_GENDER", (raw) => {
    const e = errorOf(() => normaliseGender(raw, "Gender"));
    expect(e.code).toBe("INVALID_GENDER");
    expect(e.field).toBe("Gender");
    expect(e.message).toContain("M, F, O, U");
  });
});

describe("isJunkIdentity", () => {
  it.each([
    "",
    "  ",
    "0",
    "-1",
    "null",
    "NULL",
    "undefined",
    "Undefined",
    "anonymous",
    "ANONYMOUS",
    "[object Object]",
    "[OBJECT OBJECT]",
    "NaN",
    "nan",
    " null ",
  ])("%j is junk", (v) => {
    expect(isJunkIdentity(v)).toBe(true);
  });

  it.each(["u-42", "00", "1", "-2", "nulls", "anon"])("%j is not junk", (v) => {
    expect(isJunkIdentity(v)).toBe(false);
  });
});

describe("normaliseIdentityValue", () => {
  it("makes Identity a trimmed string; a whole number becomes its decimal string", () => {
    expect(normaliseIdentityValue("Identity", " u-42 ", "Identity")).toBe("u-42");
    expect(normaliseIdentityValue("Identity", 42, "Identity")).toBe("42");
    expect(normaliseIdentityValue("Identity", -7, "Identity")).toBe("-7");
    expect(normaliseIdentityValue("FBID", 1234567890123, "FBID")).toBe("1234567890123");
    expect(normaliseIdentityValue("GPID", " g-1", "GPID")).toBe("g-1");
  });

  it("normalises Email and Phone", () => {
    expect(normaliseIdentityValue("Email", " A@X.io ", "Email")).toBe("a@x.io");
    expect(normaliseIdentityValue("Phone", "+33 6 12 34 56 78", "Phone")).toBe("+33612345678");
  });

  it.each([
    ["Identity", ""],
    ["Identity", 0],
    ["Identity", -1],
    ["Identity", "null"],
    ["Identity", "Anonymous"],
    ["Identity", "[object Object]"],
    ["FBID", "  "],
    ["GPID", "undefined"],
    ["Email", "NULL"],
    ["Email", " "],
    ["Phone", "0"],
    ["Phone", "-1"],
  ] as const)("refuses junk %s %j with INVALID_IDENTITY", (key, raw) => {
    const e = errorOf(() => normaliseIdentityValue(key, raw, `identity.${key}`));
    expect(e.code).toBe("INVALID_IDENTITY");
    expect(e.field).toBe(`identity.${key}`);
    expect(e.message).toContain(key);
  });

  it.each([
    ["Identity", null],
    ["Identity", true],
    ["Identity", { a: 1 }],
    ["Identity", ["u"]],
    ["Identity", Number.NaN],
    ["Identity", 1.5],
    ["Identity", 2 ** 53],
    ["FBID", undefined],
    ["Email", 42],
    ["Phone", 4915123456789],
  ] as const)("refuses the wrong type %s %j with INVALID_IDENTITY", (key, raw) => {
    expect(errorOf(() => normaliseIdentityValue(key, raw, key)).code).toBe("INVALID_IDENTITY");
  });

  it("keeps the Email and Phone format codes", () => {
    expect(errorOf(() => normaliseIdentityValue("Email", "not-an-email", "Email")).code).toBe("INVALID_EMAIL");
    expect(errorOf(() => normaliseIdentityValue("Phone", "223", "Phone")).code).toBe("INVALID_PHONE");
  });

  it("allows 512 characters and refuses 513", () => {
    expect(normaliseIdentityValue("Identity", "x".repeat(512), "Identity")).toHaveLength(512);
    const e = errorOf(() => normaliseIdentityValue("Identity", "x".repeat(513), "Identity"));
    expect(e.code).toBe("INVALID_IDENTITY");
    expect(e.message).toContain("512");
  });

  it("is idempotent (property)", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 40 }), (s) => {
        fc.pre(!isJunkIdentity(s));
        const once = normaliseIdentityValue("Identity", s, "Identity");
        expect(normaliseIdentityValue("Identity", once, "Identity")).toBe(once);
        expect(once).toBe(s.trim());
      }),
    );
  });
});

describe("describeValue", () => {
  it("names the type and shows the value", () => {
    expect(describeValue("abc")).toBe('string "abc"');
    expect(describeValue(5)).toBe("number 5");
    expect(describeValue(null)).toBe("null");
    expect(describeValue([1])).toBe("array [1]");
    expect(describeValue(Number.POSITIVE_INFINITY)).toBe("number Infinity");
  });
});
