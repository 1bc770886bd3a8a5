/**
 * A store that cannot take a write in time (SQLite: another process holds the write lock beyond the busy timeout) is
 * a temporary condition: 503 UNAVAILABLE with Retry-After, nothing applied, and the next request after it goes
 * through. Not a 500 INTERNAL, which tells a client its request was wrong in a way retrying cannot fix.
 */
import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SECRET, startTestServer, type TestServer } from "../test-support/server.js";

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
}, 30_000);

afterAll(async () => {
  await t?.close();
});

describe("a store too busy to write", () => {
  it("answers 503 UNAVAILABLE with Retry-After, applies nothing, and the next request goes through", async () => {
    const login = { type: "login", deviceId: "busy-1", ts: "2026-01-01T00:00:00Z", properties: { Identity: "u-busy" } };
    const other = new Database(path.join(t.dir, "portrait.db"));
    other.exec("BEGIN IMMEDIATE"); // another process's write lock, held past the server's busy timeout
    let held: Response;
    try {
      held = await fetch(`${t.url}/v1/ingest`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${SECRET}`,
          "content-type": "application/json",
        },
        body: JSON.stringify({ records: [login] }),
      });
    } finally {
      other.exec("ROLLBACK");
      other.close();
    }
    expect(held.status).toBe(503);
    expect(held.headers.get("retry-after")).toBe("1");
    const body = (await held.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("UNAVAILABLE");
    expect(body.error.message).toMatch(/busy.*nothing was applied.*retry/i);

    const found = await t.api("GET", "/v1/profiles?identity=u-busy");
    expect(found.status).toBe(200);
    expect(found.body.profiles).toEqual([]);
    const again = await t.api("POST", "/v1/ingest", { records: [login] });
    expect(again.status).toBe(200);
    expect(again.body.results[0].outcome).toBe("identified"); // a new device, then identified: the first was not kept
    const after = await t.api("GET", "/v1/profiles?identity=u-busy");
    expect(after.body.profiles).toHaveLength(1);
  }, 30_000);
});
