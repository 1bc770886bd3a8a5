/** Time and randomness, injected so tests and benchmarks can fix them. */
import { randomBytes, randomInt } from "node:crypto";

export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export interface IdSource {
  /** 32 lowercase hex characters (SEMANTICS §2). */
  profileId(): string;
  /** 0–999, fixed at creation. */
  bucket(): number;
  opaque(): string;
  /** Ids for events without a client id: unique, cheap (a random process prefix and a counter). */
  eventId(): string;
}

const processPrefix = randomBytes(6).toString("hex");
let eventCounter = 0;

export const randomIds: IdSource = {
  profileId: () => randomBytes(16).toString("hex"),
  bucket: () => randomInt(0, 1000),
  opaque: () => randomBytes(12).toString("hex"),
  eventId: () => `e-${processPrefix}-${(eventCounter++).toString(36)}`,
};
