/**
 * A store that holds some of everything Portrait keeps, made through the HTTP API of a running test server as users
 * make it: settings changed, anonymous visits, the four login cases (with an orphan), profile pushes with every
 * property operation and type, events with client ids and Charged events, an explicit merge with records journalled
 * after it, a merge under `mergePolicy: merge`, compartment documents, imports (with refused rows, and by email hash),
 * extra keys (one revoked), an SFTP key, a test profile, a control-group exclusion, saved segments, a deleted person,
 * and a second account. For tests of what must survive a store's move (store/copy/).
 */
import { createHash, generateKeyPairSync } from "node:crypto";
import { expect } from "vitest";
import { accounts } from "./accounts.js";
import { failuresCsv, runImport } from "./imports.js";
import type { TestServer } from "./server.js";

// biome-ignore lint/suspicious/noExplicitAny: response bodies of every shape
type AnyBody = any;

export interface RichStore {
  /** Profiles by role (ids). */
  ana: string;
  ben: string;
  mergeTarget: string;
  mergeSource: string;
  /** The explicit merge, made with records journalled after it (undoable). */
  mergeId: string;
  /** A record id already applied (a profile push adding 5 Points to Ana). */
  appliedRecordId: string;
  /** The record it was, to send again. */
  appliedRecord: unknown;
  /** A live secret key made with POST /v1/keys, and one revoked. */
  secretKey: string;
  revokedKey: string;
  /** The second account and its secret key. */
  other: { id: string; secretKey: string };
  /** The newest event's time (epoch seconds) on Ana's timeline. */
  anaNewestTs: number;
}

/** An SSH public key line as POST /v1/sftp/keys takes it. */
export function sshEd25519(): string {
  const raw = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const field = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  return `ssh-ed25519 ${Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]).toString("base64")} laptop`;
}

async function ok(s: TestServer, method: string, path: string, body?: unknown): Promise<AnyBody> {
  const r = await s.api(method, path, body);
  expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBeLessThan(300);
  return r.body;
}

async function ingest(s: TestServer, ...records: unknown[]): Promise<AnyBody> {
  const r = await ok(s, "POST", "/v1/ingest", { records });
  expect(r.unprocessed, JSON.stringify(r.unprocessed)).toEqual([]);
  return r;
}

async function profileBy(s: TestServer, query: string): Promise<string> {
  const r = await ok(s, "GET", `/v1/profiles?${query}`);
  expect(r.profiles, query).toHaveLength(1);
  return r.profiles[0].id;
}

