/**
 * The browser SDK's entry point and public surface (`window.portrait`), shaped like the CleverTap web SDK's:
 * `onUserLogin.push`, `profile.push`, `event.push`, `privacy.push`, the increment/multi-value helpers.
 *
 * A page may load the script asynchronously after a stub `window.portrait = window.portrait || {event: [],
 * profile: [], onUserLogin: [], privacy: [], account: []}`: what was pushed on the stub's arrays is replayed
 * (privacy first, then logins, profile pushes and events, each in the order pushed). Calls made after the script
 * loaded but before `init` wait for it. No public method ever throws into the host page.
 */
import { browser, log } from "./browser.js";
import { Client, type InitOptions } from "./client.js";
import { isPlainObject, type Json } from "./sanitize.js";

export interface PortraitApi {
  init(options: { key: string; endpoint?: string }): void;
  account: { push(...options: Array<{ key: string; endpoint?: string }>): void };
  onUserLogin: { push(...logins: unknown[]): void };
  profile: { push(...profiles: unknown[]): void; get(key: string): Promise<Json | undefined> };
  event: { push(...nameThenProperties: unknown[]): void };
  privacy: { push(...settings: Array<{ optOut: boolean }>): void };
  handleIncrementValue(key: string, by: number): void;
  handleDecrementValue(key: string, by: number): void;
  addMultiValueForKey(key: string, value: string): void;
  addMultiValuesForKey(key: string, values: string[]): void;
  removeMultiValueForKey(key: string, value: string): void;
  removeMultiValuesForKey(key: string, values: string[]): void;
  removeValueForKey(key: string): void;
  /** This device's push token (a string or a PushSubscription), replacing the one before; null unregisters it. */
  setPushToken(token: string | object | null): void;
  getDeviceId(): string | undefined;
  logout(): void;
  /** Sends what is queued now; resolves when the queue is empty or the server could not be reached. */
  flush(): Promise<void>;
  /** The SDK version, and the mark that the real SDK (not a stub) is installed. */
  readonly version: string;
}

const VERSION = "1.0.0";

/** Wraps a public method: whatever goes wrong inside is logged, never thrown into the host page. */
function guarded<A extends unknown[], R>(name: string, fn: (...args: A) => R): (...args: A) => R | undefined {
  return (...args: A) => {
    try {
      return fn(...args);
    } catch (e) {
      log.error(`${name} failed:`, e);
      return undefined;
    }
  };
}

/** A `push(...items)` method: each item handled on its own, so one bad item does not stop the others. */
function pushEach(name: string, handle: (item: unknown) => void): (...items: unknown[]) => void {
  const one = guarded(name, handle);
  return (...items: unknown[]) => {
    for (const item of items) one(item);
  };
}

/** `event.push("Name", {props}, "Other", …)`: a name, optionally followed by its properties object. */
function pushEvents(client: Client, args: unknown[]): void {
  for (let i = 0; i < args.length; i++) {
    const name = args[i];
    const next = args[i + 1];
    if (typeof name !== "string") {
      log.warn("event.push: expected an event name (a string); one item skipped");
      continue;
    }
    if (isPlainObject(next)) i++;
    client.event(name, isPlainObject(next) ? next : undefined);
  }
}

export function createApi(client: Client): PortraitApi {
  // CleverTap-style helpers: one operation (SEMANTICS §4) on one key; the single-value forms send a one-item list.
  const operate = (method: string, op: string, single = false) =>
    guarded(method, (key: string, operand?: unknown) => client.operate(method, key, op, single ? [operand] : operand));
  return {
    init: guarded("init", (options) => client.init(options)),
    account: { push: pushEach("account.push", (o) => client.init(o as InitOptions)) },
    onUserLogin: { push: pushEach("onUserLogin.push", (i) => client.login(i)) },
    profile: {
      push: pushEach("profile.push", (i) => client.profile(i)),
      get: (key) => {
        try {
          return client.getProperty(key).catch((e) => {
            log.error("profile.get failed:", e);
            return undefined;
          });
        } catch (e) {
          log.error("profile.get failed:", e);
          return Promise.resolve(undefined);
        }
      },
    },
    event: { push: guarded("event.push", (...args) => pushEvents(client, args)) },
    privacy: { push: pushEach("privacy.push", (i) => client.privacy(i)) },
    handleIncrementValue: operate("handleIncrementValue", "$incr"),
    handleDecrementValue: operate("handleDecrementValue", "$decr"),
    addMultiValueForKey: operate("addMultiValueForKey", "$add", true),
    addMultiValuesForKey: operate("addMultiValuesForKey", "$add"),
    removeMultiValueForKey: operate("removeMultiValueForKey", "$remove", true),
    removeMultiValuesForKey: operate("removeMultiValuesForKey", "$remove"),
    removeValueForKey: guarded("removeValueForKey", (key: string) =>
      client.operate("removeValueForKey", key, "$delete", true),
    ),
    setPushToken: guarded("setPushToken", (token: string | object | null) => client.pushToken(token)),
    getDeviceId: guarded("getDeviceId", () => client.deviceId()),
    logout: guarded("logout", () => client.logout()),
    flush: () => client.flush().catch(() => undefined),
    version: VERSION,
  };
}

interface Stub {
  version?: unknown;
  account?: unknown;
  privacy?: unknown;
  onUserLogin?: unknown;
  profile?: unknown;
  event?: unknown;
}

function items(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

/** Installs `window.portrait`, replays a stub's queued calls, and initialises from `data-key` when given. */
export function install(): void {
  const w = browser();
  const existing = (isPlainObject(w.portrait) ? w.portrait : {}) as Stub;
  if (typeof existing.version === "string") return; // loaded twice: keep the first, it owns the queue
  const script = w.document?.currentScript;
  let origin: string | null = null;
  try {
    if (script?.src) origin = new URL(script.src).origin;
  } catch {
    // an unusual script URL: init must then name the endpoint
  }
  const client = new Client(origin);
  const api = createApi(client);
  w.portrait = api;
  api.privacy.push(...(items(existing.privacy) as Array<{ optOut: boolean }>));
  api.onUserLogin.push(...items(existing.onUserLogin));
  api.profile.push(...items(existing.profile));
  api.event.push(...items(existing.event));
  api.account.push(...(items(existing.account) as Array<{ key: string }>));
  // <script src=".../sdk/portrait.js" data-key="pk_…"> initialises itself, the endpoint being the script's origin.
  const key = script?.getAttribute?.("data-key");
  const endpoint = script?.getAttribute?.("data-endpoint");
  if (key && !client.initialised) api.init({ key, ...(endpoint ? { endpoint } : {}) });
}

try {
  install();
} catch (e) {
  log.error("could not start:", e);
}
