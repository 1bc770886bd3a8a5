/** Starting and stopping: first-run bootstrap happens once, and shutdown finishes the batches in flight. */
import { mkdtempSync, rmSync } from "node:fs";
import { type AddressInfo, connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { configFromEnv } from "./config.js";
import { startServer, unusedBootstrapKeys } from "./server.js";
import { SqliteStore } from "./store/sqlite/sqlite-store.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function config(dir: string, extra: Record<string, string> = {}) {
  return configFromEnv({
    PORTRAIT_PORT: "0",
    PORTRAIT_HOST: "127.0.0.1",
    PORTRAIT_DATA_DIR: dir,
    PORTRAIT_LOG_LEVEL: "silent",
    ...extra,
  });
}

describe("server lifecycle", () => {
  it("creates the default account and its keys on the first start only, honouring bootstrap keys", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "portrait-life-"));
    dirs.push(dir);
    const secret = "sk_bootstrap_0123456789abcdef";
    const first = await startServer(config(dir, { PORTRAIT_BOOTSTRAP_SECRET_KEY: secret }));
    expect(first.firstRun).toMatchObject({ accountId: "default", secretKey: secret, dashboardUser: "admin" });
    expect(first.firstRun?.publicKey).toMatch(/^pk_/);
    await first.close();
    const second = await startServer(config(dir));
    expect(second.firstRun).toBeNull();
    const res = await fetch(`${second.url}/v1/account`, { headers: { authorization: `Bearer ${secret}` } });
    expect(res.status).toBe(200);
    await second.close();
  });

  it("on a later start, names a bootstrap key that is not one of the store's keys, once, and not one that is", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "portrait-life-"));
    dirs.push(dir);
    const secret = "sk_bootstrap_0123456789abcdef";
    const first = await startServer(config(dir, { PORTRAIT_BOOTSTRAP_SECRET_KEY: secret }));
    expect(await unusedBootstrapKeys(first.store, { bootstrapSecretKey: secret, bootstrapPublicKey: null })).toEqual(
      [],
    );
    const later = await unusedBootstrapKeys(first.store, {
      bootstrapSecretKey: "sk_later_0123456789abc",
      bootstrapPublicKey: "pk_later_0123456789abc",
    });
    expect(later).toHaveLength(2);
    expect(later[0]).toMatch(
      /^PORTRAIT_BOOTSTRAP_SECRET_KEY is set, but this store has its accounts already and that key is not one of its keys \(unknown here\): the variable is read on the first start only/,
    );
    expect(later[1]).toMatch(/^PORTRAIT_BOOTSTRAP_PUBLIC_KEY is set/);
    await first.close();
  });

  it("a first start that cannot listen creates nothing, so the next start still shows the first keys", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "portrait-life-"));
    dirs.push(dir);
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, "127.0.0.1", resolve));
    const port = String((busy.address() as AddressInfo).port);
    try {
      await expect(startServer(config(dir, { PORTRAIT_PORT: port }))).rejects.toThrow(/EADDRINUSE/);
    } finally {
      busy.close();
    }
    const retried = await startServer(config(dir));
    expect(retried.firstRun).toMatchObject({ accountId: "default", dashboardUser: "admin" });
    await retried.close();
  });

  it("refuses bootstrap keys it cannot use before making anything, so the start after the fix is a first start", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "portrait-life-"));
    dirs.push(dir);
    for (const [extra, message] of [
      [
        { PORTRAIT_BOOTSTRAP_SECRET_KEY: "sk_test_short" },
        /PORTRAIT_BOOTSTRAP_SECRET_KEY: .*16-200 characters.*nothing/,
      ],
      [{ PORTRAIT_BOOTSTRAP_SECRET_KEY: "pk_looks_like_a_public_key" }, /SECRET_KEY: a secret key must start with sk_/],
      [
        { PORTRAIT_BOOTSTRAP_PUBLIC_KEY: "sk_secret_key_set_as_public" },
        /PUBLIC_KEY: a public key must start with pk_/,
      ],
      [{ PORTRAIT_BOOTSTRAP_PUBLIC_KEY: "pk_with a space_inside" }, /printable ASCII without spaces/],
    ] as const) {
      await expect(startServer(config(dir, extra))).rejects.toThrow(message);
    }
    const secret = "sk_bootstrap_fixed_0123456789";
    const fixed = await startServer(config(dir, { PORTRAIT_BOOTSTRAP_SECRET_KEY: secret }));
    expect(fixed.firstRun).toMatchObject({ accountId: "default", secretKey: secret });
    const res = await fetch(`${fixed.url}/v1/account`, { headers: { authorization: `Bearer ${secret}` } });
    expect(res.status).toBe(200);
    await fixed.close();
  });

  it("finishes an in-flight batch before closing, and the batch is committed", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "portrait-life-"));
    dirs.push(dir);
    const secret = "sk_bootstrap_0123456789abcdef";
    const server = await startServer(config(dir, { PORTRAIT_BOOTSTRAP_SECRET_KEY: secret }));
    // Close only once the batch is being applied, so the test does not depend on timing.
    let started!: () => void;
    const applying = new Promise<void>((resolve) => {
      started = resolve;
    });
    const ingest = server.portrait.ingest.bind(server.portrait);
    server.portrait.ingest = (...args) => {
      started();
      return ingest(...args);
    };
    const records = Array.from({ length: 1000 }, (_, i) => ({
      type: "login",
      deviceId: `d${i}`,
      properties: { Identity: `u${i}` },
    }));
    const inFlight = fetch(`${server.url}/v1/ingest`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ records }),
    });
    await applying;
    const closing = server.close();
    const res = await inFlight;
    await closing;
    expect(res.status).toBe(200);
    const body = (await res.json()) as { processed: number };
    expect(body.processed).toBe(1000);
    const store = SqliteStore.open(path.join(dir, "portrait.db"));
    expect(await store.reader.findProfileByIdentity("default", "Identity", "u999")).toEqual(expect.any(String));
    await store.close();
  });

  it("does not wait for a client that never finishes its request: its connection is cut after the grace", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "portrait-life-"));
    dirs.push(dir);
    const server = await startServer(config(dir, { PORTRAIT_BOOTSTRAP_SECRET_KEY: "sk_bootstrap_0123456789abcdef" }));
    const url = new URL(server.url);
    const socket = connect(Number(url.port), url.hostname);
    socket.on("error", () => undefined);
    const cut = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    // An upload (exempt from the JSON body deadline) that stalls after its first bytes.
    socket.write(
      "POST /v1/imports?kind=profiles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk_bootstrap_0123456789abcdef\r\n" +
        "Content-Type: text/csv\r\nContent-Length: 1000000\r\n\r\nEmail\r\n",
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    const started = Date.now();
    await server.close();
    await cut;
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 30_000);
});