export async function fillRichStore(s: TestServer): Promise<RichStore> {
  const now = Math.floor(Date.now() / 1000);
  const day = 86_400;
  await ok(s, "PATCH", "/v1/account/settings", {
    identityKeys: ["Identity", "Email", "Phone"],
    identityLimits: { Email: 2 },
    timezone: "Europe/Paris",
    publicProperties: ["Name", "Plan"],
    allowedOrigins: ["https://shop.example"],
  });

  // Anonymous visits, with context (UTM, timezone, location, platform) and a push token.
  const context = {
    timezone: "America/New_York",
    utm_source: "newsletter",
    platform: "web",
    location: { city: "Lyon", country: "FR", lat: 45.76, lon: 4.83 },
  };
  await ingest(
    s,
    { type: "event", deviceId: "d-ana", name: "Page Viewed", ts: now - 9 * day, properties: { Page: "/" }, context },
    { type: "event", deviceId: "d-ana", name: "Product Viewed", id: "ev-1", ts: now - 8 * day, properties: { Sku: 7 } },
    { type: "profile", deviceId: "d-ana", ts: now - 8 * day, properties: { Name: "Anonymous Ana", Visits: 1 } },
    { type: "token", deviceId: "d-ana", channel: "push", token: "tok-ana" },
    { type: "event", deviceId: "d-lurker", name: "Page Viewed", ts: now - 7 * day, properties: { Page: "/pricing" } },
    { type: "event", deviceId: "d-stranger", name: "App Launched", ts: now - 7 * day, context: { platform: "ios" } },
  );

  // Login case 1: an anonymous device takes the identities.
  const case1 = await ingest(s, {
    type: "login",
    deviceId: "d-ana",
    ts: now - 6 * day,
    properties: { Identity: "u-ana", Email: "Ana@Example.com", Name: "Ana" },
  });
  expect(case1.results[0].outcome).toBe("identified");
  const ana = await profileBy(s, "identity=u-ana");
  // Case 2: another anonymous device logs in as Ana: it switches, and leaves an orphan with its visit.
  const case2 = await ingest(s, {
    type: "login",
    deviceId: "d-lurker",
    ts: now - 6 * day,
    properties: { Email: "ana@example.com" },
  });
  expect(case2.results[0].outcome).toBe("switched");
  // Case 3: Ana again, with a phone and a second email (Email keeps 2).
  const case3 = await ingest(s, {
    type: "login",
    deviceId: "d-ana",
    ts: now - 5 * day,
    properties: { Identity: "u-ana", Phone: "+33 6 12 34 56 78", Email: "ana@work.example" },
  });
  expect(case3.results[0].outcome).toBe("appended");
  // Case 4: someone else on Ana's device: a new identified profile, Ana untouched.
  const case4 = await ingest(s, {
    type: "login",
    deviceId: "d-ana",
    ts: now - 5 * day,
    properties: { Identity: "u-ben", Name: "Ben" },
  });
  expect(case4.results[0].outcome).toBe("created");
  const ben = await profileBy(s, "identity=u-ben");

  // Every property operation and type, on Ana by identity.
  const appliedRecordId = "rec-points-once";
  const appliedRecord = {
    type: "profile",
    id: appliedRecordId,
    identity: { Identity: "u-ana" },
    properties: { Points: { $incr: 5 } },
  };
  await ingest(
    s,
    {
      type: "profile",
      identity: { Identity: "u-ana" },
      ts: now - 4 * day,
      properties: {
        Points: { $incr: 10 },
        Tags: { $add: ["vip", "early"] },
        Plan: "pro",
        Score: 3.5,
        Active: true,
        Signup: "$D_1700000000",
        Renewal: { $date: "2026-01-15T10:00:00Z" },
        DOB: "1990-05-17",
        Gender: "female",
        "Customer Type": "Silver",
        "MSG-email": true,
        Address: { city: "Paris", geo: { lat: 48.85, lon: 2.35 } },
        Gone: "soon",
        Unicode: "café – 東京 – 😀",
      },
    },
    {
      type: "profile",
      identity: { Identity: "u-ana" },
      ts: now - 3 * day,
      properties: {
        Points: { $decr: 3 },
        Tags: { $remove: "early" },
        Colors: { $set: ["red", "blue"] },
        First: { $setOnce: "one" },
        Gone: { $delete: true },
      },
    },
    { type: "profile", identity: { Identity: "u-ana" }, properties: { First: { $setOnce: "two" } } },
    // A late set (older ts) does not overwrite the newer Plan.
    { type: "profile", identity: { Identity: "u-ana" }, ts: now - 20 * day, properties: { Plan: "free" } },
    appliedRecord,
    { type: "profile", identity: { Identity: "u-ben" }, properties: { Plan: "free", Points: { $incr: 1 } } },
  );

  // Events with client ids, Charged (a repeated Charged ID is stored once), and a duplicate event id.
  const charged = (id: string, chargedId: string, amount: number, ts: number) => ({
    type: "event",
    identity: { Identity: "u-ana" },
    name: "Charged",
    id,
    ts,
    properties: {
      Amount: amount,
      "Payment Mode": "card",
      "Charged ID": chargedId,
      Items: [
        { Sku: "s-1", Qty: 2, Price: 10.5 },
        { Sku: "s-2", Qty: 1, Price: 38.9 },
      ],
    },
  });
  await ingest(
    s,
    charged("chg-1", "order-1", 59.9, now - 2 * day),
    charged("chg-2", "order-1", 59.9, now - 2 * day + 60),
    charged("chg-3", "order-2", 12, now - day),
    {
      type: "event",
      identity: { Identity: "u-ana" },
      name: "Search",
      id: "ev-2",
      ts: now - day,
      properties: { Q: "x" },
    },
    {
      type: "event",
      identity: { Identity: "u-ana" },
      name: "Search",
      id: "ev-2",
      ts: now - day,
      properties: { Q: "x" },
    },
    { type: "event", identity: { Identity: "u-ben" }, name: "Search", ts: now - day, properties: { Q: "shoes" } },
  );

  // An explicit merge, then records applied to the merged profile (journalled: some by the source's id).
  await ingest(
    s,
    { type: "profile", identity: { Identity: "u-carl" }, ts: now - 4 * day, properties: { Name: "Carl", Score: 1 } },
    { type: "event", identity: { Identity: "u-carl" }, name: "Search", ts: now - 4 * day, properties: { Q: "c" } },
    { type: "profile", identity: { Identity: "u-carl2" }, ts: now - 3 * day, properties: { Name: "C.", Level: 2 } },
    { type: "event", identity: { Identity: "u-carl2" }, name: "Search", ts: now - 3 * day, properties: { Q: "c2" } },
  );
  const mergeTarget = await profileBy(s, "identity=u-carl");
  const mergeSource = await profileBy(s, "identity=u-carl2");
  const merged = await ok(s, "POST", "/v1/profiles/merge", { targetId: mergeTarget, sourceId: mergeSource });
  await ingest(
    s,
    { type: "profile", profileId: mergeSource, ts: now - 2 * day, properties: { Level: { $incr: 1 } } },
    { type: "event", profileId: mergeTarget, name: "Search", ts: now - 2 * day, properties: { Q: "after" } },
    { type: "event", identity: { Identity: "u-carl2" }, name: "Page Viewed", ts: now - 2 * day },
  );

  // A merge under mergePolicy: merge (a push naming an identity another profile owns).
  await ingest(
    s,
    { type: "profile", identity: { Identity: "u-dora" }, ts: now - 4 * day, properties: { Name: "Dora" } },
    { type: "profile", identity: { Email: "dora@example.com" }, ts: now - 4 * day, properties: { City: "Oslo" } },
  );
  await ok(s, "PATCH", "/v1/account/settings", { mergePolicy: "merge" });
  await ingest(s, {
    type: "profile",
    identity: { Identity: "u-dora" },
    ts: now - 3 * day,
    properties: { Email: "dora@example.com" },
  });
  await ok(s, "PATCH", "/v1/account/settings", { mergePolicy: "reject" });

  // Compartment documents.
  await ok(s, "PUT", `/v1/profiles/${ana}/documents/default/crm-ana`, { tier: "gold", prefs: { news: true } });
  await ok(s, "PUT", `/v1/profiles/${ben}/documents/1606/crm-ben`, { newsletter_options: { subscribed: false } });

  // Imports: profiles CSV with a refused row, and documents by email hash (which fills email_hashes).
  const csv = [
    "Identity,Email,Phone,Plan,Score<number>",
    "u-eve,eve@example.com,+4915112345678,team,7",
    "u-fay,fay@example.com,223,free,2",
    "u-gus,gus@example.com,,pro,9",
    "",
  ].join("\n");
  const profilesImport = await runImport(s, "profiles", csv);
  expect(profilesImport).toMatchObject({ status: "done", processed: 2, failed: 1 });
  expect(await failuresCsv(s, profilesImport.id)).toMatch(/INVALID_PHONE/);
  const hash = createHash("sha256").update("eve@example.com").digest("hex");
  const lines = [
    { operation: "UPSERT", compartment_id: "7", email_hash: hash, user_profile: { tier: "B" } },
    { operation: "UPSERT", compartment_id: "7", email_hash: "0".repeat(64), user_profile: {} },
  ];
  await runImport(s, "documents", `${lines.map((l) => JSON.stringify(l)).join("\n")}\n`, "application/x-ndjson");

  // Keys: one more secret and public, one revoked; an SFTP key.
  const secret = await ok(s, "POST", "/v1/keys", { kind: "secret", name: "ops" });
  await ok(s, "POST", "/v1/keys", { kind: "public", name: "web-2" });
  const revoked = await ok(s, "POST", "/v1/keys", { kind: "secret", name: "leaked" });
  await ok(s, "DELETE", `/v1/keys/${revoked.id}`);
  await ok(s, "POST", "/v1/sftp/keys", { name: "laptop", publicKey: sshEd25519() });

  // Flags: a test profile and a control-group exclusion.
  await ok(s, "PUT", `/v1/profiles/${ben}/test`, { test: true });
  await ok(s, "PUT", `/v1/profiles/${ana}/control-group-exclusion`, { excluded: true });

  // Saved segments, one naming the other.
  const pro = await ok(s, "POST", "/v1/segments", {
    name: "pro plan",
    where: { property: "Plan", op: "eq", value: "pro" },
  });
  await ok(s, "POST", "/v1/segments", {
    name: "pro buyers",
    where: { all: [{ inSegment: pro.id }, { did: "Charged", count: { op: "gte", value: 1 } }] },
  });

  // A second account with a little of its own.
  const created = await accounts(s);
  const other = { id: created.account.id, secretKey: created.secretKey };
  const r = await fetch(`${s.url}/v1/ingest`, {
    method: "POST",
    headers: { authorization: `Bearer ${other.secretKey}`, "content-type": "application/json" },
    body: JSON.stringify({
      records: [
        { type: "login", deviceId: "d-ana", properties: { Identity: "u-ana", Name: "Other Ana" } },
        { type: "event", deviceId: "d-ana", name: "Search", id: "ev-1", properties: { Q: "other" } },
      ],
    }),
  });
  expect(r.status).toBe(200);

  // Last, a deleted person, whose events were the newest of all: the seq high-water stays above every seq left.
  await ingest(
    s,
    { type: "profile", identity: { Identity: "u-gone" }, properties: { Name: "Gone" } },
    { type: "event", identity: { Identity: "u-gone" }, name: "Search", properties: { Q: "bye" } },
  );
  await ok(s, "DELETE", `/v1/profiles/${await profileBy(s, "identity=u-gone")}`);

  return {
    ana,
    ben,
    mergeTarget,
    mergeSource,
    mergeId: merged.mergeId,
    appliedRecordId,
    appliedRecord,
    secretKey: secret.key,
    revokedKey: revoked.key,
    other,
    anaNewestTs: now - day,
  };
}
