/**
 * The OpenAPI document (GET /v1/openapi.json) against the server that serves it: every route is documented and every
 * documented operation is served; a tour makes real requests (a success for each operation, and the main refusals)
 * and checks each reply's status, media type and body against what the document says for that operation and status.
 */
import { execFileSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { existsSync } from "node:fs";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForImport } from "../test-support/imports.js";
import { PUBLIC, SECRET, startTestServer, type TestServer } from "../test-support/server.js";
import { registeredRoutes } from "./app.js";

// biome-ignore lint/suspicious/noExplicitAny: the document and reply bodies are walked as plain JSON
type Json = any;

const METHODS = ["get", "put", "post", "delete", "patch"] as const;

let s: TestServer;
let doc: Json;
let ajv: Ajv2020;
/** operationId → the statuses the tour saw. */
const seen = new Map<string, Set<number>>();

/** An OpenAPI path template as a regular expression: `{id}` is one segment, `{*}` the rest. */
function templateRegex(template: string): RegExp {
  const pattern = template
    .split(/(\{[^}]+\})/)
    .map((part) =>
      part === "{*}" ? ".*" : part.startsWith("{") ? "[^/]+" : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"),
    )
    .join("");
  return new RegExp(`^${pattern}$`);
}

function operationOf(method: string, path: string): { template: string; op: Json } {
  const matches = Object.keys(doc.paths).filter((t) => templateRegex(t).test(path) && doc.paths[t][method]);
  // A literal segment beats a parameter (/v1/profiles/merge is not /v1/profiles/{id}).
  matches.sort((a, b) => (b.match(/\{/g)?.length ?? 0) - (a.match(/\{/g)?.length ?? 0)).reverse();
  const template = matches[0];
  if (!template) throw new Error(`no documented operation for ${method.toUpperCase()} ${path}`);
  return { template, op: doc.paths[template][method] };
}

/** JSON-pointer escaping of one segment. */
const esc = (segment: string) => segment.replace(/~/g, "~0").replace(/\//g, "~1");

interface Reply {
  status: number;
  body: Json;
  text: string;
  headers: Headers;
}

/**
 * One request of the tour. The reply must be documented for its operation and status, in its media type, and a JSON
 * body must match the schema given there.
 */
async function call(
  method: string,
  path: string,
  opts: { body?: string | object | Uint8Array | FormData; type?: string; key?: string | null; headers?: object } = {},
): Promise<Reply> {
  const headers: Record<string, string> = { ...(opts.headers as Record<string, string>) };
  const key = opts.key === undefined ? SECRET : opts.key;
  if (key !== null) headers.authorization = `Bearer ${key}`;
  let body: BodyInit | undefined;
  if (opts.body instanceof FormData || opts.body instanceof Uint8Array) body = opts.body as BodyInit;
  else if (typeof opts.body === "string") body = opts.body;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined && !(opts.body instanceof FormData)) headers["content-type"] = opts.type ?? "application/json";
  const res = await fetch(s.url + path, { method, headers, body });
  const text = await res.text();
  let parsed: Json = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: CSV, JavaScript, HTML, metrics
  }
  const where = `${method} ${path.split("?")[0]} → ${res.status}`;
  const { template, op } = operationOf(method.toLowerCase(), path.split("?")[0] as string);
  const statuses = seen.get(op.operationId) ?? new Set<number>();
  statuses.add(res.status);
  seen.set(op.operationId, statuses);
  const documented = op.responses[String(res.status)];
  expect(documented, `${where} is not documented (${text.slice(0, 200)})`).toBeDefined();
  const mediaType = (res.headers.get("content-type") ?? "").split(";")[0]?.trim() ?? "";
  if (documented.content === undefined) {
    expect(text, `${where}: documented without a body`).toBe("");
  } else {
    expect(Object.keys(documented.content), `${where}: media type`).toContain(mediaType);
    if (mediaType === "application/json") {
      const pointer = ["paths", template, method.toLowerCase(), "responses", String(res.status), "content", mediaType];
      const validate = ajv.getSchema(`openapi.json#/${[...pointer.map(esc), "schema"].join("/")}`);
      if (!validate) throw new Error(`${where}: no schema to validate with`);
      const ok = validate(parsed);
      expect(ok, `${where}: ${ajv.errorsText(validate.errors)}\n${text.slice(0, 600)}`).toBe(true);
    }
  }
  return { status: res.status, body: parsed, text, headers: res.headers };
}

/** An OpenSSH line for a fresh Ed25519 key. */
function sshEd25519(): string {
  const raw = generateKeyPairSync("ed25519").publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const field = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), b]);
  return `ssh-ed25519 ${Buffer.concat([field(Buffer.from("ssh-ed25519")), field(raw)]).toString("base64")} tour`;
}

