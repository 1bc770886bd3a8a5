/**
 * Every answer carries `X-Content-Type-Options: nosniff` (SDK audit F8): the JSON that echoes what pages stored, CSV
 * exports, the SDK bundle and example pages, refusals and 404s, and the answers written raw, before any hook runs.
 */
import http from "node:http";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runImport } from "../test-support/imports.js";
import { PUBLIC, SECRET, startTestServer, type TestServer } from "../test-support/server.js";

let s: TestServer;

beforeAll(async () => {
  s = await startTestServer({ PORTRAIT_IMPORT_MAX_BYTES: "1000" });
});
afterAll(async () => {
  await s.close();
});

const auth = { authorization: `Bearer ${SECRET}` };

/** A request sent as written (no client normalises the path), with its status and headers. */
function raw(
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders }> {
  const { hostname, port } = new URL(s.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path, method, headers }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("X-Content-Type-Options: nosniff", () => {
  it("is on JSON, CSV, the SDK bundle and pages, HEAD, preflights, refusals and 404s", async () => {
    const made = await s.api("POST", "/v1/ingest", {
      records: [{ type: "profile", deviceId: "sniff-1", properties: { Bio: "<script>alert(1)</script>" } }],
    });
    const id = made.body.results[0].profileId as string;
    const segment = await s.api("POST", "/v1/segments", { name: "all", where: { type: "anonymous" } });
    const imported = await runImport(s, "profiles", "Identity,Name\nsn-1,A\nsn-2\u0000,B\n");

    const seen: Array<[string, Response]> = [];
    const get = async (what: string, path: string, init: RequestInit = {}) => {
      seen.push([what, await fetch(`${s.url}${path}`, init)]);
    };
    await get("health", "/healthz");
    await get("profile JSON", `/v1/profiles/${id}`, { headers: auth });
    await get("sdk profile", `/v1/sdk/profile?key=${PUBLIC}&deviceId=sniff-1`);
    await get("segment CSV", `/v1/segments/${segment.body.id}/export.csv`, { headers: auth });
    await get("failures CSV", `/v1/imports/${imported.id}/failures.csv`, { headers: auth });
    await get("SDK bundle (200, or 404 while another suite rebuilds it)", "/sdk/portrait.js");
    await get("example page", "/sdk/examples/index.html");
    await get("OpenAPI", "/v1/openapi.json");
    await get("metrics", "/metrics");
    await get("HEAD", "/healthz", { method: "HEAD" });
    await get("preflight", "/v1/sdk/batch", {
      method: "OPTIONS",
      headers: { origin: "https://shop.example", "access-control-request-method": "POST" },
    });
    await get("401", "/v1/account");
    await get("403", `/v1/account?key=${PUBLIC}`);
    await get("404 route", "/nothing/here");
    await get("404 profile", `/v1/profiles/${"0".repeat(32)}`, { headers: auth });
    await get("400", "/v1/ingest", {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: "{",
    });
    await get("415", `/v1/sdk/batch?key=${PUBLIC}`, { method: "POST", body: new Uint8Array([123, 125]) });
    await get("413", "/v1/ingest", {
      method: "POST",
      headers: { ...auth, "content-type": "application/json" },
      body: `{"records":[],"x":"${"x".repeat(6 * 1024 * 1024)}"}`,
    });
    expect(seen.find(([what]) => what === "segment CSV")?.[1].headers.get("content-type")).toMatch(/^text\/csv/);
    expect(seen.find(([what]) => what === "example page")?.[1].headers.get("content-type")).toMatch(/^text\/html/);
    for (const [what, res] of seen) {
      expect(res.headers.get("x-content-type-options"), `${what} (${res.status})`).toBe("nosniff");
      await res.arrayBuffer();
    }
    expect(seen.map(([, res]) => res.status)).toEqual(expect.arrayContaining([200, 204, 400, 401, 403, 404, 413, 415]));
  });

  it("is on answers written before routing: a broken URL, an over-long header, a refused Expect: 100-continue", async () => {
    const broken = await raw("GET", "/v1/profiles/%E0%A4%A");
    expect(broken.status).toBe(400);
    expect(broken.headers["x-content-type-options"]).toBe("nosniff");

    const expect100 = await raw("POST", "/v1/imports?kind=profiles", {
      ...auth,
      "content-type": "text/csv",
      "content-length": "5000",
      expect: "100-continue",
    });
    expect(expect100.status).toBe(413);
    expect(expect100.headers["x-content-type-options"]).toBe("nosniff");

    const { hostname, port } = new URL(s.url);
    const head = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(port), hostname, () => {
        socket.write(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`);
      });
      let text = "";
      socket.on("data", (c) => {
        text += c.toString("latin1");
      });
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    expect(head).toMatch(/^HTTP\/1\.1 431 /);
    expect(head.toLowerCase()).toContain("\r\nx-content-type-options: nosniff\r\n");
  });
});
