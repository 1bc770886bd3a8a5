/** Malformed, oversized, wrongly typed and hostile input on every endpoint: a clear error, nothing lost. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storesUnderTest } from "../test-support/postgres.js";
import { PUBLIC, SECRET, startTestServer, type TestServer } from "../test-support/server.js";

const execFileAsync = promisify(execFile);

let s: TestServer;
let known: string;

// PostgreSQL is left out (reason printed) when no server answers outside CI.
const stores = await storesUnderTest();

async function expectUntouched() {
  const p = await s.api("GET", `/v1/profiles/${known}`);
  expect(p.body.properties).toMatchObject({ Email: "keep@x.io", Name: "Kept", Points: 5 });
}

const one = (record: unknown) => s.api("POST", "/v1/ingest", { records: [record] });

describe.each(stores)("%s store", (store) => {
  beforeAll(async () => {
    s = await startTestServer({}, { store });
    const r = await s.api("POST", "/v1/ingest", {
      records: [{ type: "login", deviceId: "keep", properties: { Email: "keep@x.io", Name: "Kept", Points: 5 } }],
    });
    known = r.body.results[0].profileId;
  });
  afterAll(async () => {
    await s.close();
  });

  describe("batch shape", () => {
    it.each([
      ["not JSON", "{records: [", 400, "INVALID_JSON"],
      ["an array", "[]", 400, "INVALID_BATCH"],
      ["records not an array", '{"records": {}}', 400, "INVALID_BATCH"],
      ["a prototype-poisoning body", '{"records": [], "__proto__": {"admin": true}}', 400, "INVALID_JSON"],
      ["empty", "", 400, "INVALID_JSON"],
    ])("refuses %s", async (_name, body, status, code) => {
      const r = await s.api("POST", "/v1/ingest", body);
      expect(r).toMatchObject({ status, body: { error: { code } } });
      expect(JSON.stringify(r.body)).not.toMatch(/at .*\.js/);
    });

    it.each([
      ["/v1/ingest", "application/json"],
      ["/v1/sdk/batch", "application/json"],
      ["/v1/sdk/batch", "text/plain"],
    ])("fails only the record with a __proto__ or constructor.prototype key on %s (%s)", async (route, type) => {
      const sdk = route.startsWith("/v1/sdk");
      const body =
        '{"records": [' +
        '{"type": "profile", "deviceId": "proto-a", "properties": {"Plan": "a", "__proto__": {"admin": true}}},' +
        '{"type": "event", "deviceId": "proto-b", "name": "E", "__proto__": {"admin": true}},' +
        '{"type": "profile", "deviceId": "proto-c", "properties": {"constructor": {"prototype": {"admin": true}}}},' +
        '{"type": "profile", "deviceId": "proto-d", "properties": {"Plan": "kept"}}]}';
      const r = await s.api("POST", `${route}${sdk ? `?key=${PUBLIC}` : ""}`, body, { "content-type": type });
      expect(r.status).toBe(200);
      expect(r.body.unprocessed).toEqual([
        expect.objectContaining({ index: 0, code: "INVALID_KEY", field: "properties.__proto__" }),
        expect.objectContaining({ index: 1, code: "INVALID_KEY", field: "__proto__" }),
      ]);
      // `constructor` is an ordinary key name: stored as data, and no object's prototype changed on the way.
      expect(r.body.results.map((x: { index: number }) => x.index)).toEqual([2, 3]);
      expect(({} as Record<string, unknown>).admin).toBeUndefined();
      const stored = await s.api("GET", `/v1/profiles/${r.body.results[0].profileId}`);
      expect(stored.body.properties.constructor).toEqual({ prototype: { admin: true } });
      const kept = await s.api("GET", `/v1/profiles/${r.body.results[1].profileId}`);
      expect(kept.body.properties.Plan).toBe("kept");
      const refused = await s.api("GET", "/v1/profiles?deviceId=proto-a");
      expect(refused.body.profiles).toEqual([]);
    });

    it.each(["application/json", "text/plain"])(
      "reads an SDK body (%s) once: JSON text of a batch is no batch",
      async (type) => {
        for (const body of ['"{\\"records\\":[]}"', '"x"']) {
          const r = await s.api("POST", `/v1/sdk/batch?key=${PUBLIC}`, body, {
            "content-type": type,
            authorization: "",
          });
          expect(r).toMatchObject({ status: 400, body: { error: { code: "INVALID_BATCH" } } });
        }
        const noKey = await s.api("POST", "/v1/sdk/batch", { records: [] }, { authorization: "" });
        expect(noKey).toMatchObject({ status: 401, body: { error: { message: expect.stringContaining("?key=") } } });
      },
    );

    it("refuses more than 1000 records and bodies over 5 MB", async () => {
      const many = Array.from({ length: 1001 }, () => ({ type: "event", deviceId: "x", name: "E" }));
      expect(await s.api("POST", "/v1/ingest", { records: many })).toMatchObject({
        status: 400,
        body: { error: { code: "BATCH_TOO_LARGE" } },
      });
      const huge = JSON.stringify({
        records: [{ type: "event", deviceId: "x", name: "E", properties: { p: "x".repeat(6 * 1024 * 1024) } }],
      });
      expect(await s.api("POST", "/v1/ingest", huge)).toMatchObject({
        status: 413,
        body: { error: { code: "PAYLOAD_TOO_LARGE" } },
      });
      // Every time, on the batch route and the SDK's, however large: the rest of the body is read before the answer,
      // so a client still sending gets the 413 instead of a reset (EPIPE) that looks like a network fault. The client
      // is another process, as a real one is: in this one, its writes and the server's close take turns on one loop.
      const client = `
        const body = JSON.stringify({ records: [{ type: "event", deviceId: "x", name: "E",
          properties: { p: "x".repeat(16 * 1024 * 1024) } }] });
        const seen = [];
        for (let i = 0; i < 4; i++) {
          for (const [route, headers] of [
            ["/v1/ingest", { authorization: "Bearer ${SECRET}", "content-type": "application/json" }],
            ["/v1/sdk/batch?key=${PUBLIC}", { "content-type": "text/plain" }],
          ]) {
            try {
              const answer = await fetch("${s.url}" + route, { method: "POST", headers, body });
              seen.push(answer.status + " " + (await answer.json()).error.code);
            } catch (e) {
              seen.push(String(e.cause?.code ?? e.message));
            }
          }
        }
        console.log(JSON.stringify(seen));`;
      const run = await execFileAsync(process.execPath, ["--input-type=module", "-e", client], { encoding: "utf8" });
      expect(JSON.parse(run.stdout)).toEqual(Array(8).fill("413 PAYLOAD_TOO_LARGE"));
      expect(await s.api("POST", "/v1/ingest", "<xml/>", { "content-type": "application/xml" })).toMatchObject({
        status: 415,
        body: { error: { code: "UNSUPPORTED_MEDIA_TYPE" } },
      });
    });
  });

  describe("records", () => {
    it.each([
      ["no handle", { type: "event", name: "E" }, "MISSING_HANDLE", undefined],
      [
        "two handles",
        { type: "event", name: "E", deviceId: "a", profileId: "0".repeat(32) },
        "MULTIPLE_HANDLES",
        "profileId",
      ],
      [
        "an identity with two keys",
        { type: "profile", identity: { Email: "a@x.io", Identity: "u" }, properties: {} },
        "INVALID_HANDLE",
        "identity",
      ],
      [
        "an identity key not enabled",
        { type: "profile", identity: { Phone: "+33612345678" }, properties: {} },
        "INVALID_HANDLE",
        "identity.Phone",
      ],
      [
        "a junk identity handle",
        { type: "profile", identity: { Identity: "undefined" }, properties: {} },
        "INVALID_IDENTITY",
        "identity.Identity",
      ],
      [
        "a malformed Email handle",
        { type: "profile", identity: { Email: "not-an-address" }, properties: {} },
        "INVALID_EMAIL",
        "identity.Email",
      ],
      [
        "an unknown profile id",
        { type: "event", name: "E", profileId: "f".repeat(32) },
        "UNKNOWN_PROFILE",
        "profileId",
      ],
      ["an unknown type", { type: "drop table", deviceId: "a" }, "INVALID_RECORD", "type"],
      [
        "a reserved event name",
        { type: "event", deviceId: "a", name: "Profile Merged" },
        "RESERVED_EVENT_NAME",
        "name",
      ],
      ["an overlong event name", { type: "event", deviceId: "a", name: "x".repeat(121) }, "INVALID_EVENT_NAME", "name"],
      [
        "a timestamp two days ahead",
        { type: "event", deviceId: "a", name: "E", ts: Date.now() / 1000 + 2 * 86400 },
        "INVALID_TIMESTAMP",
        "ts",
      ],
      ["a negative timestamp", { type: "event", deviceId: "a", name: "E", ts: -5 }, "INVALID_TIMESTAMP", "ts"],
      ["Age", { type: "profile", deviceId: "a", properties: { Age: 30 } }, "AGE_IS_DERIVED", "properties.Age"],
      [
        "a bad phone",
        { type: "profile", deviceId: "a", properties: { Phone: "223" } },
        "INVALID_PHONE",
        "properties.Phone",
      ],
      [
        "a bad gender",
        { type: "profile", deviceId: "a", properties: { Gender: "robot" } },
        "INVALID_GENDER",
        "properties.Gender",
      ],
      [
        "a key with a dot",
        { type: "profile", deviceId: "a", properties: { "a.b": 1 } },
        "INVALID_KEY",
        "properties.a.b",
      ],
      [
        "a SQL-looking key",
        { type: "profile", deviceId: "a", properties: { "x'; DROP TABLE profiles; --": 1 } },
        "INVALID_KEY",
        undefined,
      ],
      [
        "a value over 512 chars",
        { type: "profile", deviceId: "a", properties: { Bio: "x".repeat(513) } },
        "VALUE_TOO_LONG",
        "properties.Bio",
      ],
      [
        "null as a value",
        { type: "profile", deviceId: "a", properties: { Name: null } },
        "TYPE_MISMATCH",
        "properties.Name",
      ],
      [
        "a negative increment",
        { type: "profile", deviceId: "a", properties: { N: { $incr: -1 } } },
        "INVALID_OPERATION",
        "properties.N",
      ],
      [
        "an unknown operation",
        { type: "profile", deviceId: "a", properties: { N: { $mul: 2 } } },
        "INVALID_OPERATION",
        "properties.N",
      ],
      [
        "a junk identity",
        { type: "profile", deviceId: "a", properties: { Identity: "[object Object]" } },
        "INVALID_IDENTITY",
        "properties.Identity",
      ],
    ])("refuses %s with a code and the field", async (_name, record, code, field) => {
      const r = await one(record);
      expect(r.status).toBe(200);
      expect(r.body.status).toBe("fail");
      expect(r.body.unprocessed[0]).toMatchObject({ index: 0, code });
      if (field !== undefined) expect(r.body.unprocessed[0].field).toBe(field);
      expect(r.body.unprocessed[0].error).toEqual(expect.any(String));
    });

    it("a failing record in a batch leaves the others applied and changes nothing itself", async () => {
      const r = await s.api("POST", "/v1/ingest", {
        records: [
          { type: "profile", deviceId: "keep", properties: { Name: "Changed", Points: { $incr: 1 }, Phone: "bad" } },
          { type: "profile", deviceId: "keep", properties: { Color: "blue" } },
        ],
      });
      expect(r.body.status).toBe("partial");
      expect(r.body.unprocessed).toHaveLength(1);
      const p = await s.api("GET", `/v1/profiles/${known}`);
      expect(p.body.properties).toMatchObject({ Name: "Kept", Points: 5, Color: "blue" });
    });

    it("a type fixed by the first write is kept: a later value of another type is refused", async () => {
      const r = await one({ type: "profile", deviceId: "keep", properties: { Points: "many" } });
      expect(r.body.unprocessed[0]).toMatchObject({ code: "TYPE_MISMATCH", field: "properties.Points" });
      expect(r.body.unprocessed[0].error).toMatch(/number/);
      await expectUntouched();
    });

    it("stores SQL-looking and script values verbatim as data", async () => {
      const evil = "'); DROP TABLE profiles; -- <script>alert(1)</script>";
      const r = await one({ type: "profile", deviceId: "evil", properties: { Note: evil } });
      const id = r.body.results[0].profileId;
      expect((await s.api("GET", `/v1/profiles/${id}`)).body.properties.Note).toBe(evil);
      await expectUntouched();
    });

    it("refuses NUL characters and unpaired surrogates as one failed record, on both stores", async () => {
      const r = await s.api("POST", "/v1/ingest", {
        records: [
          { type: "profile", deviceId: "keep", properties: { Name: "nul\u0000byte" } },
          { type: "event", deviceId: "keep", name: "E", properties: { p: "\ud800" } },
          { type: "profile", deviceId: "keep", properties: { Color: "green" } },
        ],
      });
      expect(r.body.status).toBe("partial");
      expect(r.body.unprocessed.map((u: { code: string; field: string }) => [u.code, u.field])).toEqual([
        ["INVALID_VALUE", "properties.Name"],
        ["INVALID_VALUE", "properties.p"],
      ]);
      const p = await s.api("GET", `/v1/profiles/${known}`);
      expect(p.body.properties).toMatchObject({ Name: "Kept", Color: "green" });
    });

    it("refuses JSON nested thousands deep with a 4xx on every endpoint that reads JSON, never a crash", async () => {
      // Written as text: JSON.stringify itself would overflow on the deepest of these.
      const brackets = `${"[".repeat(6000)}"x"${"]".repeat(6000)}`;
      const objects = `${'{"k":'.repeat(10_000)}"x"${"}".repeat(10_000)}`;
      const nots = `${'{"not":'.repeat(6000)}{"type":"customer"}${"}".repeat(6000)}`;
      const r = await s.api(
        "POST",
        "/v1/ingest",
        `{"records":[{"type":"profile","deviceId":"keep","properties":{"Deep":${brackets}}},` +
          `{"type":"event","deviceId":"keep","name":"E","properties":{"deep":${objects}}},` +
          `{"type":"profile","deviceId":"keep","properties":{"Shade":"blue"}}]}`,
      );
      expect(r.status).toBe(200);
      expect(r.body.unprocessed.map((u: { code: string }) => u.code)).toEqual(["NESTING_TOO_DEEP", "NESTING_TOO_DEEP"]);
      expect(r.body.unprocessed[0].field.startsWith("properties.Deep")).toBe(true);
      const patch = await s.api("PATCH", `/v1/profiles/${known}`, `{"Deep":${brackets}}`);
      expect(patch).toMatchObject({ status: 400, body: { error: { code: "NESTING_TOO_DEEP" } } });
      const doc = await s.api("PUT", `/v1/profiles/${known}/documents/default/deep`, `{"deep":${objects}}`);
      expect(doc).toMatchObject({ status: 400, body: { error: { code: "NESTING_TOO_DEEP" } } });
      // 1e400 parses as Infinity, which a document would have stored as null.
      const big = await s.api("PUT", `/v1/profiles/${known}/documents/default/big`, '{"big":1e400}');
      expect(big).toMatchObject({ status: 400, body: { error: { code: "INVALID_VALUE", field: "big" } } });
      const query = await s.api("POST", "/v1/segments/query", `{"where":${nots}}`);
      expect(query).toMatchObject({ status: 400, body: { error: { code: "INVALID_SEGMENT" } } });
      const p = await s.api("GET", `/v1/profiles/${known}`);
      expect(p.body.properties).toMatchObject({ Name: "Kept", Shade: "blue" });
      expect(p.body.properties.Deep).toBeUndefined();
    });
  });

  describe("body bytes: UTF-8 only, nothing compressed (audit F12, F13)", () => {
    /** A request with these exact bytes as its body. */
    async function raw(method: string, path: string, body: Buffer, headers: Record<string, string> = {}) {
      const res = await fetch(s.url + path, {
        method,
        headers: { authorization: `Bearer ${SECRET}`, "content-type": "application/json", ...headers },
        body: new Uint8Array(body),
      });
      const text = await res.text();
      return { status: res.status, text, body: text ? JSON.parse(text) : null };
    }
    const bytes = (...parts: Array<string | number[]>) =>
      Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p) : Buffer.from(p))));

    it("refuses a body that is not UTF-8 with INVALID_JSON, on batch and other JSON routes, and stores nothing", async () => {
      const prefix = '{"records":[{"type":"profile","deviceId":"bad-utf8","properties":{"Name":"';
      const ingest = bytes(prefix, [0xff, 0xfe, 0xc3, 0x28], '"}}]}');
      for (const [path, type] of [
        ["/v1/ingest", "application/json"],
        [`/v1/sdk/batch?key=${PUBLIC}`, "text/plain"],
      ] as const) {
        const r = await raw("POST", path, ingest, { "content-type": type });
        expect(r.status, path).toBe(400);
        expect(r.body.error).toMatchObject({
          code: "INVALID_JSON",
          message: expect.stringContaining("not valid UTF-8"),
        });
        expect(r.body.error.message).toContain(`offset ${prefix.length}`);
      }
      expect((await s.api("GET", "/v1/profiles?deviceId=bad-utf8")).body.profiles).toEqual([]);
      for (const bad of [
        [0xed, 0xa0, 0x80],
        [0xc0, 0x80],
      ]) {
        const r = await raw("PATCH", `/v1/profiles/${known}`, bytes('{"Name":"', bad, '"}'));
        expect(r.status).toBe(400);
        expect(r.body.error.code).toBe("INVALID_JSON");
      }
      await expectUntouched();
      // Valid UTF-8 beyond ASCII is read as it was.
      const ok = await raw(
        "POST",
        "/v1/ingest",
        bytes('{"records":[{"type":"profile","deviceId":"good-utf8","properties":{"Name":"Zoë 😀"}}]}'),
      );
      expect(ok.body.status).toBe("success");
      const [stored] = (await s.api("GET", "/v1/profiles?deviceId=good-utf8")).body.profiles;
      expect(stored.properties.Name).toBe("Zoë 😀");
    });

    it("refuses a declared charset other than UTF-8 with 415, and takes utf-8 however it is spelt", async () => {
      const body = (name: string) => Buffer.from(`{"Name":"${name}"}`, "latin1");
      for (const charset of ["iso-8859-1", "latin1", "utf-16", "bogus"]) {
        const r = await raw("PATCH", `/v1/profiles/${known}`, body("Zoë"), {
          "content-type": `application/json; charset=${charset}`,
        });
        expect(r.status, charset).toBe(415);
        expect(r.body.error).toMatchObject({
          code: "UNSUPPORTED_MEDIA_TYPE",
          message: expect.stringContaining(charset),
        });
      }
      const batch = Buffer.from('{"records":[]}');
      const latin = await raw("POST", "/v1/ingest", batch, { "content-type": "application/json; charset=ISO-8859-1" });
      expect(latin.status).toBe(415);
      await expectUntouched();
      for (const charset of ["utf-8", "UTF-8", "utf8", '"utf-8"']) {
        const r = await raw("POST", "/v1/ingest", batch, { "content-type": `application/json; charset=${charset}` });
        expect(r.status, charset).toBe(200);
      }
    });

    it("refuses a compressed body with 415 naming Content-Encoding, never quoting its bytes, imports included", async () => {
      const { gzipSync } = await import("node:zlib");
      const zipped = gzipSync(Buffer.from('{"records":[{"type":"event","deviceId":"gz","name":"E"}]}'));
      for (const encoding of ["gzip", "deflate", "br", "x-bogus", "identity, gzip"]) {
        const r = await raw("POST", "/v1/ingest", zipped, { "content-encoding": encoding });
        expect(r.status, encoding).toBe(415);
        expect(r.body.error).toMatchObject({
          code: "UNSUPPORTED_MEDIA_TYPE",
          message: expect.stringContaining("Content-Encoding"),
        });
        expect(r.text).not.toMatch(/\\u00(1f|8b)/i);
      }
      const plain = await raw("POST", "/v1/ingest", Buffer.from('{"records":[]}'), { "content-encoding": "x-bogus" });
      expect(plain.status).toBe(415);
      const identity = await raw("POST", "/v1/ingest", Buffer.from('{"records":[]}'), {
        "content-encoding": "identity",
      });
      expect(identity.status).toBe(200);
      const before = (await s.api("GET", "/v1/imports")).body;
      const upload = await raw("POST", "/v1/imports?kind=profiles", gzipSync(Buffer.from("Email\nz@x.io\n")), {
        "content-type": "text/csv",
        "content-encoding": "gzip",
      });
      expect(upload.status).toBe(415);
      expect(upload.body.error.message).toContain("Content-Encoding");
      expect((await s.api("GET", "/v1/imports")).body).toEqual(before);
    });
  });

  describe("profile endpoints", () => {
    it("finds nobody by a value with NUL, while the searches that run beside it find theirs", async () => {
      const searches = await Promise.all([
        s.api("GET", "/v1/profiles?email=keep%40x.io"),
        s.api("GET", "/v1/profiles?identity=ke%00ep"),
        s.api("GET", "/v1/profiles?email=ke%00ep%40x.io"),
        s.api("GET", `/v1/profiles/${known}`),
        s.api("GET", "/v1/profiles?email=keep%40x.io"),
        s.api("GET", "/v1/profiles?compartmentId=1606&userAccountId=u%00a"),
        s.api("GET", "/v1/profiles?deviceId=ke%00ep"),
      ]);
      expect(searches.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200, 200]);
      expect(searches.map((r) => r.body.profiles?.map((p: { id: string }) => p.id) ?? r.body.id)).toEqual([
        [known],
        [],
        [],
        known,
        [known],
        [],
        [],
      ]);
    });

    it("answers searches with a missing partner, an unknown parameter or several handles naming the field", async () => {
      const refused = async (query: string) => (await s.api("GET", `/v1/profiles?${query}`)).body.error;
      expect(await refused("compartmentId=1606")).toMatchObject({
        code: "INVALID_VALUE",
        field: "userAccountId",
        message: expect.stringMatching(/compartmentId goes with userAccountId/),
      });
      expect(await refused("userAccountId=crm-1")).toMatchObject({ code: "INVALID_VALUE", field: "compartmentId" });
      expect(await refused("bogus=1")).toMatchObject({ code: "INVALID_VALUE", field: "bogus" });
      expect(await refused("email=keep%40x.io&identity=nobody")).toMatchObject({
        code: "MULTIPLE_HANDLES",
        message: expect.stringMatching(/email, identity|identity, email/),
      });
      expect(await refused("email=keep%40x.io&compartmentId=1606&userAccountId=u")).toMatchObject({
        code: "MULTIPLE_HANDLES",
      });
      expect(await refused("")).toMatchObject({ code: "MISSING_HANDLE" });
      // A malformed profile id finds nobody, as a malformed identity value does.
      for (const id of ["abc", "..%2Fetc", "A".repeat(32), "0".repeat(32)]) {
        expect(await s.api("GET", `/v1/profiles?profileId=${id}`)).toEqual({ status: 200, body: { profiles: [] } });
      }
    });

    it("names the path's id when a write names nobody, as reads do, and an empty id is no route", async () => {
      const nobody = "0".repeat(32);
      for (const [method, path, body] of [
        ["PATCH", `/v1/profiles/${nobody}`, { Name: "x" }],
        ["PUT", `/v1/profiles/${nobody}/test`, { test: true }],
        ["PUT", `/v1/profiles/${nobody}/control-group-exclusion`, { excluded: true }],
        ["PUT", `/v1/profiles/${nobody}/documents/c/u`, { a: 1 }],
        ["GET", `/v1/profiles/${nobody}`, undefined],
      ] as const) {
        expect(await s.api(method, path, body), `${method} ${path}`).toMatchObject({
          status: 404,
          body: { error: { code: "UNKNOWN_PROFILE", field: "id", message: `profile ${nobody} does not exist` } },
        });
      }
      for (const path of ["/v1/profiles/", "/v1/segments/", "/v1/imports/", "/v1/merges//undo"]) {
        const method = path.endsWith("undo") ? "POST" : "GET";
        expect(await s.api(method, path), path).toMatchObject({ status: 404, body: { error: { code: "NOT_FOUND" } } });
      }
    });

    it("answers a request whose headers and URL are over 16 KB in the error shape", async () => {
      const res = await fetch(`${s.url}/v1/keys?cursor=${"x".repeat(27_000)}`, {
        headers: { authorization: `Bearer ${SECRET}` },
      });
      expect(res.status).toBe(431);
      expect(await res.json()).toMatchObject({
        error: { code: "HEADERS_TOO_LARGE", message: expect.stringMatching(/16 KB/) },
      });
    });

    it("reads a page size written in decimal digits only, and a number in a JSON body", async () => {
      for (const limit of ["0x10", "1e2", "%202", "2.0", "+2"]) {
        for (const path of [`/v1/profiles/${known}/events`, "/v1/segments", "/v1/imports", "/v1/keys"]) {
          expect(await s.api("GET", `${path}?limit=${limit}`), `${path} ${limit}`).toMatchObject({
            status: 400,
            body: { error: { code: "INVALID_VALUE", field: "limit" } },
          });
        }
      }
      expect((await s.api("GET", `/v1/profiles/${known}/events?limit=2`)).status).toBe(200);
      const query = await s.api("POST", "/v1/segments/query", { where: { type: "customer" }, limit: "2" });
      expect(query).toMatchObject({ status: 400, body: { error: { field: "limit" } } });
      expect((await s.api("POST", "/v1/segments/query", { where: { type: "customer" }, limit: 2 })).status).toBe(200);
    });

    it("says which entry of a setting list is wrong, and the limit a list went over", async () => {
      const many = Array.from({ length: 1001 }, (_, i) => `k${i}`);
      expect(await s.api("PATCH", "/v1/account/settings", { publicProperties: many })).toMatchObject({
        status: 400,
        body: {
          error: {
            code: "INVALID_SETTING",
            field: "publicProperties",
            message: expect.stringMatching(/at most 1000 entries, got 1001/),
          },
        },
      });
      expect(await s.api("PATCH", "/v1/account/settings", { publicProperties: ["ok", ""] })).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_SETTING", field: "publicProperties[1]" } },
      });
    });

    it("takes an empty body sent as JSON on DELETE and undo, but not where a body is due", async () => {
      const json = { "content-type": "application/json" };
      const victim = (await one({ type: "event", deviceId: "empty-body", name: "E" })).body.results[0].profileId;
      expect(await s.api("DELETE", `/v1/profiles/${victim}`, undefined, json)).toMatchObject({
        status: 200,
        body: { deleted: { profiles: 1 } },
      });
      expect(await s.api("DELETE", `/v1/segments/${"0".repeat(24)}`, undefined, json)).toMatchObject({
        status: 404,
        body: { error: { code: "UNKNOWN_SEGMENT" } },
      });
      expect(await s.api("POST", "/v1/merges/nope/undo", undefined, json)).toMatchObject({
        status: 404,
        body: { error: { code: "UNKNOWN_MERGE" } },
      });
      expect(await s.api("POST", "/v1/ingest", undefined, json)).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_JSON" } },
      });
      // A body that is there is still read, and refused when it is not JSON.
      expect(await s.api("DELETE", `/v1/profiles/${known}`, "{oops", json)).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_JSON" } },
      });
      await expectUntouched();
    });

    it("refuses text no store can keep in key names, settings and path ids, on both stores", async () => {
      expect(await s.api("POST", "/v1/keys", { kind: "secret", name: "a\u0000b" })).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_VALUE", field: "name" } },
      });
      expect(await s.api("PATCH", "/v1/account/settings", { publicProperties: ["ok", "a\ud800"] })).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_VALUE", field: "publicProperties[1]" } },
      });
      expect(await s.api("PUT", `/v1/profiles/${known}/documents/crm/%00`, { x: 1 })).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_VALUE", field: "userAccountId" } },
      });
      expect((await s.api("GET", "/v1/account")).body.settings.publicProperties).not.toContain("a\ud800");
    });

    it("reaches documents with 256-character ids, and answers unreadable URLs in the error shape", async () => {
      const long = "c".repeat(256);
      const at = `/v1/profiles/${known}/documents/${long}/${"u".repeat(256)}`;
      expect((await s.api("PUT", at, { tier: "gold" })).status).toBe(200);
      expect((await s.api("GET", at)).body).toMatchObject({ tier: "gold" });
      expect((await s.api("DELETE", at)).status).toBe(200);
      // An id longer than any: the unknown-id answer of its resource (API.md keeps NOT_FOUND for unknown routes).
      const over = "f".repeat(400);
      for (const [method, route, code, field] of [
        ["GET", `/v1/profiles/${over}`, "UNKNOWN_PROFILE", "id"],
        ["GET", `/v1/profiles/${over}/events?limit=5`, "UNKNOWN_PROFILE", "id"],
        ["GET", `/v1/profiles/${known}/documents/c/${over}`, "UNKNOWN_DOCUMENT", "userAccountId"],
        ["GET", `/v1/segments/${over}`, "UNKNOWN_SEGMENT", "id"],
        ["GET", `/v1/imports/${over}`, "UNKNOWN_IMPORT", "id"],
        ["POST", `/v1/merges/${over}/undo`, "UNKNOWN_MERGE", "mergeId"],
        ["DELETE", `/v1/keys/${over}`, "UNKNOWN_KEY", "id"],
        ["DELETE", `/v1/sftp/keys/${over}`, "UNKNOWN_KEY", "id"],
      ] as const) {
        expect(await s.api(method, route), route).toMatchObject({ status: 404, body: { error: { code, field } } });
      }
      expect(await s.api("GET", `/v1/nothing/${over}`)).toMatchObject({
        status: 404,
        body: { error: { code: "NOT_FOUND" } },
      });
      expect(await s.api("GET", "/v1/segments/%E0%A4%A")).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_VALUE" } },
      });
    });

    it("refuses malformed ids, bodies and flags", async () => {
      expect(await s.api("GET", "/v1/profiles/..%2F..%2Fetc")).toMatchObject({
        status: 404,
        body: { error: { code: "UNKNOWN_PROFILE" } },
      });
      expect(await s.api("GET", `/v1/profiles/${"a".repeat(32)}`)).toMatchObject({
        status: 404,
        body: { error: { code: "UNKNOWN_PROFILE" } },
      });
      expect(await s.api("PATCH", `/v1/profiles/${known}`, "[1,2]")).toMatchObject({ status: 400 });
      expect(await s.api("PUT", `/v1/profiles/${known}/test`, { test: "yes" })).toMatchObject({
        status: 400,
        body: { error: { field: "test" } },
      });
      expect(await s.api("GET", `/v1/profiles/${known}/events?limit=0`)).toMatchObject({
        status: 400,
        body: { error: { field: "limit" } },
      });
      expect(await s.api("GET", `/v1/profiles/${known}/events?cursor=garbage`)).toMatchObject({
        status: 400,
        body: { error: { field: "cursor" } },
      });
      // Cursors made up or altered: out of any stored range, a NUL, another id form. 400 on both stores, never 500.
      await s.api("POST", "/v1/segments", { name: "cursor bait", where: { type: "customer" } });
      const real = (await s.api("GET", "/v1/segments?limit=1")).body;
      const crafted = (text: string) => Buffer.from(text).toString("base64url");
      for (const [path, text] of [
        [`/v1/profiles/${known}/events`, "99999999999999999999999:1"],
        [`/v1/profiles/${known}/events`, "1732000000000:99999999999999999999"],
        ["/v1/segments", "s:99999999999999999999:seg_000000000000000000000000"],
        ["/v1/segments", `s:1732000000000:${real.segments[0].id}\u0000`],
        ["/v1/segments", "s:1732000000000:seg_x"],
      ] as const) {
        expect(await s.api("GET", `${path}?limit=1&cursor=${crafted(text)}`), `${path} ${text}`).toMatchObject({
          status: 400,
          body: { error: { code: "INVALID_VALUE", field: "cursor" } },
        });
      }
      expect(await s.api("POST", "/v1/profiles/merge", { targetId: known, sourceId: "nope" })).toMatchObject({
        status: 404,
        body: { error: { code: "UNKNOWN_PROFILE", field: "sourceId" } },
      });
      expect(await s.api("POST", "/v1/profiles/merge", { targetId: known })).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_MERGE" } },
      });
      expect(await s.api("POST", "/v1/profiles/merge", { targetId: known, sourceId: known })).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_MERGE" } },
      });
      expect(await s.api("POST", "/v1/merges/nope/undo")).toMatchObject({
        status: 404,
        body: { error: { code: "UNKNOWN_MERGE" } },
      });
      expect(await s.api("PATCH", "/v1/account/settings", { identityKeys: ["Username"] })).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_SETTING", field: "identityKeys" } },
      });
      await expectUntouched();
    });

    it("allows at most 20 control-group exclusions per account", async () => {
      const ids: string[] = [];
      const r = await s.api("POST", "/v1/ingest", {
        records: Array.from({ length: 21 }, (_, i) => ({ type: "event", deviceId: `cg-${i}`, name: "E" })),
      });
      for (const x of r.body.results) ids.push(x.profileId);
      for (const id of ids.slice(0, 20))
        expect((await s.api("PUT", `/v1/profiles/${id}/control-group-exclusion`, { excluded: true })).status).toBe(200);
      expect(await s.api("PUT", `/v1/profiles/${ids[20]}/control-group-exclusion`, { excluded: true })).toMatchObject({
        status: 409,
        body: { error: { code: "CONTROL_GROUP_EXCLUSION_LIMIT" } },
      });
      expect((await s.api("PUT", `/v1/profiles/${ids[0]}/control-group-exclusion`, { excluded: false })).status).toBe(
        200,
      );
      expect((await s.api("PUT", `/v1/profiles/${ids[20]}/control-group-exclusion`, { excluded: true })).status).toBe(
        200,
      );
    });
  });

  describe("SDK endpoint", () => {
    it("takes text/plain JSON on the SDK endpoint only: a secret route answers 415", async () => {
      const res = await s.api("POST", "/v1/ingest", '{"records": []}', { "content-type": "text/plain" });
      expect(res).toMatchObject({ status: 415, body: { error: { code: "UNSUPPORTED_MEDIA_TYPE" } } });
    });

    it("answers a CORS preflight with 204 and records it as one, not as a server error", async () => {
      const preflight = await fetch(`${s.url}/v1/sdk/batch`, {
        method: "OPTIONS",
        headers: { origin: "https://shop.example", "access-control-request-method": "POST" },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get("access-control-allow-origin")).toBe("https://shop.example");
      const metrics = (await s.api("GET", "/metrics")).body as string;
      expect(metrics).toContain('method="OPTIONS",route="/v1/sdk/*",status="204"');
      expect(metrics).not.toContain('method="OPTIONS",route="/v1/sdk/*",status="500"');
    });

    it("takes a public key and device handles only, JSON as text/plain, with CORS", async () => {
      const body = JSON.stringify({ records: [{ type: "event", deviceId: "browser-1", name: "Page Viewed" }] });
      const res = await fetch(`${s.url}/v1/sdk/batch?key=${PUBLIC}`, {
        method: "POST",
        headers: { "content-type": "text/plain", origin: "https://shop.example" },
        body,
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("access-control-allow-origin")).toBe("https://shop.example");
      expect((await res.json()).status).toBe("success");

      const r = await s.api(
        "POST",
        `/v1/sdk/batch?key=${PUBLIC}`,
        { records: [{ type: "profile", identity: { Email: "keep@x.io" }, properties: { Name: "Hijack" } }] },
        { authorization: "" },
      );
      expect(r.body.unprocessed[0]).toMatchObject({ code: "HANDLE_NOT_ALLOWED", field: "identity" });
      expect((await s.api("POST", "/v1/sdk/batch?key=pk_wrong", { records: [] }, { authorization: "" })).status).toBe(
        401,
      );
      expect(
        (
          await s.api("POST", `/v1/sdk/batch?key=${PUBLIC}`, "{oops", {
            authorization: "",
            "content-type": "text/plain",
          })
        ).body.error.code,
      ).toBe("INVALID_JSON");
      // A public key cannot read profiles.
      expect((await s.api("GET", `/v1/profiles/${known}?key=${PUBLIC}`, undefined, { authorization: "" })).status).toBe(
        403,
      );
      await expectUntouched();
    });

    it("refuses a secret key in the URL, where logs keep it, on every route; the header still works", async () => {
      for (const [method, route] of [
        ["GET", `/v1/profiles/${known}`],
        ["POST", "/v1/sdk/batch"],
      ] as const) {
        const body = method === "POST" ? { records: [] } : undefined;
        const r = await s.api(method, `${route}?key=${SECRET}`, body, { authorization: "" });
        expect(r).toMatchObject({ status: 401, body: { error: { code: "UNAUTHORIZED", field: "key" } } });
        expect(r.body.error.message).toMatch(/Authorization: Bearer/);
        expect((await s.api(method, route, body)).status).toBe(200);
      }
      await expectUntouched();
    });
  });
});
