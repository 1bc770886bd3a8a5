/**
 * While the server is starting (listening, the first run's account and keys not made yet) every request, /healthz
 * included, is 503 UNAVAILABLE with Retry-After: a client that waits for /healthz and then uses the bootstrap key must
 * never see 401 for a key about to exist.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Accounts } from "../pipeline/accounts.js";
import { Portrait } from "../pipeline/portrait.js";
import { SqliteStore } from "../store/sqlite/sqlite-store.js";
import { buildApp } from "./app.js";
import { createMetrics } from "./metrics.js";

let ready = false;
let app: Awaited<ReturnType<typeof buildApp>>;
let store: SqliteStore;

beforeAll(async () => {
  store = SqliteStore.open(":memory:");
  const accounts = new Accounts(store);
  app = await buildApp({
    portrait: new Portrait(store),
    accounts,
    metrics: createMetrics(),
    logger: false,
    ready: () => ready,
  });
  await accounts.create("default", { secretKey: "sk_test_starting_0123456789abcdef" }, "default");
});

afterAll(async () => {
  await app.close();
  await store.close();
});

describe("a server still starting", () => {
  it("answers 503 UNAVAILABLE with Retry-After to every request until it is ready, then serves", async () => {
    const auth = { authorization: "Bearer sk_test_starting_0123456789abcdef" };
    for (const request of [
      { method: "GET" as const, url: "/healthz" },
      { method: "GET" as const, url: "/v1/account", headers: auth },
    ]) {
      const early = await app.inject(request);
      expect(early.statusCode).toBe(503);
      expect(early.headers["retry-after"]).toBe("1");
      expect(early.json()).toEqual({
        error: { code: "UNAVAILABLE", message: "the server is starting; retry shortly" },
      });
    }
    ready = true;
    expect((await app.inject({ method: "GET", url: "/healthz" })).json()).toEqual({ ok: true });
    expect((await app.inject({ method: "GET", url: "/v1/account", headers: auth })).statusCode).toBe(200);
  });
});
