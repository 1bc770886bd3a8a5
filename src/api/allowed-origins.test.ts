/** allowedOrigins end to end: entries kept as browsers spell origins, and pages of other sites refused before writing. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storesUnderTest } from "../test-support/postgres.js";
import { PUBLIC, startTestServer, type TestServer } from "../test-support/server.js";

const stores = await storesUnderTest();

describe.each(stores)("%s store", (store) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startTestServer({}, { store });
  });
  afterAll(async () => {
    await s.close();
  });

  const fromPage = (origin: string | undefined, deviceId: string) =>
    fetch(`${s.url}/v1/sdk/batch?key=${PUBLIC}`, {
      method: "POST",
      headers: { "content-type": "text/plain", ...(origin && { origin }) },
      body: JSON.stringify({ records: [{ type: "event", deviceId, name: "Page Viewed" }] }),
    });
  const stored = async (deviceId: string) =>
    (await s.api("GET", `/v1/profiles?deviceId=${deviceId}`)).body.profiles.length;

  it("refuses a list with an entry no browser could send, naming it, and keeps the settings it had", async () => {
    const r = await s.api("PATCH", "/v1/account/settings", {
      allowedOrigins: ["https://shop.example", "shop.example"],
    });
    expect(r).toMatchObject({ status: 400, body: { error: { code: "INVALID_SETTING", field: "allowedOrigins[1]" } } });
    expect(r.body.error.message).toContain("https://shop.example");
    expect((await s.api("GET", "/v1/account")).body.settings.allowedOrigins).toEqual(["*"]);
  });

  it("refuses a wildcard over a top-level domain, which would allow nearly every site", async () => {
    const r = await s.api("PATCH", "/v1/account/settings", {
      allowedOrigins: ["https://shop.example", "https://*.com"],
    });
    expect(r).toMatchObject({ status: 400, body: { error: { code: "INVALID_SETTING", field: "allowedOrigins[1]" } } });
    expect(r.body.error.message).toContain('at least two labels after "*."');
    expect((await s.api("GET", "/v1/account")).body.settings.allowedOrigins).toEqual(["*"]);
    expect(await fromPage("https://evil.com", "origin-tld")).toMatchObject({ status: 200 }); // still "*"
  });

  it("keeps entries as browsers spell origins and answers only listed sites' pages", async () => {
    const r = await s.api("PATCH", "/v1/account/settings", {
      allowedOrigins: ["https://*.Shop.Example", "https://partner.example:443/", "https://partner.example"],
    });
    expect(r.status).toBe(200);
    expect(r.body.settings.allowedOrigins).toEqual(["https://*.shop.example", "https://partner.example"]);

    const listed = await fromPage("https://www.shop.example", "origin-listed");
    expect(listed.status).toBe(200);
    expect(listed.headers.get("access-control-allow-origin")).toBe("https://www.shop.example");
    expect(await stored("origin-listed")).toBe(1);

    // A sendBeacon from another site is sent whatever CORS says; it must write nothing.
    const other = await fromPage("https://evil.example", "origin-other");
    expect(other.status).toBe(403);
    expect((await other.json()).error).toMatchObject({ code: "FORBIDDEN", field: "origin" });
    // Readable by the page, so that the SDK reports the refusal instead of retrying a network error.
    expect(other.headers.get("access-control-allow-origin")).toBe("https://evil.example");
    expect(await stored("origin-other")).toBe(0);
    expect((await fromPage("https://shop.example", "origin-apex")).status).toBe(403);
    expect(await stored("origin-apex")).toBe(0);

    const profile = await fetch(`${s.url}/v1/sdk/profile?key=${PUBLIC}&deviceId=origin-listed`, {
      headers: { origin: "https://evil.example" },
    });
    expect(profile.status).toBe(403);

    // Servers and apps send no Origin: not a browser page, nothing to check.
    expect((await fromPage(undefined, "origin-none")).status).toBe(200);
    expect(await stored("origin-none")).toBe(1);
  });
});
