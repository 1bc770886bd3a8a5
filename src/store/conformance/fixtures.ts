/** Small factories for store tests: plain data, no store calls. */
import { randomBytes } from "node:crypto";
import type { Account, ProfileState } from "../../engine/types.js";
import { DEFAULT_SETTINGS } from "../../engine/types.js";

/** A profile id as Portrait makes them (SEMANTICS §2: 32 lowercase hex characters). */
export function newId(): string {
  return randomBytes(16).toString("hex");
}

export function newAccount(at = 1_700_000_000_000): Account {
  return {
    id: `acct_${newId()}`,
    name: "Test account",
    settings: structuredClone(DEFAULT_SETTINGS),
    createdAt: at,
  };
}

/** A profile as the engine creates it before anything is applied. */
export function blankProfile(id = newId(), at = 1_700_000_000_000): ProfileState {
  return {
    id,
    props: {},
    identities: {},
    createdAt: at,
    updatedAt: at,
    firstSeen: null,
    lastSeen: null,
    acquiredFrom: null,
    acquiredTs: null,
    acquiredKind: null,
    location: { city: null, region: null, country: null, lat: null, lon: null },
    timezoneFromContext: false,
    bucket: 0,
    flags: { test: false, controlGroupExcluded: false },
    stats: { events: 0, charged: 0, revenue: 0 },
    orphanOf: null,
    mergedInto: null,
    journalMergeId: null,
  };
}

/** A profile using every part of ProfileState, to check that a store keeps all of it. */
export function fullProfile(id = newId(), at = 1_700_000_000_000): ProfileState {
  return {
    ...blankProfile(id, at),
    props: {
      Name: { v: "Ada Lovelace", t: "string", ts: at },
      Email: { v: "ada@example.com", t: "string", ts: at + 1 },
      Score: { v: 41.5, t: "number", ts: at, counter: true },
      "MSG-email": { v: false, t: "boolean", ts: at },
      DOB: { v: "1990-12-10", t: "date", ts: at },
      Signup: { v: 1_600_000_000_000, t: "date", ts: at },
      Tags: { v: ["a", "b", "ünïcødé ✓"], t: "multi", ts: at + 2 },
      Address: { v: { city: "London", geo: { lat: 51.5, ok: true }, list: [1, "x"] }, t: "object", ts: at },
      Gone: { ts: at + 3 },
    },
    identities: {
      Email: [{ value: "ada@example.com", ts: at + 1 }],
      Phone: [
        { value: "+447700900001", ts: at },
        { value: "+447700900002", ts: at + 5 },
      ],
    },
    updatedAt: at + 10,
    firstSeen: at - 1000,
    lastSeen: at + 9,
    acquiredFrom: "newsletter",
    acquiredTs: at - 1000,
    acquiredKind: "utm",
    timezoneFromContext: true,
    location: { city: "London", region: "England", country: "GB", lat: 51.5072, lon: -0.1276 },
    bucket: 742,
    flags: { test: true, controlGroupExcluded: true },
    stats: { events: 12, charged: 2, revenue: 99.9 },
    journalMergeId: "0f".repeat(16),
  };
}
