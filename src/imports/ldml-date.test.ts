import { describe, expect, it } from "vitest";
import { compileDatePattern, PatternError, parseWithPattern } from "./ldml-date.js";

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

describe("LDML date patterns (SEMANTICS §11 CSV cells)", () => {
  it.each([
    ["dd/MM/yyyy", "31/12/2024", "UTC", "2024-12-31T00:00:00.000Z"],
    ["dd/MM/yyyy", "31/12/2024", "Europe/Paris", "2024-12-30T23:00:00.000Z"],
    ["dd/MM/yyyy HH:mm:ss", "01/07/2024 12:30:15", "Europe/Paris", "2024-07-01T10:30:15.000Z"],
    ["d/M/yy", "5/3/24", "UTC", "2024-03-05T00:00:00.000Z"],
    ["d/M/yy", "5/3/75", "UTC", "1975-03-05T00:00:00.000Z"],
    ["MMM d, yyyy h:mm a", "Feb 3, 2020 1:05 PM", "UTC", "2020-02-03T13:05:00.000Z"],
    ["MMMM d yyyy", "september 9 2021", "UTC", "2021-09-09T00:00:00.000Z"],
    ["yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2024-11-20T10:00:00.250+02:00", "Asia/Tokyo", "2024-11-20T08:00:00.250Z"],
    ["yyyyMMdd", "20240229", "UTC", "2024-02-29T00:00:00.000Z"],
    ["EEE dd.MM.yyyy", "Mon 02.12.2024", "UTC", "2024-12-02T00:00:00.000Z"],
  ])("%s reads %s in %s", (pattern, text, tz, expected) => {
    expect(iso(parseWithPattern(text, compileDatePattern(pattern), tz))).toBe(expected);
  });

  it.each([
    ["dd/MM/yyyy", "31/02/2024"],
    ["dd/MM/yyyy", "2024-01-01"],
    ["dd/MM/yyyy", "1/1/2024 "],
    ["HH:mm dd/MM/yyyy", "25:00 01/01/2024"],
    ["MMM yyyy", "Foo 2024"],
    ["dd/MM/yyyy", ""],
  ])("%s refuses %j", (pattern, text) => {
    const value = parseWithPattern(text, compileDatePattern(pattern), "UTC");
    if (text === "1/1/2024 ") expect(value).toBeNull();
    else expect(value).toBeNull();
  });

  it.each(["dd/MM", "qq/yyyy", "yyyy 'open", "hh:mm yyyy"])("refuses the pattern %s", (pattern) => {
    expect(() => compileDatePattern(pattern)).toThrow(PatternError);
  });
});
