/**
 * B7: the profile page — GET /v1/profiles/{id} and GET /v1/profiles/{id}/events?limit=100 — for a profile with
 * 1,000 events and 2 orphans made the real way (two anonymous devices with events, then a login as that person on
 * each: SEMANTICS §3 case 2). 16 connections: 8 on each endpoint at once, so each has its own latency histogram.
 * Figure: the worse of the two p99s; target ≤ 10 ms. The ratio compares page rates (HTTP pages/s against the raw
 * getProfile + listEvents(limit 100) pages/s) and is informational.
 */
import { newProfileState } from "../../src/engine/profile.js";
import type { NewEvent } from "../../src/engine/types.js";
import { ingest, request } from "../lib/api.js";
import { eventRecord } from "../lib/data.js";
import { apiHeaders, describeCpu, type LoadSpec, measureLoad, medianOf } from "../lib/load.js";
import { Prng, seedOf } from "../lib/prng.js";
import { startPortrait } from "../lib/processes.js";
import { baselineRate, openRawStore, RAW_ACCOUNT } from "../lib/raw-store.js";
import type { BenchContext, Scenario } from "../lib/scenario.js";

const OWN_EVENTS = 1000;
const ORPHAN_EVENTS = 10;
const PERSON = { Identity: "b7-person", Email: "b7-person@example.com", Name: "Bea Seven" };

/** Builds the person through the API; returns the profile id. */
async function setUp(url: string): Promise<string> {
  const rng = new Prng(seedOf("b7-setup"));
  const login = await ingest(
    url,
    JSON.stringify({ records: [{ type: "login", deviceId: "b7-dev-main", properties: PERSON }] }),
  );
  const profileId = login.results[0]!.profileId;
  const own = Array.from({ length: OWN_EVENTS }, () => eventRecord(rng, { deviceId: "b7-dev-main" }));
  await ingest(url, JSON.stringify({ records: own }));
  for (const anon of ["b7-dev-anon-1", "b7-dev-anon-2"]) {
    const events = Array.from({ length: ORPHAN_EVENTS }, () => eventRecord(rng, { deviceId: anon }));
    await ingest(url, JSON.stringify({ records: events }));
    const switched = await ingest(
      url,
      JSON.stringify({ records: [{ type: "login", deviceId: anon, properties: { Identity: PERSON.Identity } }] }),
    );
    const result = switched.results[0]!;
    if (result.profileId !== profileId || result.outcome !== "switched") {
      throw new Error(`B7 set-up: login on ${anon} gave ${JSON.stringify(result)}, expected a switch to ${profileId}`);
    }
  }
  const profile = await request<{ stats?: { orphans?: number } }>(url, "GET", `/v1/profiles/${profileId}`);
  if (profile.stats?.orphans !== undefined && profile.stats.orphans !== 2) {
    throw new Error(`B7 set-up: the profile has ${profile.stats.orphans} orphans, expected 2`);
  }
  const page = await request<{ events: unknown[] }>(url, "GET", `/v1/profiles/${profileId}/events?limit=100`);
  if (page.events.length !== 100) throw new Error(`B7 set-up: a timeline page has ${page.events.length} events`);
  return profileId;
}

/** Raw: the same shape stored directly; a page = getProfile + listEvents over the profile and its orphans. */
async function rawPageRate(ctx: BenchContext): Promise<number> {
  const store = await openRawStore(ctx, "B7");
  const rng = new Prng(seedOf("b7-raw"));
  const now = Date.now();
  const main = newProfileState(rng.hex(32), now, 7);
  main.identities.Identity = [{ value: PERSON.Identity, ts: now }];
  const orphans = [1, 2].map(() => ({ ...newProfileState(rng.hex(32), now, 7), orphanOf: main.id }));
  let counter = 0;
  const events = (profileId: string, count: number): NewEvent[] =>
    Array.from({ length: count }, () => {
      const record = eventRecord(rng, { deviceId: "b7-dev" });
      return {
        profileId,
        id: `e-b7-${counter++}`,
        name: record.name,
        ts: record.ts * 1000,
        properties: record.properties,
        deviceId: "b7-dev",
        platform: null,
      };
    });
  await store.write(RAW_ACCOUNT, async (tx) => {
    for (const state of [main, ...orphans]) await tx.insertProfile(RAW_ACCOUNT, state);
    await tx.insertEvents(RAW_ACCOUNT, events(main.id, OWN_EVENTS));
    for (const orphan of orphans) await tx.insertEvents(RAW_ACCOUNT, events(orphan.id, ORPHAN_EVENTS));
  });
  const ids = [main.id, ...orphans.map((o) => o.id)];
  return baselineRate(ctx, "B7", async () => {
    for (let i = 0; i < 16; i++) {
      await store.reader.getProfile(RAW_ACCOUNT, main.id);
      const page = await store.reader.listEvents(RAW_ACCOUNT, ids, { limit: 100 });
      if (page.events.length !== 100) throw new Error("raw store: short timeline page");
    }
    return 16;
  });
}

function get(url: string, path: string): LoadSpec {
  return { url, connections: 8, requests: [{ method: "GET", path, headers: apiHeaders(false) }] };
}

export const scenario: Scenario = {
  name: "B7",
  title: "profile page: profile + newest 100 timeline events, 16 connections",
  unit: "ms",
  target: { kind: "max", value: 10 },
  stores: ["sqlite", "postgres"],
  async run(ctx) {
    const baseline = await rawPageRate(ctx);
    const server = await startPortrait(ctx, "B7");
    const profileId = await setUp(server.url);
    const measured = await measureLoad(
      ctx,
      "B7 (profile | events)",
      [get(server.url, `/v1/profiles/${profileId}`), get(server.url, `/v1/profiles/${profileId}/events?limit=100`)],
      server.pid,
    );
    const profileP99 = medianOf(measured, ([profile]) => profile!.p99).value;
    const eventsP99 = medianOf(measured, ([, events]) => events!.p99).value;
    const { value: figure, runs } = medianOf(measured, (run) => Math.max(...run.map((r) => r.p99)));
    const pageRate = medianOf(measured, (run) => run.reduce((sum, r) => sum + r.ok, 0) / 2 / run[0]!.seconds).value;
    return {
      figure,
      baseline,
      baselineUnit: "pages/s",
      ratio: pageRate / baseline,
      errors: measured.errors,
      runs,
      note:
        `p99 profile ${profileP99} ms, events ${eventsP99} ms; ${Math.round(pageRate)} pages/s over HTTP ` +
        `(ratio = HTTP pages/s ÷ raw pages/s, informational)` +
        describeCpu(measured.cpu, "request") +
        (measured.firstError ? `; first error: ${measured.firstError}` : ""),
    };
  },
};
