import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../../test-support/server.js";
import { schemasAsDocumentation } from "../app.js";
import { errorHandler } from "../errors.js";
import { resolveExample, sdkBundleRoutes } from "./sdk-bundle.js";

/** A GET sent byte for byte as written: no client normalises `..` or decodes anything on the way. */
function rawGet(base: string, rawPath: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, path: rawPath, method: "GET" }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Paths that try to leave examples/ (as sent on the wire, before the router decodes them). */
const ESCAPES = [
  "/sdk/examples/../secret.txt",
  "/sdk/examples/%2e%2e/secret.txt",
  "/sdk/examples/%2E%2E%2Fsecret.txt",
  "/sdk/examples/..%2fsecret.txt",
  "/sdk/examples/..%5csecret.txt",
  "/sdk/examples/%2e%2e%5csecret.txt",
  "/sdk/examples/sub/../../secret.txt",
  "/sdk/examples/sub/%2e%2e/%2e%2e/secret.txt",
  "/sdk/examples//etc/passwd",
  "/sdk/examples/%2fetc%2fpasswd",
  "/sdk/examples/page.html%00.txt",
  "/sdk/examples/.hidden.html",
  "/sdk/examples/outside.html",
  "/sdk/examples/sub",
  "/sdk/examples/page.cgi",
];

describe("GET /sdk/portrait.js and /sdk/examples/* (files on disk)", () => {
  let dir: string;
  let app: FastifyInstance;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "portrait-sdk-bundle-"));
    const examples = path.join(dir, "examples");
    mkdirSync(path.join(examples, "sub"), { recursive: true });
    writeFileSync(path.join(dir, "secret.txt"), "SECRET");
    writeFileSync(path.join(dir, "outside-target.html"), "SECRET");
    writeFileSync(path.join(examples, "index.html"), "<p>index</p>");
    writeFileSync(path.join(examples, "page.html"), "<p>page</p>");
    writeFileSync(path.join(examples, "page.cgi"), "SECRET");
    writeFileSync(path.join(examples, ".hidden.html"), "SECRET");
    writeFileSync(path.join(examples, "sub", "deep.js"), "deep()");
    symlinkSync(path.join(dir, "outside-target.html"), path.join(examples, "outside.html"));
    writeFileSync(path.join(dir, "bundle.js"), "/* sdk */");
    app = Fastify();
    schemasAsDocumentation(app);
    app.setErrorHandler(errorHandler);
    await app.register(sdkBundleRoutes({ bundlePath: path.join(dir, "bundle.js"), examplesDir: examples }));
    app.setNotFoundHandler((_request, reply) => {
      reply.status(404).send({ error: { code: "NO_ROUTE", message: "no route" } });
    });
    base = await app.listen({ port: 0, host: "127.0.0.1" });
  });

  afterAll(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the bundle with its type, cache headers and an ETag, and 304 on a match", async () => {
    const res = await app.inject({ method: "GET", url: "/sdk/portrait.js" });
    expect(res.statusCode).toBe(200);
    expect(res.body).toBe("/* sdk */");
    expect(res.headers["content-type"]).toBe("application/javascript; charset=utf-8");
    expect(res.headers["cache-control"]).toBe("public, max-age=300");
    const etag = res.headers.etag as string;
    expect(etag).toMatch(/^W\/".+"$/); // weak: the gzipped and plain bodies share it
    const again = await app.inject({ method: "GET", url: "/sdk/portrait.js", headers: { "if-none-match": etag } });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe("");
  });

  it("sends the bundle gzipped to clients that accept it", async () => {
    const res = await app.inject({
      method: "GET",
      url: "/sdk/portrait.js",
      headers: { "accept-encoding": "gzip, br" },
    });
    expect(res.headers["content-encoding"]).toBe("gzip");
    expect(res.headers.vary).toMatch(/Accept-Encoding/);
    expect(gunzipSync(res.rawPayload).toString("utf8")).toBe("/* sdk */");
  });

  it("picks up a rebuilt bundle", async () => {
    const before = await app.inject({ method: "GET", url: "/sdk/portrait.js" });
    writeFileSync(path.join(dir, "bundle.js"), "/* sdk v2, longer */");
    const after = await app.inject({ method: "GET", url: "/sdk/portrait.js" });
    expect(after.body).toBe("/* sdk v2, longer */");
    expect(after.headers.etag).not.toBe(before.headers.etag);
  });

  it("serves example files with their content type, index.html for the folder", async () => {
    const page = await app.inject({ method: "GET", url: "/sdk/examples/page.html" });
    expect(page.statusCode).toBe(200);
    expect(page.body).toBe("<p>page</p>");
    expect(page.headers["content-type"]).toBe("text/html; charset=utf-8");
    const index = await app.inject({ method: "GET", url: "/sdk/examples/" });
    expect(index.body).toBe("<p>index</p>");
    const deep = await app.inject({ method: "GET", url: "/sdk/examples/sub/deep.js" });
    expect(deep.headers["content-type"]).toBe("application/javascript; charset=utf-8");
  });

  it.each(ESCAPES)("refuses %s with a 404 that reveals nothing", async (url) => {
    const res = await rawGet(base, url);
    expect(res.status).toBe(404);
    expect(res.body).not.toContain("SECRET");
    // NOT_FOUND is the examples route's own refusal (NO_ROUTE would mean the request never reached the guard).
    expect(JSON.parse(res.body).error.code).toBe("NOT_FOUND");
  });

  it("resolveExample never returns a path outside the folder", async () => {
    const examples = path.join(dir, "examples");
    for (const p of ["../secret.txt", "..\\secret.txt", "/etc/passwd", "sub/../../secret.txt", "a\0b", ".", "..", ""]) {
      const file = await resolveExample(examples, p);
      if (file !== null) expect(file.startsWith(examples + path.sep)).toBe(true);
    }
    expect(await resolveExample(examples, "outside.html")).toBeNull();
  });

  it("answers 404 with a hint when the bundle is not built", async () => {
    const bare = Fastify();
    schemasAsDocumentation(bare);
    bare.setErrorHandler(errorHandler);
    await bare.register(sdkBundleRoutes({ bundlePath: path.join(dir, "missing.js"), examplesDir: dir }));
    const res = await bare.inject({ method: "GET", url: "/sdk/portrait.js" });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.message).toMatch(/npm run build/);
    await bare.close();
  });
});

describe("the SDK routes on the real server", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(async () => {
    await server.close();
  });

  it("serves examples/ without a key and never the files around it", async () => {
    const page = await server.server.app.inject({ method: "GET", url: "/sdk/examples/index.html" });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain("/sdk/portrait.js");
    for (const url of [
      "/sdk/examples/../package.json",
      "/sdk/examples/%2e%2e/package.json",
      "/sdk/examples/..%2fpackage.json",
      "/sdk/examples/..%2f..%2fsrc%2fconfig.ts",
      "/sdk/examples/%2e%2e%2f.git%2fconfig",
    ]) {
      const res = await rawGet(server.url, url);
      expect(res.status, url).toBe(404);
      expect(res.body, url).not.toContain('"name": "portrait"');
    }
  });

  it("a wrong public key on the SDK batch is a 401 the browser can read (CORS headers present)", async () => {
    const res = await fetch(`${server.url}/v1/sdk/batch?key=pk_wrong`, {
      method: "POST",
      headers: { "content-type": "text/plain", origin: "https://shop.example" },
      body: JSON.stringify({ records: [] }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://shop.example");
  });
});
