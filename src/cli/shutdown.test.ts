/**
 * SIGTERM under load (README: "stop accepting requests, finish the batches in flight, then close the store"): a real
 * `portrait serve` with 16 clients each sending 1000-record batches back to back, a connection each. Every
 * request whose body the client had finished sending before the signal gets an HTTP answer (200, or at worst a 503 in
 * the error shape), never a reset connection; and every batch answered 200 is stored in full after a restart.
 */
import type { ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleCli, type Cli } from "../test-support/cli.js";
import { createTestDatabase, storesUnderTest, type TestDatabase } from "../test-support/postgres.js";

const KEY = "sk_shutdown_test_0123456789abcdef";
const stores = await storesUnderTest();
let cli: Cli;
const temp: string[] = [];
const databases: TestDatabase[] = [];

beforeAll(async () => {
  cli = await bundleCli();
}, 60_000);

afterAll(async () => {
  cli?.remove();
  for (const dir of temp) rmSync(dir, { recursive: true, force: true });
  for (const db of databases) await db.drop();
});

interface Served {
  child: ChildProcess;
  url: Promise<string>;
  exited: Promise<number | null>;
}

function serve(env: Record<string, string>): Served {
  const child = cli.spawn(["serve"], {
    PORTRAIT_PORT: "0",
    PORTRAIT_HOST: "127.0.0.1",
    PORTRAIT_BOOTSTRAP_SECRET_KEY: KEY,
    PORTRAIT_LOG_LEVEL: "warn",
    ...env,
  });
  let out = "";
  const url = new Promise<string>((resolve, reject) => {
    const seen = (chunk: Buffer) => {
      out += chunk.toString();
      const m = /(?:API:\s+|Portrait listening on )(http:\/\/[^\s/]+)/.exec(out);
      if (m?.[1]) resolve(m[1]);
    };
    child.stdout?.on("data", seen);
    child.stderr?.on("data", seen);
    child.once("exit", () => reject(new Error(`serve exited:\n${out}`)));
  });
  return { child, url, exited: once(child, "exit").then(([c]) => c as number | null) };
}

interface Outcome {
  device: string;
  sentBeforeSignal: boolean;
  status: number | null;
  error: string | null;
  code: string | null;
}

describe.each(stores)("SIGTERM under load (%s)", (kind) => {
  it("answers every request fully sent before the signal, and every 200 is stored", async () => {
    const env: Record<string, string> = {};
    const dir = mkdtempSync(path.join(tmpdir(), "portrait-shutdown-"));
    temp.push(dir);
    env.PORTRAIT_DATA_DIR = dir;
    if (kind === "postgres") {
      const db = await createTestDatabase();
      if (!db) throw new Error("no PostgreSQL");
      databases.push(db);
      env.PORTRAIT_DATABASE_URL = db.url;
    }
    const served = serve(env);
    const url = new URL(await served.url);
    let signalledAt = Number.POSITIVE_INFINITY;
    const outcomes: Outcome[] = [];
    let answered = 0;

    const send = (device: string): Promise<Outcome> =>
      new Promise((resolve) => {
        const records = Array.from({ length: 1000 }, (_, i) => ({
          type: "event",
          deviceId: device,
          name: "Shutdown Test",
          id: `${device}-${i}`,
          properties: { n: i, text: "x".repeat(40) },
        }));
        const body = JSON.stringify({ records });
        let sentAt = Number.POSITIVE_INFINITY;
        const req = http.request(
          {
            agent: false,
            host: url.hostname,
            port: url.port,
            path: "/v1/ingest",
            method: "POST",
            headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
          },
          (res) => {
            let text = "";
            res.on("data", (c: Buffer) => {
              text += c.toString();
            });
            res.on("end", () => {
              let code: string | null = null;
              try {
                code = (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? null;
              } catch {
                code = null;
              }
              resolve({
                device,
                sentBeforeSignal: sentAt < signalledAt,
                status: res.statusCode ?? null,
                error: null,
                code,
              });
            });
          },
        );
        req.on("finish", () => {
          sentAt = performance.now();
        });
        req.on("error", (e: NodeJS.ErrnoException) =>
          resolve({
            device,
            sentBeforeSignal: sentAt < signalledAt,
            status: null,
            error: e.code ?? e.message,
            code: null,
          }),
        );
        req.end(body);
      });

    const client = async (c: number) => {
      for (let n = 0; ; n++) {
        const o = await send(`c${c}-b${n}`);
        outcomes.push(o);
        if (o.status === 200) answered++;
        if (o.status !== 200) return;
      }
    };
    const clients = Array.from({ length: 16 }, (_, c) => client(c));
    await expect.poll(() => answered, { timeout: 60_000, interval: 20 }).toBeGreaterThanOrEqual(48);
    signalledAt = performance.now();
    served.child.kill("SIGTERM");
    await Promise.all(clients);
    expect(await served.exited).toBe(0);

    const unanswered = outcomes.filter((o) => o.sentBeforeSignal && o.status === null);
    expect(unanswered).toEqual([]);
    for (const o of outcomes.filter((x) => x.status !== null && x.status !== 200)) {
      expect(o.status).toBe(503);
      expect(o.code).toBe("UNAVAILABLE");
    }

    // Every batch answered 200 is stored in full; nothing else half-applied.
    const again = serve(env);
    const at = await again.url;
    try {
      const count = async (device: string) => {
        const res = await fetch(`${at}/v1/profiles?deviceId=${device}`, {
          headers: { authorization: `Bearer ${KEY}` },
        });
        const found = (await res.json()) as { profiles: Array<{ id: string }> };
        const id = found.profiles[0]?.id;
        if (!id) return 0;
        let total = 0;
        let cursor: string | null = null;
        do {
          const page: { events: unknown[]; nextCursor: string | null } = (await (
            await fetch(`${at}/v1/profiles/${id}/events?limit=1000${cursor ? `&cursor=${cursor}` : ""}`, {
              headers: { authorization: `Bearer ${KEY}` },
            })
          ).json()) as never;
          total += page.events.length;
          cursor = page.nextCursor;
        } while (cursor);
        return total;
      };
      for (const o of outcomes) {
        const stored = await count(o.device);
        if (o.status === 200) expect(stored, o.device).toBe(1000);
        else expect([0, 1000], o.device).toContain(stored);
      }
    } finally {
      again.child.kill("SIGTERM");
      await again.exited;
    }
  }, 180_000);
});