/** Every `$ref` in a JSON value, with where it is. */
function refs(value: Json, at = "#"): Array<{ ref: string; at: string }> {
  if (Array.isArray(value)) return value.flatMap((v, i) => refs(v, `${at}/${i}`));
  if (value === null || typeof value !== "object") return [];
  return Object.entries(value).flatMap(([k, v]) =>
    k === "$ref" && typeof v === "string" ? [{ ref: v, at }] : refs(v, `${at}/${esc(k)}`),
  );
}

function resolvePointer(root: Json, pointer: string): Json {
  let node = root;
  for (const raw of pointer.replace(/^#\/?/, "").split("/")) {
    if (raw === "") continue;
    const segment = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (node === null || typeof node !== "object" || !(segment in node)) return undefined;
    node = node[segment];
  }
  return node;
}

beforeAll(async () => {
  // GET /sdk/portrait.js serves the built bundle: build it, as `npm run build` does, when it is missing.
  if (!existsSync(new URL("../../dist/sdk/portrait.js", import.meta.url))) {
    execFileSync("npm", ["run", "--silent", "build:sdk"], { stdio: "pipe" });
  }
  s = await startTestServer();
  doc = await (await fetch(`${s.url}/v1/openapi.json`)).json();
  ajv = new Ajv2020({ strict: false, allErrors: true });
  // ajv-formats is CommonJS: its default import is module.exports, whose `default` is the plugin.
  addFormats.default(ajv);
  // The whole document as one schema resource, so that each response schema is reached by its JSON pointer and its
  // `#/components/schemas/…` references resolve inside the document.
  ajv.addSchema(doc, "openapi.json");
});

afterAll(async () => {
  await s?.close();
});

describe("the document", () => {
  it("is OpenAPI 3.1, every $ref resolves and every component compiles", () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    const all = refs(doc);
    expect(all.length).toBeGreaterThan(50);
    for (const { ref, at } of all) {
      expect(ref, at).toMatch(/^#\//);
      expect(resolvePointer(doc, ref), `${ref} at ${at}`).toBeDefined();
    }
    for (const name of Object.keys(doc.components.schemas)) {
      expect(() => ajv.getSchema(`openapi.json#/components/schemas/${esc(name)}`), name).not.toThrow();
    }
  });

  it("gives every operation an operationId (unique) and every response a closed or typed schema", () => {
    const ids: string[] = [];
    for (const [path, item] of Object.entries<Json>(doc.paths)) {
      for (const method of METHODS) {
        const op = item[method];
        if (!op) continue;
        expect(op.operationId, `${method} ${path}`).toMatch(/^[a-z][A-Za-z]+$/);
        ids.push(op.operationId);
        for (const [status, response] of Object.entries<Json>(op.responses)) {
          expect(status, `${op.operationId}`).not.toBe("default");
          for (const media of Object.values<Json>(response.content ?? {})) {
            // A schema that accepts anything documents nothing (and would let the tour pass whatever the server says).
            expect(media.schema, `${op.operationId} ${status}`).not.toEqual({});
            expect(media.schema, `${op.operationId} ${status}`).not.toEqual({ type: "object" });
          }
        }
      }
    }
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("documents exactly the routes the server registered (HEAD and OPTIONS aside)", () => {
    const served = new Set(
      registeredRoutes(s.server.app)
        .filter((r) => r.method !== "HEAD" && r.method !== "OPTIONS")
        .map((r) => `${r.method} ${r.url.replace(/:(\w+)/g, "{$1}").replace(/\*$/, "{*}")}`),
    );
    const documented = new Set<string>();
    for (const [path, item] of Object.entries<Json>(doc.paths)) {
      for (const method of METHODS) if (item[method]) documented.add(`${method.toUpperCase()} ${path}`);
    }
    expect([...documented].sort()).toEqual([...served].sort());
  });
});

describe("a tour of the API, each reply checked against the document", () => {
  it("answers as documented, a success for every operation", async () => {
    // Health, meta, SDK bundle: no key.
    await call("GET", "/healthz", { key: null });
    await call("GET", "/metrics", { key: null });
    await call("GET", "/v1/openapi.json", { key: null });
    const bundle = await call("GET", "/sdk/portrait.js", { key: null });
    expect(bundle.status).toBe(200);
    const etag = bundle.headers.get("etag") as string;
    expect((await call("GET", "/sdk/portrait.js", { key: null, headers: { "if-none-match": etag } })).status).toBe(304);
    expect((await call("GET", "/sdk/examples/index.html", { key: null })).status).toBe(200);
    expect((await call("GET", "/sdk/examples/none.html", { key: null })).status).toBe(404);

    // Account and keys.
    expect((await call("GET", "/v1/account")).status).toBe(200);
    expect((await call("GET", "/v1/account", { key: null })).status).toBe(401);
    expect((await call("GET", "/v1/account", { key: "sk_unknown_0123456789abcdef" })).status).toBe(401);
    expect((await call("GET", "/v1/account", { key: PUBLIC })).status).toBe(403);
    const settings = await call("PATCH", "/v1/account/settings", {
      body: { publicProperties: ["Plan"], identityLimits: { Email: 2 } },
    });
    expect(settings.status).toBe(200);
    expect((await call("PATCH", "/v1/account/settings", { body: { timezone: "Nowhere/X" } })).status).toBe(400);
    expect((await call("PATCH", "/v1/account/settings", { body: "{oops" })).body.error.code).toBe("INVALID_JSON");
    expect((await call("GET", "/v1/keys")).status).toBe(200);
    const key = await call("POST", "/v1/keys", { body: { kind: "public", name: "web" } });
    expect(key.status).toBe(201);
    expect((await call("POST", "/v1/keys", { body: { kind: "nope" } })).status).toBe(400);
    expect((await call("DELETE", `/v1/keys/${key.body.id}`)).status).toBe(200);
    expect((await call("DELETE", "/v1/keys/nope")).status).toBe(404);

    // Ingest, with records that fail alone.
    const ingest = await call("POST", "/v1/ingest", {
      body: {
        records: [
          { type: "login", deviceId: "d-1", properties: { Identity: "u-1", Email: "a@x.io", DOB: "1990-01-02" } },
          { type: "profile", deviceId: "d-1", properties: { Plan: "pro", Points: { $incr: 10 }, Tags: ["a", "b"] } },
          { type: "event", deviceId: "d-1", name: "Charged", id: "m-1", properties: { Amount: 12.5 } },
          { type: "token", deviceId: "d-1", channel: "push", token: "tok" },
          { type: "profile", deviceId: "d-2", properties: { Phone: "223" } },
          { type: "login", deviceId: "d-3", properties: { Identity: "u-2", Email: "b@x.io" } },
          { type: "login", deviceId: "d-4", properties: { Identity: "u-3", Email: "a@x.io" } },
        ],
      },
    });
    expect(ingest.body.status).toBe("partial");
    const ana = ingest.body.results[0].profileId as string;
    const bea = ingest.body.results.find((r: Json) => r.index === 5).profileId as string;
    expect((await call("POST", "/v1/ingest", { body: "{records: [" })).body.error.code).toBe("INVALID_JSON");
    expect((await call("POST", "/v1/ingest", { body: "[]" })).body.error.code).toBe("INVALID_BATCH");
    expect((await call("POST", "/v1/ingest", { body: "{}", type: "text/plain" })).status).toBe(415);
    const huge = { records: [{ type: "event", deviceId: "x", name: "E", properties: { p: "x".repeat(5_300_000) } }] };
    expect((await call("POST", "/v1/ingest", { body: huge })).status).toBe(413);

    // Profiles.
    expect((await call("GET", `/v1/profiles/${ana}`)).status).toBe(200);
    expect((await call("GET", `/v1/profiles/${"0".repeat(32)}`)).body.error.code).toBe("UNKNOWN_PROFILE");
    expect((await call("GET", "/v1/profiles?email=a@x.io")).body.profiles).toHaveLength(1);
    expect((await call("GET", "/v1/profiles?deviceId=d-1")).status).toBe(200);
    expect((await call("GET", "/v1/profiles?phone=bad")).body.profiles).toEqual([]);
    expect((await call("GET", "/v1/profiles")).status).toBe(400);
    const page = await call("GET", `/v1/profiles/${ana}/events?limit=1`);
    expect(page.body.nextCursor).toEqual(expect.any(String));
    await call("GET", `/v1/profiles/${ana}/events?cursor=${page.body.nextCursor}`);
    expect((await call("GET", `/v1/profiles/${ana}/events?limit=0`)).status).toBe(400);
    expect((await call("PATCH", `/v1/profiles/${ana}`, { body: { Score: 3 } })).status).toBe(200);
    expect((await call("PATCH", `/v1/profiles/${ana}`, { body: { Email: "b@x.io" } })).status).toBe(400);
    expect((await call("PUT", `/v1/profiles/${ana}/test`, { body: { test: true } })).status).toBe(200);
    expect((await call("PUT", `/v1/profiles/${ana}/test`, { body: { test: "yes" } })).status).toBe(400);
    expect(
      (await call("PUT", `/v1/profiles/${ana}/control-group-exclusion`, { body: { excluded: true } })).status,
    ).toBe(200);

    // Documents.
    const doc1 = `/v1/profiles/${ana}/documents/c1/u1`;
    expect((await call("PUT", doc1, { body: { a: 1, nested: { b: [true] } } })).status).toBe(200);
    expect((await call("PUT", doc1, { body: { big: "x".repeat(70_000) } })).status).toBe(413);
    expect((await call("GET", doc1)).status).toBe(200);
    expect((await call("GET", `/v1/profiles/${ana}/documents`)).body.documents).toHaveLength(1);
    expect((await call("GET", `/v1/profiles/${ana}/documents/c1/none`)).status).toBe(404);
    expect((await call("GET", `/v1/profiles/${ana}/export`)).status).toBe(200);
    expect((await call("DELETE", doc1)).status).toBe(200);

    // Merges.
    const other = await call("POST", "/v1/ingest", {
      body: { records: [{ type: "profile", deviceId: "d-9", properties: { Plan: "x" } }] },
    });
    const merge = await call("POST", "/v1/profiles/merge", {
      body: { targetId: ana, sourceId: other.body.results[0].profileId },
    });
    expect(merge.status).toBe(200);
    // The export of a merge that can be undone holds its snapshots (mergeSnapshots).
    expect((await call("GET", `/v1/profiles/${ana}/export`)).body.mergeSnapshots).toHaveLength(1);
    expect((await call("POST", "/v1/profiles/merge", { body: { targetId: ana } })).status).toBe(400);
    expect(
      (await call("POST", "/v1/profiles/merge", { body: { targetId: ana, sourceId: "f".repeat(32) } })).status,
    ).toBe(404);
    expect((await call("POST", `/v1/merges/${merge.body.mergeId}/undo`)).status).toBe(200);
    expect((await call("POST", `/v1/merges/${merge.body.mergeId}/undo`)).body.error.code).toBe("ALREADY_UNDONE");
    expect((await call("POST", "/v1/merges/nope/undo")).body.error.code).toBe("UNKNOWN_MERGE");
    // An undo that leaves a released identity value with its new holder, and a device with the person it went to.
    const people = await call("POST", "/v1/ingest", {
      body: {
        records: [
          { type: "login", deviceId: "m-t", ts: 1_790_000_005, properties: { Identity: "m-tgt" } },
          { type: "login", deviceId: "m-s", ts: 1_790_000_001, properties: { Identity: "m-src" } },
        ],
      },
    });
    const [mt, ms] = people.body.results.map((r: Json) => r.profileId);
    const merged = await call("POST", "/v1/profiles/merge", { body: { targetId: mt, sourceId: ms } });
    await call("POST", "/v1/ingest", {
      body: {
        records: [
          { type: "profile", identity: { Identity: "m-src" }, properties: { Plan: "x" } },
          { type: "login", deviceId: "m-s", properties: { Identity: "m-src" } },
        ],
      },
    });
    const partial = await call("POST", `/v1/merges/${merged.body.mergeId}/undo`);
    expect(partial.body.unapplied).toEqual([
      { profileId: ms, key: "Identity", value: "m-src", code: "IDENTITY_CONFLICT" },
      { profileId: ms, key: "deviceId", value: "m-s", code: "DEVICE_MOVED" },
    ]);

    // Segments.
    const where = { property: "Plan", op: "eq", value: "pro" };
    expect((await call("POST", "/v1/segments/query", { body: { where } })).body.count).toBe(1);
    expect((await call("POST", "/v1/segments/query", { body: { where: { property: "Plan", op: "zz" } } })).status).toBe(
      400,
    );
    const seg = await call("POST", "/v1/segments", { body: { name: "Pro", where } });
    expect(seg.status).toBe(201);
    await call("POST", "/v1/segments", { body: { name: "Uses Pro", where: { inSegment: seg.body.id } } });
    const segments = await call("GET", "/v1/segments?limit=1");
    await call("GET", `/v1/segments?cursor=${segments.body.nextCursor}`);
    expect((await call("GET", `/v1/segments/${seg.body.id}`)).status).toBe(200);
    expect((await call("GET", `/v1/segments/${seg.body.id}/profiles?limit=10`)).body.count).toBe(1);
    expect((await call("GET", `/v1/segments/${seg.body.id}/export.csv`)).text).toMatch(/^id,type,/);
    expect((await call("DELETE", `/v1/segments/${seg.body.id}`)).body.error.code).toBe("SEGMENT_IN_USE");
    expect((await call("GET", "/v1/segments/nope")).body.error.code).toBe("UNKNOWN_SEGMENT");
    expect((await call("GET", "/v1/segments/nope/profiles")).status).toBe(404);
    const unused = await call("POST", "/v1/segments", { body: { name: "Unused", where: { test: true } } });
    expect((await call("DELETE", `/v1/segments/${unused.body.id}`)).status).toBe(200);

    // SFTP keys.
    const sftp = await call("POST", "/v1/sftp/keys", { body: { name: "laptop", publicKey: sshEd25519() } });
    expect(sftp.status).toBe(201);
    expect((await call("GET", "/v1/sftp/keys")).body.keys).toHaveLength(1);
    expect((await call("POST", "/v1/sftp/keys", { body: { name: "x", publicKey: "nope" } })).status).toBe(400);
    expect((await call("DELETE", `/v1/sftp/keys/${sftp.body.id}`)).status).toBe(200);
    expect((await call("DELETE", `/v1/sftp/keys/${sftp.body.id}`)).status).toBe(404);

    // Imports: CSV, NDJSON, multipart.
    const csv = await call("POST", "/v1/imports?kind=profiles", {
      body: "Email,Plan\nc@x.io,a\nbad,b\n",
      type: "text/csv",
    });
    expect(csv.status).toBe(202);
    await waitForImport(s, csv.body.id);
    expect((await call("GET", `/v1/imports/${csv.body.id}`)).body.status).toBe("done");
    expect((await call("GET", `/v1/imports/${csv.body.id}/failures.csv`)).text).toMatch(/Failure Description/);
    const ndjson = '{"identity": "u-9", "evtName": "Opened", "ts": 1732000000}\n';
    expect((await call("POST", "/v1/imports?kind=events", { body: ndjson, type: "application/x-ndjson" })).status).toBe(
      202,
    );
    const form = new FormData();
    form.append("file", new Blob(["Email\nd@x.io\n"], { type: "text/csv" }), "people.csv");
    expect((await call("POST", "/v1/imports?kind=profiles", { body: form })).status).toBe(202);
    expect((await call("POST", "/v1/imports", { body: "Email\n", type: "text/csv" })).status).toBe(400);
    expect((await call("POST", "/v1/imports?kind=profiles", { body: "{}", type: "application/json" })).status).toBe(
      415,
    );
    const listed = await call("GET", "/v1/imports?limit=2");
    expect(listed.body.imports).toHaveLength(2);
    expect((await call("GET", `/v1/imports?cursor=${listed.body.nextCursor}`)).status).toBe(200);
    expect((await call("GET", "/v1/imports?cursor=bogus")).body.error.code).toBe("INVALID_VALUE");
    expect((await call("GET", "/v1/imports/nope")).body.error.code).toBe("UNKNOWN_IMPORT");
    expect((await call("GET", "/v1/imports/nope/failures.csv")).status).toBe(404);

    // SDK endpoints: the public key in the URL or as Bearer; JSON also as text/plain.
    const sdkBatch = { records: [{ type: "profile", deviceId: "d-1", properties: { Plan: "pro" } }] };
    expect((await call("POST", `/v1/sdk/batch?key=${PUBLIC}`, { key: null, body: sdkBatch })).status).toBe(200);
    const beacon = await call("POST", `/v1/sdk/batch?key=${PUBLIC}`, {
      key: null,
      body: JSON.stringify({ records: [{ type: "profile", identity: { Email: "a@x.io" } }] }),
      type: "text/plain",
    });
    expect(beacon.body.unprocessed[0].code).toBe("HANDLE_NOT_ALLOWED");
    expect((await call("POST", "/v1/sdk/batch", { key: PUBLIC, body: "[]" })).status).toBe(400);
    expect((await call("POST", "/v1/sdk/batch", { key: null, body: sdkBatch })).status).toBe(401);
    const profile = await call("GET", `/v1/sdk/profile?key=${PUBLIC}&deviceId=d-1`, { key: null });
    expect(profile.body).toEqual({ properties: { Plan: "pro" } });
    expect((await call("GET", `/v1/sdk/profile?key=${PUBLIC}`, { key: null })).status).toBe(400);
    expect((await call("GET", `/v1/sdk/profile?key=${SECRET}&deviceId=d-1`, { key: null })).status).toBe(401);
    await call("PATCH", "/v1/account/settings", { body: { allowedOrigins: ["https://shop.example"] } });
    const foreign = await call("GET", `/v1/sdk/profile?key=${PUBLIC}&deviceId=d-1`, {
      key: null,
      headers: { origin: "https://evil.example" },
    });
    expect(foreign.status).toBe(403);

    // 409s of settings and of the control group.
    await call("POST", "/v1/ingest", {
      body: {
        records: ["p-1", "p-2"].map((deviceId) => ({
          type: "profile",
          deviceId,
          properties: { Phone: "+33612345678" },
        })),
      },
    });
    const phoneKey = await call("PATCH", "/v1/account/settings", {
      body: { identityKeys: ["Identity", "Email", "Phone"] },
    });
    expect(phoneKey.body.error.code).toBe("IDENTITY_KEY_CONFLICT");
    const many = await call("POST", "/v1/ingest", {
      body: {
        records: Array.from({ length: 20 }, (_, i) => ({ type: "profile", deviceId: `x-${i}`, properties: { N: i } })),
      },
    });
    const limit: Reply[] = [];
    for (const r of many.body.results as Json[]) {
      limit.push(
        await call("PUT", `/v1/profiles/${r.profileId}/control-group-exclusion`, { body: { excluded: true } }),
      );
    }
    expect(limit.at(-1)?.body.error.code).toBe("CONTROL_GROUP_EXCLUSION_LIMIT");

    // Delete last.
    expect((await call("DELETE", `/v1/profiles/${bea}`)).status).toBe(200);
    expect((await call("DELETE", `/v1/profiles/${bea}`)).status).toBe(404);

    // Every documented operation answered a success at least once.
    const missing: string[] = [];
    for (const item of Object.values<Json>(doc.paths)) {
      for (const method of METHODS) {
        const op = item[method];
        if (op && ![...(seen.get(op.operationId) ?? [])].some((status) => status < 300)) missing.push(op.operationId);
      }
    }
    expect(missing).toEqual([]);
  });
});
