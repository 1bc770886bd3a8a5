/**
 * Refusals on the SDK routes and their settings say what is actually wrong (SDK audit F5): the body types the batch
 * takes, a key or deviceId given twice, an allowed origin without its scheme. The rules live in the routes, auth.ts
 * and engine/origins.ts; none depends on the store.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PUBLIC, startTestServer, type TestServer } from "../test-support/server.js";

let s: TestServer;

beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  await s.close();
});

const post = (path: string, body: string, contentType?: string) =>
  fetch(`${s.url}${path}`, {
    method: "POST",
    headers: contentType === undefined ? {} : { "content-type": contentType },
    // Bytes, so that fetch adds no Content-Type of its own (it would say text/plain for a string).
    body: new TextEncoder().encode(body),
  });

describe("SDK route refusals", () => {
  it("answers a batch of another body type with 415 naming both types it takes", async () => {
    const body = JSON.stringify({ records: [] });
    for (const type of [
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "text/html",
      undefined,
    ]) {
      const res = await post(`/v1/sdk/batch?key=${PUBLIC}`, body, type);
      expect(res.status, String(type)).toBe(415);
      expect((await res.json()).error).toEqual({
        code: "UNSUPPORTED_MEDIA_TYPE",
        message: "this endpoint takes application/json or text/plain",
      });
    }
    // A secret route still takes JSON only, and says so.
    const ingest = await s.api("POST", "/v1/ingest", body, { "content-type": "text/plain" });
    expect(ingest.body.error.message).toBe("this endpoint takes application/json");
    const doc = (await s.api("GET", "/v1/openapi.json")).body;
    expect(doc.paths["/v1/sdk/batch"].post.responses["415"].description).toContain("application/json or text/plain");
  });

  it("answers a key given twice with 401 saying so, on both SDK routes", async () => {
    for (const [method, path] of [
      ["GET", `/v1/sdk/profile?deviceId=d&key=${PUBLIC}&key=pk_wrong`],
      ["POST", `/v1/sdk/batch?key=${PUBLIC}&key=${PUBLIC}`],
    ] as const) {
      const r = await s.api(method, path, method === "POST" ? { records: [] } : undefined, { authorization: "" });
      expect(r).toMatchObject({ status: 401, body: { error: { code: "UNAUTHORIZED", field: "key" } } });
      expect(r.body.error.message).toContain("more than once");
    }
    // One key is still read, and none is still "required".
    expect(
      (await s.api("GET", `/v1/sdk/profile?deviceId=d&key=${PUBLIC}`, undefined, { authorization: "" })).status,
    ).toBe(200);
    const none = await s.api("GET", "/v1/sdk/profile?deviceId=d", undefined, { authorization: "" });
    expect(none).toMatchObject({ status: 401, body: { error: { message: expect.stringContaining("is required") } } });
  });

  it("answers a deviceId given twice with MULTIPLE_HANDLES naming deviceId, and a missing one as before", async () => {
    const twice = await s.api("GET", `/v1/sdk/profile?key=${PUBLIC}&deviceId=a&deviceId=b`, undefined, {
      authorization: "",
    });
    expect(twice).toMatchObject({ status: 400, body: { error: { code: "MULTIPLE_HANDLES", field: "deviceId" } } });
    expect(twice.body.error.message).toContain("2 times");
    const missing = await s.api("GET", `/v1/sdk/profile?key=${PUBLIC}`, undefined, { authorization: "" });
    expect(missing).toMatchObject({ status: 400, body: { error: { code: "MISSING_HANDLE", field: "deviceId" } } });
  });

  it("says an allowedOrigins entry has no scheme", async () => {
    for (const [entry, hint] of [
      ["localhost:9261", "https://localhost:9261"],
      ["shop.example.com", "https://shop.example.com"],
    ]) {
      const r = await s.api("PATCH", "/v1/account/settings", { allowedOrigins: ["https://ok.example", entry] });
      expect(r).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_SETTING", field: "allowedOrigins[1]" } },
      });
      expect(r.body.error.message).toContain(`has no scheme: it must be an origin with its scheme, such as ${hint}`);
      expect(r.body.error.message).not.toContain("://,");
    }
    expect((await s.api("GET", "/v1/account")).body.settings.allowedOrigins).toEqual(["*"]);
  });

  it("refuses a publicProperties entry that can never be a property key, naming it, and keeps the list", async () => {
    expect((await s.api("PATCH", "/v1/account/settings", { publicProperties: ["Name"] })).status).toBe(200);
    for (const [entries, field, message] of [
      [["Plan", "Address.city"], "publicProperties[1]", "nested paths are not supported"],
      [["Plan", "Name", "*"], "publicProperties[2]", "does not mean all properties"],
      [["Plan", "Plan"], "publicProperties[1]", 'repeats "Plan"'],
      [["x".repeat(121)], "publicProperties[0]", "1-120 characters"],
    ] as const) {
      const r = await s.api("PATCH", "/v1/account/settings", { publicProperties: entries });
      expect(r).toMatchObject({ status: 400, body: { error: { code: "INVALID_SETTING", field } } });
      expect(r.body.error.message).toContain(message);
    }
    expect((await s.api("GET", "/v1/account")).body.settings.publicProperties).toEqual(["Name"]);
    await s.api("POST", "/v1/ingest", {
      records: [{ type: "profile", deviceId: "pub-1", properties: { Name: "Ana", Address: { city: "Paris" } } }],
    });
    const read = await s.api("GET", `/v1/sdk/profile?key=${PUBLIC}&deviceId=pub-1`, undefined, { authorization: "" });
    expect(read.body).toEqual({ properties: { Name: "Ana" } });
  });
});
