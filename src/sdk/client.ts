/**
 * The SDK's state and behaviour behind the public surface (index.ts): initialisation and the calls made before it,
 * the device id, sessions (`App Launched`), the records' stamps and context, opt-out, logout, and reading the
 * account's public properties.
 */
import { browser, log } from "./browser.js";
import { Outbox, type WireRecord } from "./outbox.js";
import {
  cleanEventName,
  cleanEventProperties,
  cleanProfileProperties,
  IDENTITY_KEYS,
  isPlainObject,
  type Json,
  type JsonObject,
  storableText,
} from "./sanitize.js";
import {
  ALIVE_KEY_PREFIX,
  DEVICE_KEY,
  localKeys,
  OPT_OUT_KEY,
  PERSON_KEY,
  QUEUE_KEY_PREFIX,
  readCookie,
  readDurable,
  readJson,
  readLocal,
  SESSION_KEY,
  uuid,
  writeCookie,
  writeDurable,
  writeLocal,
} from "./storage.js";

/** 30 minutes without activity end a session; the next activity sends `App Launched`. */
export const SESSION_IDLE_MS = 30 * 60 * 1000;
/** The server refuses context strings longer than this (and with them the whole record). */
const MAX_CONTEXT_LENGTH = 2048;
/** The server's limit for a push token (API.md token records). */
const MAX_TOKEN_LENGTH = 4096;
const UTM_KEYS = ["utm_source", "utm_medium", "utm_campaign"];

/**
 * The person this browser's device id was last logged in as: which device, and a digest per identity key. Kept in
 * localStorage, which every tab of the site shares, so that a login in one tab is judged against one in another.
 * Digests rather than the values: the browser needs only to compare them, and an e-mail address need not sit in
 * storage for that.
 */
interface Person {
  device: string;
  ids: Record<string, string>;
}

/** A 53-bit string hash (cyrb53): enough to tell identity values apart, synchronous, no crypto needed. */
function digest(text: string): string {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(36);
}

/**
 * The identity values of a login or profile push, normalised roughly as the server does (trimmed, Email
 * lower-cased, Phone without separators), so that the same person written twice compares equal.
 */
function identityDigests(properties: JsonObject): Record<string, string> {
  const out: Record<string, string> = {};
  for (const key of IDENTITY_KEYS) {
    const v = properties[key];
    if (typeof v !== "string" && typeof v !== "number") continue; // absent, or an operation such as $delete
    let text = String(v).trim();
    if (key === "Email") text = text.toLowerCase();
    else if (key === "Phone") text = text.replace(/[^\d+]/g, "");
    if (text) out[key] = digest(`${key}=${text}`);
  }
  return out;
}

/**
 * Whether a login names the person the device is logged in as: one identity value in common and none that
 * differs. The SDK cannot know the account's identityKeys, so it errs towards "another person": a needless new
 * device costs the server an empty anonymous profile, while a wrong "same" lets one person's queued records land on
 * the other (SEMANTICS §3 case 4 moves the device at once, and records are resolved to a profile when they arrive).
 */
function samePerson(known: Record<string, string>, login: Record<string, string>): boolean {
  let shared = false;
  for (const [key, value] of Object.entries(login)) {
    const had = known[key];
    if (had === undefined) continue;
    if (had !== value) return false;
    shared = true;
  }
  return shared;
}

export interface InitOptions {
  key?: unknown;
  endpoint?: unknown;
}

/** `{ Site: {...} }` as CleverTap pages write it, or the property object itself. */
function siteOf(input: unknown): unknown {
  return isPlainObject(input) && isPlainObject(input.Site) ? input.Site : input;
}

/** At most 2,048 UTF-16 units, never half a surrogate pair, and nothing the server cannot store. */
function cut(raw: string): string {
  const s = storableText(raw);
  if (s.length <= MAX_CONTEXT_LENGTH) return s;
  const end = /[\uD800-\uDBFF]/.test(s[MAX_CONTEXT_LENGTH - 1] ?? "") ? MAX_CONTEXT_LENGTH - 1 : MAX_CONTEXT_LENGTH;
  return s.slice(0, end);
}

/**
 * The browser's time zone, looked up once: building an Intl.DateTimeFormat took most of a call's time (a burst of
 * 5,000 events spent 0.7 s in it), and the zone of a page does not change while it is open.
 */
let timeZone: string | null | undefined;
function browserTimeZone(): string | null {
  if (timeZone === undefined) {
    try {
      const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
      // An unknown zone would make the server refuse the whole record; better to send none.
      timeZone = tz && tz !== "Etc/Unknown" ? tz : null;
    } catch {
      timeZone = null; // no Intl time zone support
    }
  }
  return timeZone;
}

