/**
 * The browser SDK in a real browser (Debian's Chromium driven by playwright-core) against a real Portrait server:
 * pages come from that server (/sdk/examples/test.html) under another origin than the API endpoint, so every
 * request is a real cross-origin one, from an insecure context (no crypto.randomUUID) like many real sites.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PUBLIC, startTestServer, type TestServer } from "../test-support/server.js";
import type { PortraitApi } from "./index.js";

const CHROMIUM = "/usr/bin/chromium";
const IN_CI = process.env.CI === "true";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM && !IN_CI) {
  console.warn(`browser SDK tests skipped: ${CHROMIUM} is missing (apt-get install -y chromium); CI fails instead`);
}

/** The page's globals as the tests use them inside page.evaluate (the functions run in the browser). */
type Win = {
  portrait: PortraitApi;
  localStorage: {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
    readonly length: number;
    key(index: number): string | null;
  };
};
// biome-ignore lint/suspicious/noExplicitAny: response bodies of the server API, checked field by field
type AnyBody = any;

/** The pages' origin: mapped to 127.0.0.1 by the browser, so it differs from the endpoint's origin. */
const SITE = "site.test";
const QUEUE_KEY = `portrait_queue_${PUBLIC}`;

let server: TestServer;
let browser: Browser;
let pageBase: string;

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls until `check` stops throwing (deliveries driven by the SDK's own timers). */
async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > until) throw e;
      await sleep(100);
    }
  }
}

interface Visit {
  page: Page;
  console: string[];
}

