/**
 * `sentAt` of an SDK batch (docs/semantics.md "Records and idempotency"): the sender's clock when it sent the batch,
 * in epoch seconds. A browser's clock can be days off, and its records' ts with it: a fast clock had every record
 * refused (ts more than a day ahead), a slow one lost every last-writer-wins comparison. The difference from the
 * server's clock is the skew, and every numeric ts of the batch is moved by it when the record is parsed (as Segment
 * does with its sentAt), so that a record keeps its age as the browser measured it.
 */
import { fail } from "./errors.js";
import { describeValue, MAX_DATE_MS } from "./properties/values.js";

/** Closer than this, the sender's clock is taken as right: network time, not skew (and no shift for nothing). */
export const CLOCK_SKEW_TOLERANCE_MS = 10_000;

/** A batch's skew: numeric record ts are moved by `ms` (the server's clock minus `sentAt`). */
export interface ClockSkew {
  /** sentAt as sent (epoch seconds), for error messages. */
  sentAt: number;
  /** Whole milliseconds to add to each numeric ts. */
  ms: number;
}

/**
 * A batch's sentAt: absent is undefined; anything else must be epoch seconds as a finite JSON number, inside the range
 * of a date a record ts can name (after 1970-01-01T00:00:00Z, as a ts must be, up to 9999-12-31T23:59:59Z, the last
 * date Portrait keeps). The upper bound is not a ts's "at most a day ahead": a browser's clock days fast is what
 * sentAt is for. Any other value refuses the whole batch (INVALID_VALUE, field sentAt): the skew it would give is
 * meaningless, and was once ignored without a word or moved every ts out of range, blamed on `ts`.
 */
export function readSentAt(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const bad = (problem: string): never =>
    fail("INVALID_VALUE", `sentAt must be ${problem}, got ${describeValue(value)}`, "sentAt");
  if (typeof value !== "number" || !Number.isFinite(value)) {
    return bad("the sender's clock in epoch seconds, as a JSON number such as 1732000000.5");
  }
  const ms = Math.round(value * 1000);
  if (ms <= 0) return bad("epoch seconds after 1970-01-01T00:00:00Z");
  if (ms > MAX_DATE_MS)
    return bad("epoch seconds (not milliseconds) no later than 9999-12-31T23:59:59Z (253402300799)");
  return value;
}

/** The skew of a batch sent at `sentAt` (epoch seconds) and read at `now` (epoch ms); none within the tolerance. */
export function clockSkewOf(sentAt: number | undefined, now: number): ClockSkew | undefined {
  if (sentAt === undefined) return undefined;
  const ms = now - Math.round(sentAt * 1000);
  return Math.abs(ms) <= CLOCK_SKEW_TOLERANCE_MS ? undefined : { sentAt, ms };
}
