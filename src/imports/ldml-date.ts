/**
 * Date patterns of CSV headers such as `Purchase Date<dd/MM/yyyy HH:mm>` (SEMANTICS §11 CSV cells): the letters of
 * Unicode LDML (the ones Java's DateTimeFormatter and ICU use), read in the account timezone unless the pattern has
 * an offset field. A pattern compiles once per column into a regular expression and a list of fields.
 *
 * Letters: `y` year (`yy` = 1969–2068), `M` month (`MMM` `Jan`, `MMMM` `January`), `d` day, `H` hour 0–23,
 * `h` hour 1–12 with `a` (AM/PM), `m` minute, `s` second, `S` fraction of a second, `X`/`x`/`Z` offset
 * (`Z`, `+01`, `+0100`, `+01:00`), `E` day name (read and ignored). Text in single quotes is literal (`''` is a quote);
 * other letters are refused so that a typo never silently reads dates wrong.
 */
import { zonedWallClockToEpoch } from "../engine/properties/values.js";

const MONTHS = [
  "january",
  "february",
  "march",
  "april",
  "may",
  "june",
  "july",
  "august",
  "september",
  "october",
  "november",
  "december",
];

type Field =
  | "year"
  | "year2"
  | "month"
  | "monthName"
  | "day"
  | "hour"
  | "hour12"
  | "ampm"
  | "minute"
  | "second"
  | "fraction"
  | "offset"
  | "dayName";

export interface DatePattern {
  source: string;
  regex: RegExp;
  fields: Field[];
}

export class PatternError extends Error {}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** Compiles a pattern, or throws PatternError saying which letter is not understood. */
export function compileDatePattern(pattern: string): DatePattern {
  let re = "";
  const fields: Field[] = [];
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i] as string;
    if (c === "'") {
      const close = pattern.indexOf("'", i + 1);
      if (close === i + 1) {
        re += "'";
        i += 2;
        continue;
      }
      if (close < 0) throw new PatternError(`date pattern ${JSON.stringify(pattern)} has an unclosed quote`);
      re += escapeRegex(pattern.slice(i + 1, close));
      i = close + 1;
      continue;
    }
    if (!/[A-Za-z]/.test(c)) {
      re += escapeRegex(c);
      i++;
      continue;
    }
    let width = 1;
    while (pattern[i + width] === c) width++;
    i += width;
    const add = (field: Field, part: string) => {
      fields.push(field);
      re += `(${part})`;
    };
    switch (c) {
      case "y":
      case "u":
        if (width === 2) add("year2", "\\d{2}");
        else add("year", width === 1 ? "\\d{1,4}" : `\\d{${width}}`);
        break;
      case "M":
      case "L":
        if (width <= 2) add("month", width === 1 ? "\\d{1,2}" : "\\d{2}");
        else add("monthName", "[A-Za-z]+\\.?");
        break;
      case "d":
        add("day", width === 1 ? "\\d{1,2}" : "\\d{2}");
        break;
      case "H":
        add("hour", width === 1 ? "\\d{1,2}" : "\\d{2}");
        break;
      case "h":
        add("hour12", width === 1 ? "\\d{1,2}" : "\\d{2}");
        break;
      case "a":
        add("ampm", "[AaPp]\\.?[Mm]\\.?");
        break;
      case "m":
        add("minute", width === 1 ? "\\d{1,2}" : "\\d{2}");
        break;
      case "s":
        add("second", width === 1 ? "\\d{1,2}" : "\\d{2}");
        break;
      case "S":
        add("fraction", `\\d{1,${Math.max(width, 9)}}`);
        break;
      case "X":
      case "x":
      case "Z":
        add("offset", "Z|z|[+-]\\d{2}(?::?\\d{2})?");
        break;
      case "E":
        add("dayName", "[A-Za-z]+\\.?");
        break;
      default:
        throw new PatternError(
          `date pattern ${JSON.stringify(pattern)}: the letter ${JSON.stringify(c)} is not a date field (quote literal text with '…')`,
        );
    }
  }
  if (!fields.includes("year") && !fields.includes("year2")) {
    throw new PatternError(`date pattern ${JSON.stringify(pattern)} has no year (y)`);
  }
  if (fields.includes("hour12") && !fields.includes("ampm")) {
    throw new PatternError(`date pattern ${JSON.stringify(pattern)} uses h (1-12) without a (AM/PM); use H for 0-23`);
  }
  return { source: pattern, regex: new RegExp(`^${re}$`), fields };
}

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Epoch ms of `text` read with `pattern` in `timezone`, or null when the text does not fit the pattern. */
export function parseWithPattern(text: string, pattern: DatePattern, timezone: string): number | null {
  const m = pattern.regex.exec(text.trim());
  if (!m) return null;
  let year = 0;
  let month = 1;
  let day = 1;
  let hour = 0;
  let minute = 0;
  let second = 0;
  let millis = 0;
  let pm: boolean | null = null;
  let offset: number | null = null;
  for (const [i, field] of pattern.fields.entries()) {
    const part = m[i + 1] as string;
    switch (field) {
      case "year":
        year = Number(part);
        break;
      case "year2": {
        const yy = Number(part);
        year = yy < 69 ? 2000 + yy : 1900 + yy;
        break;
      }
      case "month":
        month = Number(part);
        break;
      case "monthName": {
        const name = part.replace(".", "").toLowerCase();
        const index = MONTHS.findIndex((full) => full === name || (name.length >= 3 && full.startsWith(name)));
        if (index < 0) return null;
        month = index + 1;
        break;
      }
      case "day":
        day = Number(part);
        break;
      case "hour":
        hour = Number(part);
        break;
      case "hour12":
        hour = Number(part);
        if (hour < 1 || hour > 12) return null;
        break;
      case "ampm":
        pm = part[0]?.toLowerCase() === "p";
        break;
      case "minute":
        minute = Number(part);
        break;
      case "second":
        second = Number(part);
        break;
      case "fraction":
        millis = Number(part.slice(0, 3).padEnd(3, "0"));
        break;
      case "offset":
        if (part === "Z" || part === "z") offset = 0;
        else {
          const digits = part.slice(1).replace(":", "");
          const oh = Number(digits.slice(0, 2));
          const om = Number(digits.slice(2) || "0");
          if (oh > 23 || om > 59) return null;
          offset = (part[0] === "-" ? -1 : 1) * (oh * 60 + om) * 60_000;
        }
        break;
      case "dayName":
        break;
    }
  }
  if (pm !== null) hour = (hour % 12) + (pm ? 12 : 0);
  if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 59) return null;
  const ms =
    offset === null
      ? zonedWallClockToEpoch({ year, month, day, hour, minute, second }, timezone)
      : Date.UTC(year, month - 1, day, hour, minute, second) - offset;
  return ms + millis;
}
