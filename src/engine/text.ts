/**
 * Text both stores can keep: no NUL character and no unpaired UTF-16 surrogate (PostgreSQL refuses both, and
 * neither is meaningful text). Checked once at the edge so a record fails cleanly instead of a whole batch later.
 * The same walk refuses JSON nested deeper than any valid input needs: a 10 KB body of nested brackets would
 * otherwise overflow the stack of every recursive reader after it.
 */
import { PortraitError } from "./errors.js";

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching NUL is the point of this pattern
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Deeper than any valid record, document or segment (nested properties stop at 3, segments at 10). */
export const MAX_JSON_DEPTH = 64;

/** The first fault found: what it is, and the keys and indexes that lead to it, innermost first. */
interface Fault {
  kind: "key" | "value" | "depth" | "number";
  steps: Array<string | number>;
  /** A number JSON.parse made -Infinity (its digits are gone; only its sign is known). */
  negative?: boolean;
}

export function assertStorableText(input: unknown, field = ""): void {
  const fault = faultIn(input);
  if (fault === null) return;
  let path = field;
  for (let i = fault.steps.length - 1; i >= 0; i--) {
    const step = fault.steps[i]!;
    path = typeof step === "number" ? `${path}[${step}]` : path ? `${path}.${step}` : step;
  }
  if (fault.kind === "key") {
    throw new PortraitError(
      "INVALID_KEY",
      "a key must not be __proto__ or contain NUL characters or unpaired surrogates",
      path,
    );
  }
  if (fault.kind === "number") {
    // JSON.parse reads 1e400 as Infinity, which JSON.stringify would store as null. The digits sent are gone by now:
    // the message says what is known of them (the sign, and that the magnitude is past the largest double).
    throw new PortraitError(
      "INVALID_VALUE",
      `numbers must be finite: got a number ${fault.negative ? "below -" : "above "}${Number.MAX_VALUE}, beyond a double`,
      path || undefined,
    );
  }
  if (fault.kind === "depth") {
    throw new PortraitError("NESTING_TOO_DEEP", `JSON must not nest more than ${MAX_JSON_DEPTH} levels`, path);
  }
  throw new PortraitError(
    "INVALID_VALUE",
    "text must not contain NUL characters or unpaired surrogates",
    path || undefined,
  );
}

/**
 * Every record of every batch passes here, and almost all are clean: the walk allocates nothing on the way down, and
 * the path of a fault is gathered only on the way back up from one.
 */
function faultIn(input: unknown, depth = 0): Fault | null {
  if (typeof input === "string") return UNSTORABLE.test(input) ? { kind: "value", steps: [] } : null;
  if (typeof input === "number") {
    return Number.isFinite(input) ? null : { kind: "number", steps: [], negative: input < 0 };
  }
  if (typeof input !== "object" || input === null) return null;
  if (depth === MAX_JSON_DEPTH) return { kind: "depth", steps: [] };
  if (Array.isArray(input)) {
    for (let i = 0; i < input.length; i++) {
      const fault = faultIn(input[i], depth + 1);
      if (fault !== null) {
        fault.steps.push(i);
        return fault;
      }
    }
    return null;
  }
  const record = input as Record<string, unknown>;
  for (const key in record) {
    if (!Object.hasOwn(record, key)) continue;
    // JSON.parse makes `__proto__` an own key; code that copies keys by assignment would turn it into a prototype.
    if (UNSTORABLE.test(key) || key === "__proto__") return { kind: "key", steps: [key] };
    const fault = faultIn(record[key], depth + 1);
    if (fault !== null) {
      fault.steps.push(key);
      return fault;
    }
  }
  return null;
}

/**
 * Orders two strings by Unicode code point (SEMANTICS §11), which is how both stores compare text: SQLite's BINARY
 * collation compares UTF-8 bytes and PostgreSQL's "C" collation does too, and UTF-8 byte order is code point order.
 * JavaScript's `<` compares UTF-16 code units instead, which puts every character above U+FFFF (a surrogate pair,
 * D800–DFFF) before U+E000–U+FFFF. Negative, zero or positive, like a sort comparator.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Equal up to here, so both stand at the start of a code point or both inside the same pair; only a surrogate
    // against U+E000–U+FFFF is ordered differently by code units, and lifting surrogates above U+FFFF fixes that.
    if (x >= 0xd800 && y >= 0xd800) return liftSurrogate(x) - liftSurrogate(y);
    return x - y;
  }
  return a.length - b.length;
}

function liftSurrogate(unit: number): number {
  return unit <= 0xdfff ? unit + 0x10000 : unit;
}