/** SEMANTICS §11 context fields the browser knows: platform, timezone, locale, url, referrer, UTM parameters. */
function pageContext(): Record<string, Json> {
  const w = browser();
  const ctx: Record<string, Json> = { platform: "web" };
  const tz = browserTimeZone();
  if (tz) ctx.timezone = tz;
  if (w.navigator?.language) ctx.locale = cut(w.navigator.language);
  const href = w.location?.href;
  if (href) ctx.url = cut(href.split("#")[0] ?? href);
  if (w.document?.referrer) ctx.referrer = cut(w.document.referrer);
  try {
    const params = new URLSearchParams(w.location?.search ?? "");
    for (const k of UTM_KEYS) {
      const v = params.get(k);
      if (v) ctx[k] = cut(v);
    }
  } catch {
    // no URLSearchParams
  }
  return ctx;
}

export class Client {
  private outbox: Outbox | null = null;
  private endpoint = "";
  private key = "";
  /** Calls made after the script loaded but before init, replayed in order by init. */
  private pending: Array<() => void> = [];
  private markReady: () => void = () => {};
  /** The device id while opted out: this page's only, never stored; kept if the visitor opts in on this page. */
  private transientId: string | null = null;
  readonly ready: Promise<void>;

  constructor(private readonly scriptOrigin: string | null) {
    this.ready = new Promise((resolve) => {
      this.markReady = resolve;
    });
  }

  get initialised(): boolean {
    return this.outbox !== null;
  }