async function visit(context: BrowserContext, query = ""): Promise<Visit> {
  const page = await context.newPage();
  const messages: string[] = [];
  page.on("console", (m) => {
    // Chromium asks for /favicon.ico on its own; that request's failure is not the SDK's doing.
    if (!m.location().url.endsWith("/favicon.ico")) messages.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => messages.push(`pageerror: ${e.message}`));
  await page.goto(`${pageBase}/sdk/examples/test.html${query}`);
  return { page, console: messages };
}

async function init(page: Page, endpoint = server.url): Promise<void> {
  await page.evaluate(([key, endpoint]) => (globalThis as unknown as Win).portrait.init({ key, endpoint }), [
    PUBLIC,
    endpoint,
  ] as const);
}

async function flush(page: Page): Promise<void> {
  await page.evaluate(() => (globalThis as unknown as Win).portrait.flush());
}

async function deviceIdOf(page: Page): Promise<string> {
  const id = await page.evaluate(() => (globalThis as unknown as Win).portrait.getDeviceId());
  expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  return id as string;
}

/** Every record queued in the site's storage, whichever page's queue holds it. */
async function queued(page: Page, prefix = QUEUE_KEY): Promise<unknown[]> {
  const texts = await page.evaluate((prefix) => {
    const ls = (globalThis as unknown as Win).localStorage;
    const out: string[] = [];
    for (let i = 0; i < ls.length; i++) {
      const k = ls.key(i);
      if (k?.startsWith(prefix)) out.push(ls.getItem(k) ?? "[]");
    }
    return out;
  }, prefix);
  return texts.flatMap((t) => JSON.parse(t) as unknown[]);
}

async function profileOfDevice(deviceId: string): Promise<AnyBody | undefined> {
  const res = await server.api("GET", `/v1/profiles?deviceId=${encodeURIComponent(deviceId)}`);
  expect(res.status).toBe(200);
  return res.body.profiles[0];
}

async function timeline(profileId: string, limit = 200): Promise<AnyBody[]> {
  const res = await server.api("GET", `/v1/profiles/${profileId}/events?limit=${limit}`);
  expect(res.status).toBe(200);
  return res.body.events;
}

const names = (events: AnyBody[]) => events.map((e) => e.name as string).sort();

/** A TCP forwarder to the server that can be closed (connections refused) and reopened on the same port. */
class Gate {
  private readonly sockets = new Set<Socket>();
  private readonly proxy: http.Server;
  port = 0;
  /** How often each record id went through, from batches and beacons alike. */
  readonly sent = new Map<string, number>();

  constructor(target: string) {
    const to = new URL(target);
    this.proxy = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (!req.url?.startsWith("/v1/sdk/batch")) return;
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { records: Array<{ id: string }> };
        for (const r of body.records) this.sent.set(r.id, (this.sent.get(r.id) ?? 0) + 1);
      });
      const upstream = http.request(
        { host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
    this.proxy.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async open(): Promise<void> {
    await new Promise<void>((resolve) => this.proxy.listen(this.port, "127.0.0.1", resolve));
    this.port = (this.proxy.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.proxy.close(() => resolve()));
  }
}

describe.skipIf(!HAVE_CHROMIUM && !IN_CI)("browser SDK in Chromium", () => {
  beforeAll(async () => {
    if (!HAVE_CHROMIUM) throw new Error(`CI=true but ${CHROMIUM} is missing: install Debian's chromium package`);
    // The bundle under test is the one `npm run build` makes, rebuilt so that it matches the sources.
    execFileSync("npm", ["run", "--silent", "build:sdk"], { stdio: "pipe" });
    server = await startTestServer();
    const port = new URL(server.url).port;
    pageBase = `http://${SITE}:${port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        `--host-resolver-rules=MAP ${SITE} 127.0.0.1`,
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  it("serves the bundle as JavaScript with cache headers", async () => {
    const res = await fetch(`${server.url}/sdk/portrait.js`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/javascript/);
    expect(res.headers.get("cache-control")).toMatch(/max-age=\d+/);
    const etag = res.headers.get("etag");
    expect(etag).toBeTruthy();
    const again = await fetch(`${server.url}/sdk/portrait.js`, { headers: { "if-none-match": etag as string } });
    expect(again.status).toBe(304);
  });

  describe("one person on two browsers (SEMANTICS §3 login)", () => {
    let first: BrowserContext;
    let personId: string;
    let firstDevice: string;

    beforeAll(async () => {
      first = await browser.newContext({ timezoneId: "Europe/Paris", locale: "fr-FR" });
    });
    afterAll(async () => {
      await first?.close();
    });

    it("an anonymous visit creates an anonymous profile with the page's context", async () => {
      const { page, console } = await visit(first, "?utm_source=news&utm_medium=email&utm_campaign=spring");
      await init(page);
      await page.evaluate(() =>
        (globalThis as unknown as Win).portrait.event.push("Product Viewed", { Product: "Shoe", Price: 59.9 }),
      );
      await flush(page);
      firstDevice = await deviceIdOf(page);

      const profile = await profileOfDevice(firstDevice);
      expect(profile).toBeDefined();
      expect(profile.type).toBe("anonymous");
      expect(profile.devices).toContain(firstDevice);
      expect(profile.system.acquiredFrom).toBe("news");
      expect(profile.properties.Timezone).toBe("Europe/Paris");
      personId = profile.id;

      const events = await timeline(personId);
      expect(names(events)).toEqual(["App Launched", "Product Viewed"]);
      const launched = events.find((e) => e.name === "App Launched");
      expect(launched.properties["Screen Width"]).toBeGreaterThan(0);
      expect(events.find((e) => e.name === "Product Viewed").properties).toEqual({ Product: "Shoe", Price: 59.9 });
      expect(await queued(page)).toEqual([]);

      // The device id is kept in localStorage and in a first-party cookie (1 year, SameSite=Lax).
      const [cookie] = (await first.cookies(pageBase)).filter((c) => c.name === "portrait_device");
      expect(cookie?.value).toBe(firstDevice);
      expect(cookie?.sameSite).toBe("Lax");
      expect((cookie?.expires ?? 0) - Date.now() / 1000).toBeGreaterThan(364 * 86400);
      expect(console.filter((m) => m.startsWith("error") || m.startsWith("pageerror"))).toEqual([]);
      await page.close();
    });

    it("a later page of the same session keeps the device and sends no new App Launched", async () => {
      const { page } = await visit(first);
      await init(page);
      await flush(page);
      expect(await deviceIdOf(page)).toBe(firstDevice);
      expect(names(await timeline(personId))).toEqual(["App Launched", "Product Viewed"]);
      await page.close();
    });

    it("login turns the anonymous profile into the person, with its earlier events (Scenario 1)", async () => {
      const { page } = await visit(first);
      await init(page);
      await page.evaluate(() => {
        const p = (globalThis as unknown as Win).portrait;
        p.onUserLogin.push({ Site: { Identity: 61026032, Email: " Ana@Example.com ", Name: "Ana" } });
        p.event.push("Added To Cart", { Product: "Shoe" });
      });
      await flush(page);
      const profile = await profileOfDevice(firstDevice);
      expect(profile.id).toBe(personId);
      expect(profile.type).toBe("identified");
      expect(profile.identities).toMatchObject({ Identity: "61026032", Email: "ana@example.com" });
      expect(profile.properties.Name).toBe("Ana");
      const events = await timeline(personId);
      expect(events.filter((e) => e.anonymous)).toEqual([]);
      expect(names(events)).toEqual(expect.arrayContaining(["App Launched", "Product Viewed", "Added To Cart"]));
      await page.close();
    });

    it("a second browser's anonymous events stay an orphan's, shown as anonymous on the person (Scenario 2)", async () => {
      const second = await browser.newContext();
      const { page } = await visit(second);
      await init(page);
      await page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Browsed Anonymously"));
      await flush(page);
      const device = await deviceIdOf(page);
      expect(device).not.toBe(firstDevice);
      const anonymous = await profileOfDevice(device);
      expect(anonymous.type).toBe("anonymous");
      expect(anonymous.id).not.toBe(personId);

      await page.evaluate(() => {
        const p = (globalThis as unknown as Win).portrait;
        p.onUserLogin.push({ Site: { Identity: "61026032", Name: "Ana" } });
        p.event.push("Checked Out");
      });
      await flush(page);
      expect((await profileOfDevice(device)).id).toBe(personId);

      const events = await timeline(personId);
      const byName = (n: string) => events.filter((e) => e.name === n);
      expect(byName("Browsed Anonymously")).toHaveLength(1);
      expect(byName("Browsed Anonymously")[0].anonymous).toBe(true);
      expect(byName("Checked Out")).toHaveLength(1);
      expect(byName("Checked Out")[0].anonymous).toBe(false);
      const person = (await server.api("GET", `/v1/profiles/${personId}`)).body;
      expect(person.stats.orphans).toBe(1);
      await second.close();
    });

    it("logout: the next visitor on this browser is a new anonymous device", async () => {
      const { page } = await visit(first);
      await init(page);
      await page.evaluate(() => (globalThis as unknown as Win).portrait.logout());
      const device = await deviceIdOf(page);
      expect(device).not.toBe(firstDevice);
      await page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Guest Visit"));
      await flush(page);
      const guest = await profileOfDevice(device);
      expect(guest.type).toBe("anonymous");
      expect(guest.id).not.toBe(personId);
      expect(names(await timeline(guest.id))).toEqual(["App Launched", "Guest Visit"]);
      expect((await profileOfDevice(firstDevice)).id).toBe(personId);
      await page.close();
    });
  });

  it("profile push, increments, multi-values and removals arrive; keys are cleaned; profile.get reads public properties", async () => {
    const context = await browser.newContext();
    const { page, console } = await visit(context);
    await init(page);
    await page.evaluate(() => {
      const p = (globalThis as unknown as Win).portrait;
      p.profile.push({
        Site: { Plan: "pro", "Fav.Color$": "blue", Score: 7, Joined: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)) },
      });
      p.handleIncrementValue("Points", 1);
      p.handleIncrementValue("Points", 1);
      p.handleIncrementValue("Credits", 10);
      p.handleDecrementValue("Credits", 3);
      p.addMultiValueForKey("Tags", "a");
      p.addMultiValuesForKey("Tags", ["b", "c", "d"]);
      p.removeMultiValueForKey("Tags", "b");
      p.removeMultiValuesForKey("Tags", ["d"]);
      p.removeValueForKey("Score");
      p.handleIncrementValue("Points", -5); // refused client-side: n must be >= 0
      p.profile.push({ Site: { Age: 30 } }); // refused client-side: derived from DOB
    });
    await flush(page);
    const profile = await profileOfDevice(await deviceIdOf(page));
    expect(profile.properties).toMatchObject({
      Plan: "pro",
      FavColor: "blue",
      Points: 2,
      Credits: 7,
      Tags: ["a", "c"],
    });
    expect(profile.properties.Joined).toMatch(/^2024-01-02T03:04:05(\.000)?Z$/);
    expect(profile.properties.Score).toBeUndefined();
    expect(profile.properties.Age).toBeUndefined();
    expect(console.some((m) => m.startsWith("warning") && m.includes('"Fav.Color$"'))).toBe(true);
    expect(console.some((m) => m.startsWith("warning") && m.includes("handleIncrementValue"))).toBe(true);

    expect(await page.evaluate(() => (globalThis as unknown as Win).portrait.profile.get("Plan"))).toBeUndefined();
    const patched = await server.api("PATCH", "/v1/account/settings", { publicProperties: ["Plan"] });
    expect(patched.status).toBe(200);
    expect(await page.evaluate(() => (globalThis as unknown as Win).portrait.profile.get("Plan"))).toBe("pro");
    expect(await page.evaluate(() => (globalThis as unknown as Win).portrait.profile.get("Points"))).toBeUndefined();
    await server.api("PATCH", "/v1/account/settings", { publicProperties: [] });
    await context.close();
  });

  it("DOB from a JS Date arrives as the Date's local calendar date, far east and far west of UTC", async () => {
    for (const [timezoneId, hour] of [
      ["Pacific/Kiritimati", 0], // UTC+14: local midnight is the previous day in UTC
      ["Pacific/Pago_Pago", 23], // UTC-11: 23:00 local is the next day in UTC
    ] as const) {
      const context = await browser.newContext({ timezoneId });
      const { page } = await visit(context);
      await init(page);
      await page.evaluate(
        (h) => (globalThis as unknown as Win).portrait.profile.push({ Site: { DOB: new Date(1990, 4, 17, h, 30) } }),
        hour,
      );
      await flush(page);
      const profile = await profileOfDevice(await deviceIdOf(page));
      expect(profile.properties.DOB, timezoneId).toBe("1990-05-17");
      await context.close();
    }
  });

  it("calls pushed on the stub before the script loaded, and calls made before init, are replayed", async () => {
    const context = await browser.newContext();
    await context.addInitScript(() => {
      (globalThis as unknown as { portrait: unknown }).portrait = {
        event: ["Stub Event", { Step: 1 }, "Stub Event Without Properties"],
        profile: [{ Site: { Early: true } }],
        onUserLogin: [],
        privacy: [],
        account: [],
      };
    });
    const { page } = await visit(context);
    await page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Before Init", { Step: 2 }));
    expect(await queued(page)).toEqual([]); // nothing is stored or sent before init
    await init(page);
    await flush(page);
    const profile = await profileOfDevice(await deviceIdOf(page));
    expect(profile.properties.Early).toBe(true);
    const events = await timeline(profile.id);
    expect(names(events)).toEqual(["App Launched", "Before Init", "Stub Event", "Stub Event Without Properties"]);
    expect(events.find((e) => e.name === "Stub Event").properties).toEqual({ Step: 1 });
    await context.close();
  });

  it("a new session after 30 idle minutes sends App Launched again", async () => {
    const context = await browser.newContext();
    const first = await visit(context);
    await init(first.page);
    await flush(first.page);
    const device = await deviceIdOf(first.page);
    await first.page.evaluate(() => {
      const w = globalThis as unknown as Win;
      w.localStorage.setItem("portrait_session", JSON.stringify({ last: Date.now() - 31 * 60 * 1000 }));
    });
    const second = await visit(context);
    await init(second.page);
    await flush(second.page);
    const profile = await profileOfDevice(device);
    expect(names(await timeline(profile.id))).toEqual(["App Launched", "App Launched"]);
    await context.close();
  });

  it("the offline queue survives a reload while the server is unreachable and is delivered exactly once", async () => {
    const gate = new Gate(server.url);
    await gate.open();
    const context = await browser.newContext();
    try {
      const { page } = await visit(context);
      await init(page, gate.url);
      await flush(page);
      const device = await deviceIdOf(page);
      const profileId = (await profileOfDevice(device)).id;

      await gate.close(); // connections to the endpoint are now refused
      await page.evaluate(() => {
        const p = (globalThis as unknown as Win).portrait;
        p.event.push("Offline One");
        p.profile.push({ Site: { "Offline Visits": { $incr: 1 } } });
      });
      await flush(page);
      expect(await queued(page)).toHaveLength(2);
      await page.reload(); // pagehide tries a beacon, which fails; the records stay queued
      await init(page, gate.url);
      await page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Offline Two"));
      await flush(page);
      expect(await queued(page)).toHaveLength(3);
      expect(names(await timeline(profileId))).toEqual(["App Launched"]);

      await gate.open(); // the same endpoint answers again
      const kinds: string[] = [];
      context.on("request", (r) => {
        if (r.url().includes("/v1/sdk/batch")) kinds.push(r.resourceType());
      });
      // Page hide hands the queue to sendBeacon; the records stay queued, as a beacon's fate is unknown...
      await page.evaluate(() =>
        (globalThis as unknown as { dispatchEvent(e: unknown): void }).dispatchEvent(
          new (globalThis as unknown as { Event: new (type: string) => unknown }).Event("pagehide"),
        ),
      );
      await eventually(async () => {
        expect(names(await timeline(profileId))).toEqual(["App Launched", "Offline One", "Offline Two"]);
      });
      expect(kinds[0]).toBe("ping");
      // ...so the next page sends them again, and the server's idempotency keeps each one once.
      await page.reload();
      await init(page, gate.url);
      await flush(page);
      expect(await queued(page)).toEqual([]);
      expect(Math.max(...gate.sent.values())).toBeGreaterThanOrEqual(2);
      expect(names(await timeline(profileId))).toEqual(["App Launched", "Offline One", "Offline Two"]);
      expect((await profileOfDevice(device)).properties["Offline Visits"]).toBe(1);
    } finally {
      await context.close();
      await gate.close().catch(() => undefined);
    }
  });

  it("two tabs of one site queueing at once lose none of each other's records", async () => {
    const context = await browser.newContext();
    try {
      const tabs = [await visit(context), await visit(context)];
      for (const { page } of tabs) await init(page);
      const burst = (tab: number) =>
        tabs[tab]!.page.evaluate(async (t) => {
          for (let i = 0; i < 40; i++) {
            (globalThis as unknown as Win).portrait.event.push(`Tab ${t}`, { i });
            await new Promise((resolve) => setTimeout(resolve, 15));
          }
        }, tab);
      await Promise.all([burst(0), burst(1)]);
      for (const { page } of tabs) await flush(page);
      const device = await deviceIdOf(tabs[0]!.page);
      expect(await deviceIdOf(tabs[1]!.page)).toBe(device);
      await eventually(async () => {
        const events = await timeline((await profileOfDevice(device)).id);
        expect(events.filter((e) => e.name === "Tab 0")).toHaveLength(40);
        expect(events.filter((e) => e.name === "Tab 1")).toHaveLength(40);
      });
      expect(await queued(tabs[0]!.page)).toEqual([]);
    } finally {
      await context.close();
    }
  });

  it("a logout in one tab starts a new session for the new device, whichever tab acts next", async () => {
    const context = await browser.newContext();
    try {
      const [one, two] = [await visit(context), await visit(context)];
      await init(one.page);
      await init(two.page);
      // A second later the second tab moves the session clock on, so its page holds its own copy of it.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      await two.page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Before"));
      await flush(two.page);
      await one.page.evaluate(() => (globalThis as unknown as Win).portrait.logout());
      const device = await deviceIdOf(one.page);
      await two.page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Tab Two First"));
      await flush(two.page);
      await eventually(async () => {
        expect(names(await timeline((await profileOfDevice(device)).id))).toEqual(["App Launched", "Tab Two First"]);
      });
    } finally {
      await context.close();
    }
  });

  it("a login as another person in a second tab leaves the first person's queued records on the first person", async () => {
    const context = await browser.newContext();
    try {
      const one = await visit(context);
      await init(one.page);
      await one.page.evaluate(() =>
        (globalThis as unknown as Win).portrait.onUserLogin.push({ Site: { Identity: "tab-a" } }),
      );
      await flush(one.page);
      const deviceA = await deviceIdOf(one.page);
      const two = await visit(context);
      await init(two.page);
      await flush(two.page);
      expect(await deviceIdOf(two.page)).toBe(deviceA);

      // Tab 1's next batch is answered 503 until tab 2 has logged in as B; it then waits in back-off.
      let refuse = true;
      let refused = 0;
      await one.page.route("**/v1/sdk/batch**", async (route) => {
        if (!refuse) return route.continue();
        refused++;
        await route.fulfill({ status: 503, body: "{}", headers: { "access-control-allow-origin": "*" } });
      });
      await one.page.evaluate(() => {
        const p = (globalThis as unknown as Win).portrait;
        p.event.push("A Purchase Intent");
        p.profile.push({ Site: { "Home City": "A-city" } });
      });
      await flush(one.page);
      expect(refused).toBe(1);
      await two.page.evaluate(() =>
        (globalThis as unknown as Win).portrait.onUserLogin.push({
          Site: { Identity: "tab-b", Email: "b@example.com" },
        }),
      );
      await flush(two.page);
      const deviceB = await deviceIdOf(two.page);
      // Logging in again as the same person keeps the device.
      await two.page.evaluate(() =>
        (globalThis as unknown as Win).portrait.onUserLogin.push({ Site: { Email: " B@example.com", Name: "Bea" } }),
      );
      expect(await deviceIdOf(two.page)).toBe(deviceB);
      await flush(two.page);
      refuse = false;

      await eventually(async () => {
        const a = await profileOfDevice(deviceA);
        expect(a.identities).toMatchObject({ Identity: "tab-a" });
        expect(a.properties["Home City"]).toBe("A-city");
        expect(names(await timeline(a.id))).toContain("A Purchase Intent");
      }, 15_000);
      // What tab 1 does from now on is B's: the browser is B's.
      expect(await deviceIdOf(one.page)).toBe(deviceB);
      await one.page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("After Switch"));
      await flush(one.page);
      const b = await profileOfDevice(deviceB);
      expect(b.identities).toMatchObject({ Identity: "tab-b", Email: "b@example.com" });
      expect(b.properties.Name).toBe("Bea");
      expect(b.properties["Home City"]).toBeUndefined();
      const bEvents = names(await timeline(b.id));
      expect(bEvents).not.toContain("A Purchase Intent");
      expect(bEvents).toContain("After Switch");
      expect(names(await timeline((await profileOfDevice(deviceA)).id))).not.toContain("After Switch");
      expect(deviceB).not.toBe(deviceA); // the old device stays A's
    } finally {
      await context.close();
    }
  });

  it("a burst of 5,000 calls costs linear time: the queue is not rewritten to storage on every call", async () => {
    const context = await browser.newContext();
    try {
      const { page } = await visit(context);
      await init(page);
      await flush(page);
      const device = await deviceIdOf(page);
      await context.setOffline(true); // the burst stays queued, so that what storage holds can be checked
      const ms = await page.evaluate(() => {
        const p = (globalThis as unknown as Win).portrait;
        const clock = (globalThis as unknown as { performance: { now(): number } }).performance;
        const t0 = clock.now();
        for (let i = 0; i < 5000; i++) p.event.push("Burst", { i });
        return clock.now() - t0;
      });
      // A complexity check, not a benchmark: about 130 ms here; rewriting the queue on every call took 12 s.
      expect(ms).toBeLessThan(1500);
      // Written to storage within a moment, bounded to the newest 1000 (docs/sdk.md), without a pagehide.
      await eventually(async () => {
        const stored = (await queued(page)) as Array<{ properties?: { i?: number } }>;
        expect(stored).toHaveLength(1000);
        expect(stored.at(-1)?.properties?.i).toBe(4999);
      });
      await context.setOffline(false);
      await eventually(async () => {
        const events = await timeline((await profileOfDevice(device)).id, 1000);
        expect(events.filter((e) => e.name === "Burst")).toHaveLength(1000);
      }, 20_000);
    } finally {
      await context.close();
    }
  }, 120_000);

  it("a browser clock 3 days fast: records are stored at the server's time, not refused as future", async () => {
    const context = await browser.newContext();
    try {
      const ahead = 3 * 86_400_000;
      const page = await context.newPage();
      await page.clock.install({ time: Date.now() + ahead }); // Date runs on from 3 days ahead, timers as usual
      await page.goto(`${pageBase}/sdk/examples/test.html`);
      await init(page);
      await page.evaluate(() => {
        const p = (globalThis as unknown as Win).portrait;
        p.event.push("Skewed Event");
        p.profile.push({ Site: { "Skewed Plan": "gold" } });
      });
      await page.clock.runFor(1500); // past the SDK's 1 s flush timer
      await flush(page);
      const profile = await profileOfDevice(await deviceIdOf(page));
      expect(profile?.properties["Skewed Plan"]).toBe("gold");
      const events = await timeline(profile.id);
      expect(names(events)).toEqual(["App Launched", "Skewed Event"]);
      for (const e of events) expect(Math.abs(Date.parse(e.ts) - Date.now())).toBeLessThan(60_000);
    } finally {
      await context.close();
    }
  });

  it("a page whose utm_source is cut at 2,048 units inside an emoji still sends its records", async () => {
    const context = await browser.newContext();
    try {
      const source = `${"a".repeat(2047)}👋`;
      const { page } = await visit(context, `?utm_source=${encodeURIComponent(source)}`);
      await init(page);
      await page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Long Source", { v: "x\u0000y" }));
      await flush(page);
      const profile = await profileOfDevice(await deviceIdOf(page));
      expect(profile.system.acquiredFrom).toBe("a".repeat(2047));
      const events = await timeline(profile.id);
      expect(names(events)).toEqual(["App Launched", "Long Source"]);
      expect(events.find((e) => e.name === "Long Source").properties).toEqual({ v: "xy" });
    } finally {
      await context.close();
    }
  });

  it("when storage refuses the queue, every record still leaves from memory, with a warning", async () => {
    const context = await browser.newContext();
    await context.addInitScript(() => {
      const storage = (globalThis as unknown as { Storage: { prototype: { setItem: unknown } } }).Storage;
      storage.prototype.setItem = () => {
        throw new Error("QuotaExceededError");
      };
    });
    try {
      const { page, console } = await visit(context);
      await init(page);
      await page.evaluate(() => {
        const p = (globalThis as unknown as Win).portrait;
        p.profile.push({ Plan: "kept" });
        for (let i = 0; i < 5; i++) p.event.push("In Memory", { i });
      });
      await flush(page);
      const profile = await profileOfDevice(await deviceIdOf(page));
      expect(profile.properties.Plan).toBe("kept");
      expect(names(await timeline(profile.id))).toEqual(["App Launched", ...Array(5).fill("In Memory")]);
      expect(console.some((m) => m.startsWith("warning") && m.includes("in memory"))).toBe(true);
    } finally {
      await context.close();
    }
  });

  it("what is queued when the page goes away still leaves, once (keepalive fetch or beacon)", async () => {
    const context = await browser.newContext();
    const { page } = await visit(context);
    await init(page);
    await page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Left Quickly"));
    const device = await deviceIdOf(page);
    await page.goto("about:blank"); // before the SDK's 1 s flush timer
    await eventually(async () => {
      const profile = await profileOfDevice(device);
      expect(names(await timeline(profile.id))).toEqual(["App Launched", "Left Quickly"]);
    });
    await context.close();
  });

  it("records queued while the browser is offline go out on the online event", async () => {
    const context = await browser.newContext();
    const { page } = await visit(context);
    await init(page);
    await flush(page);
    const profileId = (await profileOfDevice(await deviceIdOf(page))).id;
    await context.setOffline(true);
    await page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Queued Offline"));
    await sleep(1500); // past the SDK's 1 s flush timer
    expect(names(await timeline(profileId))).toEqual(["App Launched"]);
    await context.setOffline(false); // fires `online`: no call from the page is needed
    await eventually(async () => {
      expect(names(await timeline(profileId))).toEqual(["App Launched", "Queued Offline"]);
    });
    await context.close();
  });

  it("retries a 5xx with back-off, never a 4xx, and drops records the server refused with a warning", async () => {
    const context = await browser.newContext();
    let calls = 0;
    let mode: "503-once" | "400" | "pass" = "503-once";
    await context.route("**/v1/sdk/batch**", async (route) => {
      calls++;
      if (mode === "503-once") {
        mode = "pass";
        await route.fulfill({ status: 503, body: "{}", headers: { "access-control-allow-origin": "*" } });
      } else if (mode === "400") {
        await route.fulfill({
          status: 400,
          contentType: "application/json",
          headers: { "access-control-allow-origin": "*" },
          body: JSON.stringify({ error: { code: "INVALID_BATCH", message: "test refusal" } }),
        });
      } else await route.continue();
    });
    const { page, console } = await visit(context);
    await init(page);
    const device = await deviceIdOf(page);
    await eventually(async () => {
      expect(calls).toBe(2);
      expect((await profileOfDevice(device))?.type).toBe("anonymous");
    });

    mode = "400";
    await page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Refused Batch"));
    await flush(page);
    await sleep(2500);
    expect(calls).toBe(3);
    expect(await queued(page)).toEqual([]);
    expect(console.some((m) => m.startsWith("error") && m.includes("INVALID_BATCH"))).toBe(true);

    mode = "pass";
    await page.evaluate(() => {
      const p = (globalThis as unknown as Win).portrait;
      p.profile.push({ Site: { Phone: "223" } }); // valid for the SDK, refused by the server (INVALID_PHONE)
      p.event.push("Accepted");
    });
    await flush(page);
    expect(await queued(page)).toEqual([]);
    expect(console.some((m) => m.startsWith("warning") && m.includes("INVALID_PHONE"))).toBe(true);
    const profile = await profileOfDevice(device);
    expect(profile.properties.Phone).toBeUndefined();
    expect(names(await timeline(profile.id))).toEqual(["Accepted", "App Launched"]);
    await context.close();
  });

  it("setPushToken registers this device's token (a string or a PushSubscription), replaces it, and null unregisters", async () => {
    const context = await browser.newContext();
    const { page, console } = await visit(context);
    await init(page);
    const deviceId = await deviceIdOf(page);
    const deviceRow = async () => {
      const profile = await profileOfDevice(deviceId);
      const exported = await server.api("GET", `/v1/profiles/${profile.id}/export`);
      return exported.body.devices.find((d: AnyBody) => d.deviceId === deviceId);
    };
    await page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Page Viewed"));
    await flush(page);
    // The device's first record came from the SDK, so its row keeps the platform of that record's context.
    expect(await deviceRow()).toMatchObject({ pushToken: null, platform: "web" });
    await page.evaluate(() => (globalThis as unknown as Win).portrait.setPushToken("tok-web-1"));
    await flush(page);
    expect(await deviceRow()).toMatchObject({ pushToken: "tok-web-1", platform: "web" });

    await page.evaluate(() => {
      // Shaped like a PushSubscription: its JSON (toJSON) is what a web-push sender needs.
      const subscription = {
        endpoint: "https://push.example/abc",
        keys: { p256dh: "BNc", auth: "tBH" },
        unsubscribe: () => Promise.resolve(true),
        toJSON: () => ({ endpoint: subscription.endpoint, keys: subscription.keys }),
      };
      (globalThis as unknown as Win).portrait.setPushToken(subscription);
    });
    await flush(page);
    expect(JSON.parse((await deviceRow()).pushToken)).toEqual({
      endpoint: "https://push.example/abc",
      keys: { p256dh: "BNc", auth: "tBH" },
    });

    await page.evaluate(() => {
      const p = (globalThis as unknown as Win).portrait;
      p.setPushToken(42 as unknown as string); // refused client-side with a warning
      p.setPushToken(null);
    });
    await flush(page);
    expect((await deviceRow()).pushToken).toBeNull();
    expect(console.filter((m) => m.includes("setPushToken takes"))).toHaveLength(1);
    await context.close();
  });

  it("a page of a site the account does not list is refused, reported on the console, and stores nothing", async () => {
    expect(
      (await server.api("PATCH", "/v1/account/settings", { allowedOrigins: ["https://elsewhere.example"] })).status,
    ).toBe(200);
    try {
      const context = await browser.newContext();
      const { page, console } = await visit(context);
      await init(page);
      await page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Refused Page View"));
      await flush(page);
      expect(console.some((m) => m.startsWith("error") && m.includes("FORBIDDEN"))).toBe(true);
      expect(await profileOfDevice(await deviceIdOf(page))).toBeUndefined();
      expect(await queued(page)).toEqual([]);
      await context.close();
    } finally {
      await server.api("PATCH", "/v1/account/settings", { allowedOrigins: ["*"] });
    }
  });

  it("a wrong key is reported on the console and not retried", async () => {
    const context = await browser.newContext();
    let calls = 0;
    context.on("request", (r) => {
      if (r.url().includes("/v1/sdk/batch")) calls++;
    });
    const { page, console } = await visit(context);
    await page.evaluate(
      (endpoint) => (globalThis as unknown as Win).portrait.init({ key: "pk_not_a_key", endpoint }),
      server.url,
    );
    await flush(page);
    await sleep(2500);
    expect(calls).toBe(1);
    expect(console.some((m) => m.startsWith("error") && m.includes("UNAUTHORIZED"))).toBe(true);
    expect(await queued(page, "portrait_queue_pk_not_a_key")).toEqual([]);
    // A secret key is refused before anything is sent.
    const other = await visit(context);
    await other.page.evaluate(() => (globalThis as unknown as Win).portrait.init({ key: "sk_live_oops" }));
    expect(other.console.some((m) => m.startsWith("error") && m.includes("secret key"))).toBe(true);
    await context.close();
  });

  it("while opted out the SDK stores nothing but the opt-out, and opting out removes what it stored", async () => {
    const context = await browser.newContext();
    try {
      const stored = async (page: Page) => ({
        local: await page.evaluate(() => {
          const ls = (globalThis as unknown as Win).localStorage;
          const out: string[] = [];
          for (let i = 0; i < ls.length; i++) {
            const k = ls.key(i);
            if (k?.startsWith("portrait_")) out.push(k);
          }
          return out.sort();
        }),
        cookies: (await context.cookies(pageBase))
          .map((c) => c.name)
          .filter((n) => n.startsWith("portrait_"))
          .sort(),
      });
      const onlyTheFlag = { local: ["portrait_optout"], cookies: ["portrait_optout"] };

      const first = await visit(context);
      await init(first.page);
      await first.page.evaluate(() => {
        const p = (globalThis as unknown as Win).portrait;
        p.onUserLogin.push({ Site: { Identity: "consent-1" } });
        p.event.push("Consented Visit");
      });
      await flush(first.page);
      const consented = await deviceIdOf(first.page);
      await first.page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Never Sent"));
      await sleep(300); // the queue is written to storage, not sent yet (1 s)
      const before = await stored(first.page);
      expect(before.cookies).toContain("portrait_device");
      expect(before.local).toEqual(expect.arrayContaining(["portrait_device", "portrait_session", "portrait_person"]));
      expect(before.local.some((k) => k.startsWith("portrait_queue_"))).toBe(true);
      expect(before.local.some((k) => k.startsWith("portrait_alive_"))).toBe(true);

      await first.page.evaluate(() => (globalThis as unknown as Win).portrait.privacy.push({ optOut: true }));
      expect(await stored(first.page)).toEqual(onlyTheFlag);
      await first.page.evaluate(() => {
        const p = (globalThis as unknown as Win).portrait;
        p.event.push("Opted Out");
        p.onUserLogin.push({ Site: { Identity: "consent-2" } });
        p.profile.push({ Site: { Plan: "x" } });
        p.getDeviceId();
        p.logout();
      });
      await sleep(1500);
      expect(await stored(first.page)).toEqual(onlyTheFlag);

      // A new page, opted out before it started: its device id is its own and stored nowhere.
      const second = await visit(context);
      await init(second.page);
      await second.page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Opted Out Too"));
      const transient = await deviceIdOf(second.page);
      await sleep(300);
      expect(await stored(second.page)).toEqual(onlyTheFlag);

      // Opting in starts storing again; the device is new (the old one was forgotten).
      await second.page.evaluate(() => {
        const p = (globalThis as unknown as Win).portrait;
        p.privacy.push({ optOut: false });
        p.event.push("Opted In");
      });
      await flush(second.page);
      const device = await deviceIdOf(second.page);
      expect(device).toBe(transient);
      expect(device).not.toBe(consented);
      expect((await stored(second.page)).cookies).toEqual(["portrait_device"]);
      expect(names(await timeline((await profileOfDevice(device)).id))).toEqual(["App Launched", "Opted In"]);
      expect(names(await timeline((await profileOfDevice(consented)).id))).toEqual([
        "App Launched",
        "Consented Visit",
        "Identity Set",
      ]);
    } finally {
      await context.close();
    }
  });

  it("opt-out sends nothing, persists across pages, and says so on the console", async () => {
    const context = await browser.newContext();
    const batches: string[] = [];
    context.on("request", (r) => {
      if (r.url().includes("/v1/sdk/")) batches.push(r.url());
    });
    await context.addInitScript(() => {
      const w = globalThis as unknown as { portrait: unknown; location: { search: string } };
      if (!w.location.search.includes("stub=optout")) return;
      w.portrait = {
        event: ["Before Opt Out"],
        profile: [],
        onUserLogin: [],
        privacy: [{ optOut: true }],
        account: [],
      };
    });
    const first = await visit(context, "?stub=optout");
    await init(first.page);
    await first.page.evaluate(() => {
      const p = (globalThis as unknown as Win).portrait;
      p.event.push("After Opt Out");
      p.onUserLogin.push({ Site: { Identity: "opted-out-user" } });
      p.handleIncrementValue("Points", 1);
    });
    await flush(first.page);
    await sleep(1500);
    const device = await deviceIdOf(first.page);
    expect(first.console.some((m) => m.includes("opted out"))).toBe(true);
    expect(
      await first.page.evaluate(() => (globalThis as unknown as Win).portrait.profile.get("Plan")),
    ).toBeUndefined();

    await context.clearCookies(); // the flag is also in localStorage: still opted out
    const second = await visit(context);
    await init(second.page);
    await second.page.evaluate(() => (globalThis as unknown as Win).portrait.event.push("Next Page"));
    await flush(second.page);
    await sleep(1500);
    expect(batches).toEqual([]);
    expect(await profileOfDevice(device)).toBeUndefined();
    expect(await queued(second.page)).toEqual([]);
    await context.close();
  });
});
