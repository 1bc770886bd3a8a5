/** End to end through a real server on each store: the README walkthrough and the contract around it. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runImport } from "../test-support/imports.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { PUBLIC, SECRET, startTestServer, type TestServer } from "../test-support/server.js";

let s: TestServer;

// PostgreSQL is left out (reason printed) when no server answers outside CI.
const stores = await storesUnderTest();

describe.each(stores)("%s store", (store) => {
  beforeAll(async () => {
    s = await startTestServer({}, { store });
  });
  afterAll(async () => {
    await s.close();
  });

  describe("first run and plumbing", () => {
    it("serves health without auth, the account with the bootstrap key, OpenAPI and metrics", async () => {
      expect(await s.api("GET", "/healthz", undefined, { authorization: "" })).toEqual({
        status: 200,
        body: { ok: true },
      });
      const account = await s.api("GET", "/v1/account");
      expect(account.status).toBe(200);
      expect(account.body).toMatchObject({
        id: "default",
        name: "default",
        settings: { identityKeys: ["Identity", "Email"], mergePolicy: "reject", timezone: "UTC" },
      });
      const openapi = await s.api("GET", "/v1/openapi.json");
      expect(openapi.body.openapi).toBe("3.1.0");
      expect(Object.keys(openapi.body.paths)).toEqual(
        expect.arrayContaining(["/v1/ingest", "/v1/profiles/{id}", "/v1/sdk/batch"]),
      );
      await s.api("POST", "/v1/ingest", { records: [{ type: "event", deviceId: "m", name: "Ping" }] });
      const metrics = await s.api("GET", "/metrics");
      expect(metrics.body).toContain('portrait_ingest_records_total{outcome="stored"}');
      expect(metrics.body).toContain("portrait_http_request_duration_seconds_bucket");
    });

    it("counts every record by outcome and every request by route and status", async () => {
      const sample = async (series: string): Promise<number> => {
        const text = (await s.api("GET", "/metrics")).body as string;
        const line = text.split("\n").find((l) => l.startsWith(`${series} `));
        return line === undefined ? 0 : Number(line.slice(series.length + 1));
      };
      const stored = 'portrait_ingest_records_total{outcome="stored"}';
      const reserved = 'portrait_ingest_records_total{outcome="RESERVED_EVENT_NAME"}';
      const accountOk = 'portrait_http_request_duration_seconds_count{method="GET",route="/v1/account",status="200"}';
      const accountDenied =
        'portrait_http_request_duration_seconds_count{method="GET",route="/v1/account",status="401"}';
      const before = [
        await sample(stored),
        await sample(reserved),
        await sample(accountOk),
        await sample(accountDenied),
      ];
      const records = [
        { type: "event", deviceId: "metrics-1", name: "Ping" },
        { type: "event", deviceId: "metrics-1", name: "Profile Merged" },
        { type: "event", deviceId: "metrics-2", name: "Ping" },
        { type: "event", deviceId: "metrics-2", name: "Pong" },
      ];
      expect((await s.api("POST", "/v1/ingest", { records })).body).toMatchObject({ status: "partial", processed: 3 });
      await s.api("GET", "/v1/account");
      await s.api("GET", "/v1/account");
      await s.api("GET", "/v1/account", undefined, { authorization: "Bearer sk_wrong_key_0123456789" });
      const after = [
        await sample(stored),
        await sample(reserved),
        await sample(accountOk),
        await sample(accountDenied),
      ];
      expect(after.map((n, i) => n - before[i]!)).toEqual([3, 1, 2, 1]);
    });

    it("reports import rows and ends, imports in the store, waiting writes and the connection pool", async () => {
      const sample = async (series: string): Promise<number | null> => {
        const text = (await s.api("GET", "/metrics")).body as string;
        const line = text.split("\n").find((l) => l.startsWith(`${series} `));
        return line === undefined ? null : Number(line.slice(series.length + 1));
      };
      const processed = 'portrait_import_rows_total{kind="profiles",outcome="processed"}';
      const failed = 'portrait_import_rows_total{kind="profiles",outcome="failed"}';
      const done = 'portrait_imports_finished_total{kind="profiles",status="done"}';
      const before = [(await sample(processed)) ?? 0, (await sample(failed)) ?? 0, (await sample(done)) ?? 0];
      const csv = "Identity,Score<number>\nmetrics-a,1\nmetrics-b,not a number\nmetrics-c,3\n";
      expect(await runImport(s, "profiles", csv)).toMatchObject({ status: "done", processed: 2, failed: 1 });
      const after = [(await sample(processed)) ?? 0, (await sample(failed)) ?? 0, (await sample(done)) ?? 0];
      expect(after.map((n, i) => n - before[i]!)).toEqual([2, 1, 1]);
      expect(await sample('portrait_imports{status="queued"}')).toBe(0);
      expect(await sample('portrait_imports{status="running"}')).toBe(0);
      expect(await sample("portrait_ingest_waiting_records")).toBe(0);
      if (store === "postgres") {
        const open = await sample('portrait_store_connections{state="open"}');
        expect(open).toBeGreaterThan(0);
        expect(await sample('portrait_store_connections{state="idle"}')).toBeLessThanOrEqual(open!);
        expect(await sample('portrait_store_connections{state="max"}')).toBeGreaterThanOrEqual(open!);
        // The runner polls the store every few seconds: a scrape may find its query waiting for a connection.
        expect(Number.isInteger(await sample('portrait_store_connections{state="waiting"}'))).toBe(true);
      } else {
        expect(await sample('portrait_store_connections{state="open"}')).toBeNull();
      }
    });

    it("answers unknown routes, missing and wrong keys with the error shape", async () => {
      expect(await s.api("GET", "/v1/nope")).toMatchObject({ status: 404, body: { error: { code: "NOT_FOUND" } } });
      expect(await s.api("GET", "/favicon.ico", undefined, { authorization: "" })).toMatchObject({
        status: 404,
        body: { error: { code: "NOT_FOUND" } },
      });
      expect(await s.api("GET", "/v1/account", undefined, { authorization: "" })).toMatchObject({
        status: 401,
        body: { error: { code: "UNAUTHORIZED" } },
      });
      expect(await s.api("GET", "/v1/account", undefined, { authorization: "Bearer sk_wrong" })).toMatchObject({
        status: 401,
      });
      expect(await s.api("GET", "/v1/account", undefined, { authorization: `Bearer ${PUBLIC}` })).toMatchObject({
        status: 403,
        body: { error: { code: "FORBIDDEN" } },
      });
    });
  });

  describe("the walkthrough: login → profile push → event → Find People", () => {
    it("builds one person and finds them by every handle", async () => {
      const ingest = await s.api("POST", "/v1/ingest", {
        records: [
          {
            type: "login",
            deviceId: "d-1",
            ts: 1790000000,
            properties: { Identity: "u-42", Email: "A@X.io", Name: "Ana", DOB: "1997-08-14" },
          },
          { type: "profile", deviceId: "d-1", properties: { "Customer Type": "Silver", Points: { $incr: 10 } } },
          { type: "profile", identity: { Email: "b@x.io" }, properties: { Plan: "pro" } },
          {
            type: "event",
            deviceId: "d-1",
            name: "Product Viewed",
            id: "msg-123",
            ts: "2026-11-20T10:00:00Z",
            properties: { Product: "Shoe", Price: 59.9 },
            context: { timezone: "Europe/Paris", utm_source: "news" },
          },
          { type: "token", deviceId: "d-1", channel: "push", token: "tok-abc" },
        ],
      });
      expect(ingest.status).toBe(200);
      expect(ingest.body).toMatchObject({ status: "success", processed: 5, unprocessed: [] });
      expect(ingest.body.results.map((r: { outcome: string }) => r.outcome)).toEqual([
        "identified",
        "updated",
        "created",
        "stored",
        "updated",
      ]);
      const id = ingest.body.results[0].profileId;
      expect(id).toMatch(/^[0-9a-f]{32}$/);

      const byEmail = await s.api("GET", "/v1/profiles?email=a@x.io");
      expect(byEmail.body.profiles).toHaveLength(1);
      const p = byEmail.body.profiles[0];
      expect(p).toMatchObject({
        id,
        type: "identified",
        identities: { Identity: "u-42", Email: "a@x.io" },
        devices: ["d-1"],
        properties: {
          Identity: "u-42",
          Email: "a@x.io",
          Name: "Ana",
          DOB: "1997-08-14",
          "Customer Type": "Silver",
          Points: 10,
          Timezone: "Europe/Paris",
        },
        system: { acquiredFrom: "news", timezone: "Europe/Paris" },
        flags: { test: false, controlGroupExcluded: false },
      });
      expect(p.properties.Age.years).toBeGreaterThanOrEqual(29);
      expect(p.system.bucket).toBeGreaterThanOrEqual(0);
      expect(p.system.bucket).toBeLessThan(1000);
      for (const q of ["identity=u-42", "deviceId=d-1", `profileId=${id}`]) {
        expect((await s.api("GET", `/v1/profiles?${q}`)).body.profiles[0]?.id).toBe(id);
      }
      expect((await s.api("GET", "/v1/profiles?email=nobody@x.io")).body).toEqual({ profiles: [] });

      const events = await s.api("GET", `/v1/profiles/${id}/events?limit=2`);
      expect(events.body.events[0]).toMatchObject({
        id: "msg-123",
        name: "Product Viewed",
        ts: "2026-11-20T10:00:00.000Z",
        anonymous: false,
      });
      expect(events.body.nextCursor).toEqual(expect.any(String));
      const page2 = await s.api("GET", `/v1/profiles/${id}/events?limit=50&cursor=${events.body.nextCursor}`);
      expect(events.body.events[1].name).toBe("Identity Set");
      expect(page2.body.events.map((e: { name: string }) => e.name)).toEqual(["Identity Set"]);
      expect(page2.body.nextCursor).toBeNull();

      // The same event id again is stored once.
      const again = await s.api("POST", "/v1/ingest", {
        records: [{ type: "event", deviceId: "d-1", name: "Product Viewed", id: "msg-123" }],
      });
      expect(again.body.results[0]).toMatchObject({ outcome: "duplicate", profileId: id });
      // Through a device nobody has: still a duplicate, and no device or profile is made for it (profileId null,
      // not an empty string that no client can look up).
      const elsewhere = await s.api("POST", "/v1/ingest", {
        records: [{ type: "event", deviceId: "d-never-seen", name: "Product Viewed", id: "msg-123" }],
      });
      expect(elsewhere.body.results[0]).toEqual({ index: 0, outcome: "duplicate", profileId: null });
      expect((await s.api("GET", "/v1/profiles?deviceId=d-never-seen")).body.profiles).toEqual([]);
    });

    it("the timeline sends each event's properties exactly as they were ingested, as JSON", async () => {
      const properties = [
        { Quote: 'say "hi" \\ back', Line: "a\u2028b\u2029c\n\t", Emoji: "🎉 ünïcødé", Html: "</script><b>" },
        { Int: 42, Neg: -7, Float: 0.30000000000000004, Big: 1e21, Small: 5e-7, Yes: true, No: false },
        {
          Amount: 12.5,
          Items: [
            { sku: "a", qty: 2, gift: false },
            { sku: 'b"c', qty: 1.5, gift: true },
          ],
        },
      ];
      // Arrays of objects are Charged's Items only (SEMANTICS §3).
      const names = ["Shape 0", "Shape 1", "Charged"];
      const sent = await s.api("POST", "/v1/ingest", {
        records: properties.map((p, i) => ({
          type: "event",
          deviceId: "tl-1",
          name: names[i],
          ts: 1_790_000_000 + i,
          properties: p,
        })),
      });
      expect(sent.body.unprocessed).toEqual([]);
      const id = sent.body.results[0].profileId;
      const res = await fetch(`${s.url}/v1/profiles/${id}/events`, { headers: { authorization: `Bearer ${SECRET}` } });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/json; charset=utf-8");
      const page = JSON.parse(await res.text());
      expect(page.events.map((e: { properties: unknown }) => e.properties)).toEqual([...properties].reverse());
      expect(Object.keys(page.events[0])).toEqual([
        "id",
        "name",
        "ts",
        "properties",
        "anonymous",
        "profileId",
        "deviceId",
        "platform",
      ]);
      expect(page.nextCursor).toBeNull();
    });

    it("PATCH applies operations; flags, export and delete work; another account cannot see the profile", async () => {
      const r = await s.api("POST", "/v1/ingest", {
        records: [{ type: "login", deviceId: "p-1", properties: { Email: "patch@x.io" } }],
      });
      const id = r.body.results[0].profileId;
      const patched = await s.api("PATCH", `/v1/profiles/${id}`, { Score: { $incr: 3 }, Tags: { $add: ["a", "b"] } });
      expect(patched.body.properties).toMatchObject({ Score: 3, Tags: ["a", "b"] });
      const bad = await s.api("PATCH", `/v1/profiles/${id}`, { Score: "high" });
      expect(bad).toMatchObject({ status: 400, body: { error: { code: "TYPE_MISMATCH", field: "Score" } } });
      // API.md: PATCH errors are 400 with the ingest codes, a conflict with another person's identity too.
      await s.api("POST", "/v1/ingest", {
        records: [{ type: "login", deviceId: "p-2", properties: { Email: "taken@x.io" } }],
      });
      const taken = await s.api("PATCH", `/v1/profiles/${id}`, { Email: "taken@x.io", Score: { $incr: 1 } });
      expect(taken).toMatchObject({ status: 400, body: { error: { code: "IDENTITY_CONFLICT", field: "Email" } } });
      expect((await s.api("GET", `/v1/profiles/${id}`)).body.properties).toMatchObject({
        Email: "patch@x.io",
        Score: 3,
      });

      const test = await s.api("PUT", `/v1/profiles/${id}/test`, { test: true });
      expect(test.body).toMatchObject({ flags: { test: true }, properties: { is_test_user: "Yes" } });
      const excluded = await s.api("PUT", `/v1/profiles/${id}/control-group-exclusion`, { excluded: true });
      expect(excluded.body.flags.controlGroupExcluded).toBe(true);

      const exported = await s.api("GET", `/v1/profiles/${id}/export`);
      expect(exported.body).toMatchObject({ profile: { id }, devices: [{ deviceId: "p-1" }] });
      expect(exported.body.events.length).toBeGreaterThan(0);

      const deleted = await s.api("DELETE", `/v1/profiles/${id}`);
      expect(deleted.body).toEqual({ deleted: { profiles: 1, events: 1, identities: 1, devices: 1 } });
      expect(await s.api("GET", `/v1/profiles/${id}`)).toMatchObject({
        status: 404,
        body: { error: { code: "UNKNOWN_PROFILE" } },
      });
    });

    it("keeps accounts apart: another account's profile id is 404, never 403", async () => {
      const mine = (await s.api("POST", "/v1/ingest", { records: [{ type: "event", deviceId: "iso", name: "X" }] }))
        .body.results[0].profileId;
      const key = await s.api("POST", "/v1/keys", { kind: "secret", name: "second" });
      expect(key.status).toBe(201);
      const { accounts } = await import("../test-support/accounts.js");
      const other = await accounts(s);
      for (const [method, path] of [
        ["GET", `/v1/profiles/${mine}`],
        ["GET", `/v1/profiles/${mine}/events`],
        ["DELETE", `/v1/profiles/${mine}`],
      ] as const) {
        expect(await s.api(method, path, undefined, { authorization: `Bearer ${other.secretKey}` })).toMatchObject({
          status: 404,
          body: { error: { code: "UNKNOWN_PROFILE" } },
        });
      }
      expect(
        (await s.api("GET", "/v1/profiles?deviceId=iso", undefined, { authorization: `Bearer ${other.secretKey}` }))
          .body,
      ).toEqual({ profiles: [] });
      expect((await s.api("GET", `/v1/profiles/${mine}`)).status).toBe(200);
    });

    it("revoked keys stop working at once", async () => {
      const created = await s.api("POST", "/v1/keys", { kind: "secret", name: "temp" });
      const auth = { authorization: `Bearer ${created.body.key}` };
      expect((await s.api("GET", "/v1/account", undefined, auth)).status).toBe(200);
      expect((await s.api("DELETE", `/v1/keys/${created.body.id}`)).status).toBe(200);
      expect((await s.api("GET", "/v1/account", undefined, auth)).status).toBe(401);
      const list = await s.api("GET", "/v1/keys");
      expect(JSON.stringify(list.body)).not.toContain(created.body.key);
      expect(JSON.stringify(list.body)).not.toContain(SECRET);
    });
  });

  describe("lists read whole are paged like every list", () => {
    /** Every item of a list, a page of `limit` at a time, and the cursors the pages answered. */
    async function pageThrough(path: string, field: string, limit: number) {
      const items: Array<Record<string, unknown>> = [];
      const cursors: string[] = [];
      let cursor: string | null = null;
      do {
        const query: string = `limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`;
        const page = await s.api("GET", `${path}?${query}`);
        expect(page.status).toBe(200);
        expect(page.body[field].length).toBeLessThanOrEqual(limit);
        items.push(...page.body[field]);
        cursor = page.body.nextCursor;
        if (cursor) cursors.push(cursor);
      } while (cursor);
      return { items, cursors };
    }

    it("pages API keys, SFTP keys and a person's documents with cursor and nextCursor, each item once", async () => {
      for (let i = 0; i < 4; i++) await s.api("POST", "/v1/keys", { kind: "public", name: `paged-${i}` });
      const whole = await s.api("GET", "/v1/keys?limit=1000");
      expect(whole.body.nextCursor).toBeNull();
      const keys = await pageThrough("/v1/keys", "keys", 2);
      expect(keys.items.map((k) => k.id)).toEqual(whole.body.keys.map((k: { id: string }) => k.id));
      expect(keys.cursors.length).toBeGreaterThanOrEqual(2);

      const id = (
        await s.api("POST", "/v1/ingest", { records: [{ type: "event", deviceId: "paged-docs", name: "X" }] })
      ).body.results[0].profileId;
      for (const [c, u] of [
        ["b", "1"],
        ["a", "2"],
        ["a", "10"],
        ["é", "x"],
        ["😀", "x"],
      ]) {
        expect(
          (await s.api("PUT", `/v1/profiles/${id}/documents/${encodeURIComponent(c!)}/${u}`, { n: 1 })).status,
        ).toBe(200);
      }
      const docs = await pageThrough(`/v1/profiles/${id}/documents`, "documents", 2);
      expect(docs.items.map((d) => [d.$compartment_id, d.$user_account_id])).toEqual([
        ["a", "10"],
        ["a", "2"],
        ["b", "1"],
        ["é", "x"],
        ["😀", "x"],
      ]);
      expect((await s.api("GET", `/v1/profiles/${id}/documents`)).body.nextCursor).toBeNull();

      // Another person's documents are another list: their cursor is refused here.
      const other = (
        await s.api("POST", "/v1/ingest", { records: [{ type: "event", deviceId: "paged-b", name: "X" }] })
      ).body.results[0].profileId;
      for (const u of ["1", "2", "3"]) await s.api("PUT", `/v1/profiles/${other}/documents/b/${u}`, { n: 1 });
      const theirs = (await s.api("GET", `/v1/profiles/${other}/documents?limit=1`)).body.nextCursor;
      expect(theirs).not.toBeNull();
      expect(await s.api("GET", `/v1/profiles/${id}/documents?cursor=${theirs}`)).toMatchObject({
        status: 400,
        body: { error: { field: "cursor" } },
      });

      // A cursor of another list, or made up, is refused naming the field.
      for (const cursor of [keys.cursors[0], "bm90LWEtY3Vyc29y", "%%%"]) {
        const refused = await s.api("GET", `/v1/profiles/${id}/documents?cursor=${cursor}`);
        expect(refused).toMatchObject({ status: 400, body: { error: { code: "INVALID_VALUE", field: "cursor" } } });
      }
      for (const limit of ["0", "1001", "two"]) {
        const refused = await s.api("GET", `/v1/sftp/keys?limit=${limit}`);
        expect(refused.status).toBe(400);
        expect(refused.body.error.field).toMatch(/limit/);
      }
      expect((await s.api("GET", "/v1/sftp/keys")).body).toEqual({ keys: [], nextCursor: null });
    });
  });

  describe("documents", () => {
    it("stores, reads, lists and deletes a compartment document with Portrait's system fields", async () => {
      const id = (await s.api("POST", "/v1/ingest", { records: [{ type: "event", deviceId: "doc", name: "X" }] })).body
        .results[0].profileId;
      const put = await s.api("PUT", `/v1/profiles/${id}/documents/1606/crm-1`, {
        newsletter_options: { subscribed: true },
        $creation_ts: 1,
      });
      expect(put.status).toBe(200);
      expect(put.body).toMatchObject({
        $compartment_id: "1606",
        $user_account_id: "crm-1",
        newsletter_options: { subscribed: true },
      });
      expect(put.body.$creation_ts).toBeGreaterThan(1);
      expect(
        (await s.api("GET", `/v1/profiles?compartmentId=1606&userAccountId=crm-1`)).body.profiles[0].accounts,
      ).toEqual([{ compartmentId: "1606", userAccountId: "crm-1" }]);
      expect((await s.api("GET", `/v1/profiles/${id}/documents`)).body.documents).toHaveLength(1);
      // A PUT replaces the document and keeps the system fields: ids a client stored stay unless it gives them again.
      const own = await s.api("PUT", `/v1/profiles/${id}/documents/1606/own`, { a: 1, $user_account_id: "theirs" });
      expect(own.body).toMatchObject({ $compartment_id: "1606", $user_account_id: "theirs", a: 1 });
      const replaced = await s.api("PUT", `/v1/profiles/${id}/documents/1606/own`, { b: 2 });
      expect(replaced.body).toEqual({
        $compartment_id: "1606",
        $user_account_id: "theirs",
        b: 2,
        $creation_ts: own.body.$creation_ts,
        $last_modified_ts: expect.any(Number),
      });
      expect(
        (await s.api("PUT", `/v1/profiles/${id}/documents/1606/own`, { $compartment_id: "x" })).body,
      ).toMatchObject({
        $compartment_id: "x",
        $user_account_id: "theirs",
      });
      expect((await s.api("DELETE", `/v1/profiles/${id}/documents/1606/own`)).status).toBe(200);
      // A missing or null document is refused like any body that is not an object, and stores nothing.
      for (const body of ["null", undefined, "[1,2]"]) {
        const refused = await s.api("PUT", `/v1/profiles/${id}/documents/1606/none`, body, {
          "content-type": "application/json",
        });
        expect(refused.status, String(body)).toBe(400);
      }
      expect(await s.api("PUT", `/v1/profiles/${id}/documents/1606/none`, "null")).toMatchObject({
        body: { error: { code: "INVALID_DOCUMENT", field: "body" } },
      });
      expect((await s.api("GET", `/v1/profiles/${id}/documents/1606/none`)).status).toBe(404);
      const big = await s.api("PUT", `/v1/profiles/${id}/documents/1606/crm-1`, { blob: "x".repeat(70_000) });
      expect(big).toMatchObject({ status: 413, body: { error: { code: "DOCUMENT_TOO_LARGE", field: "body" } } });
      // 64 KB is the client's JSON, whatever the ids' length: Portrait's own $ fields are not counted.
      const sized = (bytes: number) => ({ blob: "x".repeat(bytes - '{"blob":""}'.length) });
      const longIds = `/v1/profiles/${id}/documents/${"c".repeat(200)}/${"u".repeat(200)}`;
      expect((await s.api("PUT", longIds, sized(65_536))).status).toBe(200);
      expect(await s.api("PUT", longIds, sized(65_537))).toMatchObject({
        status: 413,
        body: { error: { code: "DOCUMENT_TOO_LARGE", message: expect.stringMatching(/65536 bytes.*got 65537/) } },
      });
      const nul = await s.api("PUT", `/v1/profiles/${id}/documents/1606/crm-1`, { note: "a\u0000b" });
      expect(nul).toMatchObject({ status: 400, body: { error: { code: "INVALID_VALUE", field: "note" } } });
      expect((await s.api("GET", `/v1/profiles/${id}/documents/1606/crm-1`)).body.newsletter_options).toEqual({
        subscribed: true,
      });
      expect((await s.api("DELETE", `/v1/profiles/${id}/documents/1606/crm-1`)).status).toBe(200);
      expect((await s.api("GET", `/v1/profiles/${id}/documents/1606/crm-1`)).status).toBe(404);
    });
  });

  describe("event names", () => {
    it("are trimmed before reserved names and Charged are recognised, on /v1/ingest and /v1/sdk/batch", async () => {
      const live = await s.api("POST", "/v1/ingest", {
        records: [
          { type: "event", identity: { Email: "trim@x.io" }, name: " Identity Set", ts: 1790000000 },
          { type: "event", identity: { Email: "trim@x.io" }, name: "Profile Merged ", ts: 1790000000 },
          { type: "event", identity: { Email: "trim@x.io" }, name: " \t ", ts: 1790000000 },
          {
            type: "event",
            identity: { Email: "trim@x.io" },
            name: " Charged ",
            ts: 1790000000,
            properties: { Amount: 10, "Charged ID": "o-1" },
          },
        ],
      });
      expect(live.body.unprocessed.map((u: { index: number; code: string }) => [u.index, u.code])).toEqual([
        [0, "RESERVED_EVENT_NAME"],
        [1, "RESERVED_EVENT_NAME"],
        [2, "INVALID_EVENT_NAME"],
      ]);
      const id = live.body.results[0].profileId;
      const person = (await s.api("GET", `/v1/profiles/${id}`)).body;
      expect(person.type).toBe("customer");
      expect(person.stats.revenue).toBe(10);
      const sdk = await s.api("POST", `/v1/sdk/batch?key=${PUBLIC}`, {
        records: [
          { type: "event", deviceId: "trim-d", name: " Identity Error ", ts: 1790000000 },
          { type: "event", deviceId: "trim-d", name: "  Seen ", ts: 1790000000 },
        ],
      });
      expect(sdk.body.unprocessed.map((u: { code: string }) => u.code)).toEqual(["RESERVED_EVENT_NAME"]);
      const seen = (await s.api("GET", `/v1/profiles/${sdk.body.results[0].profileId}/events`)).body.events;
      expect(seen.map((e: { name: string }) => e.name)).toEqual(["Seen"]);
      const names = (await s.api("GET", `/v1/profiles/${id}/events`)).body.events.map((e: { name: string }) => e.name);
      expect(names).toContain("Charged");
      expect(names).not.toContain(" Charged ");
    });
  });

  describe("context", () => {
    it("context timezone sets Timezone until the client writes Timezone itself; acquiredFrom keeps the earliest source", async () => {
      const ingest = (records: unknown[]) => s.api("POST", "/v1/ingest", { records });
      const id = (
        await ingest([
          {
            type: "event",
            deviceId: "tz",
            name: "A",
            ts: 1790000100,
            context: { timezone: "Europe/Paris", referrer: "https://ref.example/x" },
          },
        ])
      ).body.results[0].profileId;
      await ingest([
        {
          type: "event",
          deviceId: "tz",
          name: "B",
          ts: 1790000200,
          context: { timezone: "Asia/Tokyo", utm_source: "late" },
        },
      ]);
      await ingest([{ type: "event", deviceId: "tz", name: "C", ts: 1790000050, context: { utm_source: "early" } }]);
      let p = (await s.api("GET", `/v1/profiles/${id}`)).body;
      expect(p.properties.Timezone).toBe("Asia/Tokyo");
      expect(p.system.acquiredFrom).toBe("early");
      await ingest([{ type: "profile", deviceId: "tz", ts: 1790000300, properties: { Timezone: "America/New_York" } }]);
      await ingest([
        { type: "event", deviceId: "tz", name: "D", ts: 1790000400, context: { timezone: "Europe/Paris" } },
      ]);
      p = (await s.api("GET", `/v1/profiles/${id}`)).body;
      expect(p.system.timezone).toBe("America/New_York");
    });

    it("reads a record ts without an offset in the account timezone, so ordering by ts holds", async () => {
      const ingest = (records: unknown[]) => s.api("POST", "/v1/ingest", { records });
      expect((await s.api("PATCH", "/v1/account/settings", { timezone: "Pacific/Pago_Pago" })).status).toBe(200);
      try {
        // 12:00 in Pago Pago (UTC−11) is 23:00 UTC: later than 13:00 UTC, so the second set is the older one.
        const id = (
          await ingest([
            { type: "event", deviceId: "pago", name: "Local", ts: "2024-06-01T12:00:00" },
            { type: "profile", deviceId: "pago", ts: "2024-06-01T12:00:00", properties: { Shelf: "A" } },
            { type: "profile", deviceId: "pago", ts: "2024-06-01T13:00:00Z", properties: { Shelf: "B" } },
          ])
        ).body.results[0].profileId;
        const events = (await s.api("GET", `/v1/profiles/${id}/events`)).body.events;
        expect(events.find((e: { name: string }) => e.name === "Local").ts).toBe("2024-06-01T23:00:00.000Z");
        const p = (await s.api("GET", `/v1/profiles/${id}`)).body;
        expect(p.properties.Shelf).toBe("A");
        expect(p.system.lastSeen).toBe("2024-06-01T23:00:00.000Z");
      } finally {
        await s.api("PATCH", "/v1/account/settings", { timezone: "UTC" });
      }
    });
  });

  describe("export (SEMANTICS §10: every stored fact about the person)", () => {
    const ingest = async (...records: unknown[]) => {
      const r = await s.api("POST", "/v1/ingest", { records });
      expect(r.status).toBe(200);
      for (const result of r.body.results) expect(result.outcome).not.toBe("failed");
      return r.body.results.map((x: { profileId: string }) => x.profileId);
    };

    it("includes the documents and property states of the person's orphans, and where they came from", async () => {
      const [known] = await ingest({
        type: "login",
        deviceId: "exp-k",
        ts: 1732000000,
        properties: { Identity: "exp-known" },
        context: { utm_source: "newsletter" },
      });
      const [orphan] = await ingest({
        type: "profile",
        deviceId: "exp-o",
        ts: 1732000100,
        properties: { Seen: "yes" },
      });
      await ingest({ type: "login", deviceId: "exp-o", properties: { Identity: "exp-known" } });
      expect((await s.api("GET", `/v1/profiles/${orphan}`)).body.orphanOf).toBe(known);
      const put = await s.api("PUT", `/v1/profiles/${orphan}/documents/corph/uorph`, { secret: "orphan-doc-value" });
      expect(put.status).toBe(200);
      const exported = (await s.api("GET", `/v1/profiles/${known}/export`)).body;
      expect(exported.documents).toEqual([]);
      expect(exported.orphans.map((o: { id: string }) => o.id)).toEqual([orphan]);
      expect(exported.orphanPropertyStates).toEqual([
        {
          profileId: orphan,
          propertyStates: { Seen: { ts: "2024-11-19T07:08:20.000Z", deleted: false, counter: false } },
        },
      ]);
      expect(exported.acquisition).toEqual({ from: "newsletter", kind: "utm", ts: "2024-11-19T07:06:40.000Z" });
      expect(exported.orphanDocuments).toEqual([
        {
          profileId: orphan,
          documents: [
            expect.objectContaining({
              $compartment_id: "corph",
              $user_account_id: "uorph",
              secret: "orphan-doc-value",
            }),
          ],
        },
      ]);
    });

    it("includes each property's ts and the tombstones of deleted keys, which decide later writes", async () => {
      const [id] = await ingest({
        type: "profile",
        identity: { Email: "exp-ts@x.io" },
        ts: 1732000000,
        properties: { Name: "A", Gone: "x", Visits: { $incr: 2 } },
      });
      await ingest({ type: "profile", profileId: id, ts: 1732000500, properties: { Gone: { $delete: true } } });
      // The stored ts and the tombstone win over older writes (SEMANTICS §4): the export must show why.
      await ingest({ type: "profile", profileId: id, ts: 1731000000, properties: { Name: "B", Gone: "back" } });
      const exported = (await s.api("GET", `/v1/profiles/${id}/export`)).body;
      expect(exported.profile.properties).toMatchObject({ Name: "A", Visits: 2 });
      expect(exported.profile.properties.Gone).toBeUndefined();
      expect(exported.propertyStates).toMatchObject({
        Name: { ts: "2024-11-19T07:06:40.000Z", deleted: false, counter: false },
        Gone: { ts: "2024-11-19T07:15:00.000Z", deleted: true, counter: false },
        Visits: { deleted: false, counter: true },
        Email: { ts: "2024-11-19T07:06:40.000Z", deleted: false },
      });
      expect(exported.identityValues).toEqual({ Email: [{ value: "exp-ts@x.io", ts: "2024-11-19T07:06:40.000Z" }] });
    });

    it("includes what undoing a merge would restore, until it is undone", async () => {
      const [target, source] = await ingest(
        { type: "profile", identity: { Email: "exp-t@x.io" }, ts: 1732000000, properties: { Name: "Tname" } },
        { type: "profile", identity: { Email: "exp-s@x.io" }, ts: 1732000500, properties: { Name: "Sname" } },
      );
      await s.api("PUT", `/v1/profiles/${source}/documents/cm/exp-s`, { before: 1 });
      await s.api("PUT", `/v1/profiles/${source}/documents/cm/exp-s`, { before: 2 });
      const merge = await s.api("POST", "/v1/profiles/merge", { targetId: target, sourceId: source });
      expect(merge.status).toBe(200);
      // Journalled: an undo replays it to the source, whose Email named it.
      await ingest({ type: "profile", identity: { Email: "exp-s@x.io" }, properties: { Nick: "journalled" } });
      const exported = (await s.api("GET", `/v1/profiles/${target}/export`)).body;
      expect(exported.profile.properties.Name).toBe("Sname");
      // The merge history the clients read stays as it was.
      expect(exported.merges).toEqual([
        expect.objectContaining({ id: merge.body.mergeId, targetId: target, sourceId: source, undoneAt: null }),
      ]);
      expect(Object.keys(exported.merges[0]).sort()).toEqual(["createdAt", "id", "sourceId", "targetId", "undoneAt"]);
      expect(exported.mergeSnapshots).toHaveLength(1);
      const snapshot = exported.mergeSnapshots[0];
      expect(snapshot.mergeId).toBe(merge.body.mergeId);
      expect(snapshot.target.profile).toMatchObject({ id: target, properties: { Name: "Tname" } });
      expect(snapshot.target.propertyStates.Name).toEqual({
        ts: "2024-11-19T07:06:40.000Z",
        deleted: false,
        counter: false,
      });
      expect(snapshot.source.profile).toMatchObject({ id: source, properties: { Name: "Sname" } });
      expect(snapshot.source.identityValues.Email).toEqual([{ value: "exp-s@x.io", ts: "2024-11-19T07:15:00.000Z" }]);
      expect(snapshot.source.documents).toEqual([expect.objectContaining({ before: 2 })]);
      expect(snapshot.droppedEvents).toEqual([]);
      expect(snapshot.journal).toEqual([
        expect.objectContaining({
          type: "profile",
          handle: { kind: "identity", key: "Email", value: "exp-s@x.io" },
          properties: [expect.objectContaining({ key: "Nick", value: "journalled" })],
        }),
      ]);

      // The undo brings back exactly what the snapshot showed; afterwards there is nothing left to restore.
      const undo = await s.api("POST", `/v1/merges/${merge.body.mergeId}/undo`);
      expect(undo.status).toBe(200);
      expect((await s.api("GET", `/v1/profiles/${target}`)).body.properties.Name).toBe("Tname");
      expect((await s.api("GET", `/v1/profiles/${source}`)).body.properties.Nick).toBe("journalled");
      expect((await s.api("GET", `/v1/profiles/${target}/export`)).body.mergeSnapshots).toEqual([]);
    });
  });
});
