/**
 * Seeded, deterministic benchmark data: ingest records as the API takes them (serialised once, before a run)
 * and the matching rows for the raw-store baselines.
 */
import { Prng } from "./prng.js";

/** Record times are spread over the 30 days before the bench started (ingest refuses times > 1 day ahead). */
export const BENCH_NOW_SECONDS = Math.floor(Date.now() / 1000);
const THIRTY_DAYS = 30 * 86_400;

const EVENT_NAMES = [
  "Product Viewed",
  "Added To Cart",
  "Search",
  "Page Viewed",
  "Video Played",
  "Checkout Started",
  "Coupon Applied",
  "Wishlist Added",
] as const;
const CATEGORIES = ["shoes", "shirts", "bags", "hats", "watches", "books", "toys", "phones"] as const;
const SOURCES = ["web", "ios", "android"] as const;
const CITIES = ["Paris", "Lyon", "Berlin", "Madrid", "Lisbon", "Rome", "Oslo", "Dublin", "Vienna", "Prague"] as const;
const PLANS = ["free", "basic", "pro", "team"] as const;

export function deviceId(scenario: string, n: number): string {
  return `${scenario}-dev-${n}`;
}

export function emailOf(scenario: string, n: number): string {
  return `${scenario}-person-${n}@example.com`;
}

export interface EventInput {
  type: "event";
  deviceId?: string;
  profileId?: string;
  name: string;
  ts: number;
  properties: Record<string, string | number | boolean>;
}

/** One event record with a handful of typed properties (names and shapes vary, types per name stay fixed). */
export function eventRecord(rng: Prng, handle: { deviceId: string } | { profileId: string }): EventInput {
  return {
    type: "event",
    ...handle,
    name: rng.pick(EVENT_NAMES),
    ts: BENCH_NOW_SECONDS - rng.int(THIRTY_DAYS),
    properties: {
      Product: `Product ${rng.int(5000)}`,
      Category: rng.pick(CATEGORIES),
      Price: rng.price(1, 500),
      Quantity: 1 + rng.int(5),
      Source: rng.pick(SOURCES),
      Promo: rng.next() < 0.2,
    },
  };
}

/** `{"records":[…]}` as the bytes sent. */
export function batchBody(records: unknown[]): Buffer {
  return Buffer.from(JSON.stringify({ records }));
}

/** Batches of one first event per device, so that every device is known (anonymous profiles) before the load. */
export function* deviceSetupBatches(scenario: string, devices: number, seed: number, size = 1000): Generator<string> {
  const rng = new Prng(seed);
  for (let start = 0; start < devices; start += size) {
    const records: EventInput[] = [];
    for (let n = start; n < Math.min(devices, start + size); n++) {
      records.push(eventRecord(rng, { deviceId: deviceId(scenario, n) }));
    }
    yield JSON.stringify({ records });
  }
}

/** Profile properties of a generated person (Email is the identity the lookups use). */
export function personProperties(rng: Prng, scenario: string, n: number): Record<string, string | number | boolean> {
  return {
    Email: emailOf(scenario, n),
    Name: `Person ${n}`,
    City: rng.pick(CITIES),
    Plan: rng.pick(PLANS),
    Score: rng.int(1000),
    Newsletter: rng.next() < 0.5,
  };
}

export { CITIES, EVENT_NAMES, PLANS };