  init(options: InitOptions): void {
    if (this.outbox) {
      log.warn("init was already called; this call is ignored");
      return;
    }
    const opts = isPlainObject(options) ? options : {};
    const key = opts.key;
    if (typeof key !== "string" || !key.startsWith("pk_")) {
      log.error(
        typeof key === "string" && key.startsWith("sk_")
          ? "init: that is a secret key; never put it in a web page. Use the account's public key (pk_…)"
          : "init: key must be the account's public key (pk_…)",
      );
      return;
    }
    const endpoint = typeof opts.endpoint === "string" ? opts.endpoint : this.scriptOrigin;
    if (!endpoint || !/^https?:\/\/[^/]/.test(endpoint)) {
      log.error('init: endpoint must be the Portrait server\'s URL, such as "https://portrait.example.com"');
      return;
    }
    this.key = key;
    this.endpoint = endpoint.replace(/\/+$/, "");
    const outbox = new Outbox(this.endpoint, key, () => this.optedOut());
    this.outbox = outbox;
    // Also what an earlier SDK, which stored while opted out, left behind.
    if (this.optedOut()) this.forget();
    const leftover = outbox.records().length > 0;

    const w = browser();
    w.addEventListener("online", () => outbox.online());
    // Page hide: a tab switch may be the last moment a mobile page runs, so send now (keepalive fetch); a page
    // going away hands what is left to sendBeacon.
    w.addEventListener("pagehide", () => {
      outbox.beacon();
      outbox.leave();
    });
    // Back from the back-forward cache: alive again, and its queue (if no other page took it over) is its own.
    w.addEventListener("pageshow", () => outbox.back());
    w.document?.addEventListener("visibilitychange", () => {
      if (w.document?.visibilityState === "hidden") {
        // Hidden may be the last moment this page runs (mobile browsers discard hidden tabs without pagehide).
        outbox.persist();
        if (!this.optedOut()) void outbox.flush();
      } else if (!this.optedOut()) this.safely(() => this.touchSession(Date.now()));
    });

    if (!this.optedOut()) writeCookie(DEVICE_KEY, this.deviceId()); // a rolling year from the last visit
    const calls = this.pending;
    this.pending = [];
    for (const call of calls) this.safely(call);
    if (!this.optedOut()) this.touchSession(Date.now());
    this.markReady();
    // Whatever an earlier page left queued goes out now; this page's own records follow the 1 s timer.
    if (leftover && !this.optedOut()) void outbox.flush();
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      log.error("internal error:", e);
    }
  }

  /** Runs `fn` now if initialised, else at init; `at` is the time of the call, kept for the record's ts. */
  private run(fn: (at: number) => void): void {
    const at = Date.now();
    if (this.outbox) fn(at);
    else this.pending.push(() => fn(at));
  }

  optedOut(): boolean {
    return readDurable(OPT_OUT_KEY) === "1";
  }

  /** Created and stored on first use; while opted out, one for this page only, never stored (ePrivacy). */
  deviceId(): string {
    let id = readLocal(DEVICE_KEY);
    if (!id) {
      if (this.optedOut()) {
        this.transientId ??= uuid();
        return this.transientId;
      }
      id = readCookie(DEVICE_KEY) ?? this.transientId ?? uuid();
      this.transientId = null;
      writeDurable(DEVICE_KEY, id);
    }
    return id;
  }

  /**
   * SEMANTICS §3: `App Launched` marks a new session; a session ends after 30 idle minutes. The caller has checked
   * the opt-out (once per call: reading it reads the cookie).
   */
  private touchSession(at: number): void {
    if (!this.outbox) return;
    // A session belongs to a device: after a logout or a login as someone else (a new device id, in any tab) the
    // next call starts one, even if another tab kept the old session's clock going meanwhile.
    const device = this.deviceId();
    const session = readJson<{ last?: unknown; device?: unknown }>(SESSION_KEY);
    const last = typeof session?.last === "number" && session.device === device ? session.last : null;
    if (last !== null && at - last <= SESSION_IDLE_MS) {
      // The clock moves on by the second at most: a burst of calls writes it once, not once per call.
      if (at - last >= 1000) writeLocal(SESSION_KEY, JSON.stringify({ last: at, device }));
      return;
    }
    writeLocal(SESSION_KEY, JSON.stringify({ last: Math.max(at, last ?? 0), device }));
    const screen = browser().screen;
    const properties: JsonObject = screen ? { "Screen Width": screen.width, "Screen Height": screen.height } : {};
    this.outbox.add(this.stamp("event", { name: "App Launched", properties }, at));
  }

  private stamp(type: WireRecord["type"], fields: Partial<WireRecord>, at: number): WireRecord {
    return { type, id: uuid(), deviceId: this.deviceId(), ts: at / 1000, ...fields, context: pageContext() };
  }

  private enqueue(type: WireRecord["type"], fields: Partial<WireRecord>, at: number): void {
    if (!this.outbox || this.optedOut()) return;
    this.touchSession(at);
    this.outbox.add(this.stamp(type, fields, at));
  }

  /** onUserLogin: SEMANTICS §3 Login; the server decides identify / switch / append / new. */
  login(input: unknown): void {
    this.run((at) => {
      const properties = cleanProfileProperties(siteOf(input), "onUserLogin", new Date(at));
      if (properties === null) return;
      if (!IDENTITY_KEYS.some((k) => properties[k] !== undefined)) {
        log.warn(`onUserLogin needs an identity (one of ${IDENTITY_KEYS.join(", ")}); nothing sent`);
        return;
      }
      if (!this.outbox || this.optedOut()) return;
      const ids = identityDigests(properties);
      const person = this.person();
      if (person === null || samePerson(person.ids, ids)) {
        // The first login of an anonymous device keeps it (SEMANTICS §3 case 1: its history becomes the person's);
        // the same person again keeps it too, and may add identity values of other keys (case 3).
        this.rememberPerson({ ...ids, ...person?.ids });
        this.enqueue("login", { properties }, at);
        return;
      }
      // Another person, without a logout: a new device, as CleverTap's SDK does. The server would otherwise move
      // the device to the new person at once (case 4), and records of the old person still queued (in this tab or
      // another, behind a failed send) would land on the new one. They keep the old device id they were stamped
      // with, so they reach the old person; the login goes first on the new device, then its App Launched.
      this.newDevice();
      this.rememberPerson(ids);
      this.outbox.add(this.stamp("login", { properties }, at));
      this.touchSession(at);
    });
  }

  /** Who the current device is logged in as, if this SDK saw the login (null: anonymous, or not known here). */
  private person(): Person | null {
    const p = readJson<Partial<Person>>(PERSON_KEY);
    if (!p || p.device !== this.deviceId() || !isPlainObject(p.ids)) return null;
    return { device: p.device, ids: p.ids as Record<string, string> };
  }

  private rememberPerson(ids: Record<string, string>): void {
    if (Object.keys(ids).length > 0) writeLocal(PERSON_KEY, JSON.stringify({ device: this.deviceId(), ids }));
  }

  /** A new anonymous device: its own id, no session yet, nobody logged in. */
  private newDevice(): void {
    writeDurable(DEVICE_KEY, uuid());
    writeLocal(SESSION_KEY, null);
    writeLocal(PERSON_KEY, null);
  }

  profile(input: unknown): void {
    this.pushProperties("profile.push", siteOf(input));
  }

  private pushProperties(where: string, input: unknown): void {
    this.run((at) => {
      const properties = cleanProfileProperties(input, where, new Date(at));
      if (properties === null || Object.keys(properties).length === 0 || !this.outbox || this.optedOut()) return;
      // Identity values in a push make the profile identified (SEMANTICS §3 profile push) without a login: keep
      // them, so that a later login is judged against them too. Keys already known keep their value (the server
      // adds only unowned values).
      const ids = identityDigests(properties);
      if (Object.keys(ids).length > 0) this.rememberPerson({ ...ids, ...this.person()?.ids });
      this.enqueue("profile", { properties }, at);
    });
  }

  /** One operation on one key, as the CleverTap-style helpers (handleIncrementValue, …) send it. */
  operate(method: string, key: unknown, op: string, operand: unknown): void {
    if (typeof key !== "string") {
      log.warn(`${method}: the key must be a string; nothing sent`);
      return;
    }
    this.pushProperties(method, { [key]: { [op]: operand } });
  }

  event(name: unknown, properties: unknown): void {
    this.run((at) => {
      const clean = cleanEventName(name);
      if (clean === null) return;
      this.enqueue("event", { name: clean, properties: cleanEventProperties(clean, properties) }, at);
    });
  }

  /**
   * SEMANTICS §11 push tokens: this device's token (a string, or a PushSubscription, sent as its JSON), replacing the
   * one before; null unregisters it.
   */
  pushToken(input: unknown): void {
    let token: string | null;
    if (input === null || typeof input === "string") token = input;
    else if (typeof input === "object" && !Array.isArray(input)) token = JSON.stringify(input) ?? "";
    else token = "";
    if (token !== null && (token.length === 0 || token.length > MAX_TOKEN_LENGTH)) {
      log.warn(
        `setPushToken takes a token (a string of 1 to ${MAX_TOKEN_LENGTH} characters, or a PushSubscription) or null; nothing sent`,
      );
      return;
    }
    this.run((at) => this.enqueue("token", { channel: "push", token }, at));
  }

  privacy(input: unknown): void {
    if (!isPlainObject(input) || typeof input.optOut !== "boolean") {
      log.warn("privacy.push takes { optOut: true } or { optOut: false }");
      return;
    }
    if (input.optOut) {
      writeDurable(OPT_OUT_KEY, "1");
      this.forget();
      log.info("opted out: nothing is sent from this browser until privacy.push({ optOut: false })");
    } else {
      writeDurable(OPT_OUT_KEY, null);
      log.info("opted in: sending resumes");
    }
  }

  /**
   * Opt-out: everything the SDK stored in this browser goes, but the opt-out flag itself (which must be remembered):
   * the device id (localStorage and cookie), the session clock, the login digests, every page's queue and stamp.
   * Opting in later starts a new device.
   */
  private forget(): void {
    this.outbox?.clear();
    for (const k of [...localKeys(QUEUE_KEY_PREFIX), ...localKeys(ALIVE_KEY_PREFIX)]) writeLocal(k, null);
    writeDurable(DEVICE_KEY, null);
    writeLocal(SESSION_KEY, null);
    writeLocal(PERSON_KEY, null);
    this.transientId = null;
  }

  /** The next visitor on this browser is a new anonymous device: a new device id, a new session. */
  logout(): void {
    if (this.optedOut())
      this.transientId = null; // nothing stored to replace
    else this.newDevice();
  }

  flush(): Promise<void> {
    return this.outbox && !this.optedOut() ? this.outbox.flush() : Promise.resolve();
  }

  /** GET /v1/sdk/profile: only the account's publicProperties are ever returned. */
  async getProperty(key: unknown): Promise<Json | undefined> {
    if (typeof key !== "string") {
      log.warn("profile.get: the key must be a string");
      return undefined;
    }
    await this.ready;
    if (this.optedOut()) return undefined;
    await this.flush(); // so that a value just pushed is what comes back
    const fetch = browser().fetch;
    if (!fetch) return undefined;
    const url = `${this.endpoint}/v1/sdk/profile?key=${encodeURIComponent(this.key)}&deviceId=${encodeURIComponent(this.deviceId())}`;
    const res = await fetch(url, { method: "GET", credentials: "omit" });
    if (res.status !== 200) {
      log.warn(`profile.get: the server answered HTTP ${res.status}`);
      return undefined;
    }
    const body = (await res.json()) as { properties?: Record<string, Json> } | null;
    const properties = body?.properties;
    return properties && Object.hasOwn(properties, key) ? properties[key] : undefined;
  }
}
