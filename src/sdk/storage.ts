/**
 * What the SDK keeps in the browser: the device id (localStorage and a first-party cookie, so either one surviving
 * keeps the visitor's profile), the opt-out flag (both places too), the session clock, digests of the identity the
 * device last logged in with, and the offline queue (localStorage only). While the visitor has opted out, only the
 * opt-out flag is stored. Every access tolerates storage being absent or throwing (private modes, blocked cookies,
 * quota): the SDK then keeps the value in memory for the life of the page.
 */
import { browser } from "./browser.js";

export const DEVICE_KEY = "portrait_device";
export const OPT_OUT_KEY = "portrait_optout";
export const SESSION_KEY = "portrait_session";
export const PERSON_KEY = "portrait_person";
export const QUEUE_KEY_PREFIX = "portrait_queue_";
export const ALIVE_KEY_PREFIX = "portrait_alive_";
const COOKIE_MAX_AGE_S = 365 * 24 * 3600;

const memory = new Map<string, string>();
/**
 * Names whose last write storage refused (quota, private mode): memory holds their value, and whatever storage still
 * has under the name is older, so reads skip it.
 */
const memoryOnly = new Set<string>();

export function readLocal(name: string): string | null {
  if (memoryOnly.has(name)) return memory.get(name) ?? null;
  try {
    const ls = browser().localStorage;
    // What storage says, absence included: another tab may have removed the entry (a logout, an opt-out), and this
    // page's copy in memory is then stale (it kept the old session going: no App Launched for the new device).
    if (ls) return ls.getItem(name);
  } catch {
    // storage blocked: fall through to memory
  }
  return memory.get(name) ?? null;
}

/** Writes to localStorage (and memory); false when storage refused it (e.g. quota), the value then lives in memory. */
export function writeLocal(name: string, value: string | null): boolean {
  if (value === null) memory.delete(name);
  else memory.set(name, value);
  try {
    const ls = browser().localStorage;
    if (ls) {
      if (value === null) ls.removeItem(name);
      else ls.setItem(name, value);
      memoryOnly.delete(name);
      return true;
    }
  } catch {
    // refused: the value lives in memory (below)
  }
  memoryOnly.add(name);
  return false;
}

export function readCookie(name: string): string | null {
  try {
    const all = browser().document?.cookie ?? "";
    for (const part of all.split(";")) {
      const eq = part.indexOf("=");
      if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
    }
  } catch {
    // cookies blocked
  }
  return null;
}

/** A first-party cookie for this host: one year, SameSite=Lax, Secure on https; null deletes it. */
export function writeCookie(name: string, value: string | null): void {
  try {
    const w = browser();
    if (!w.document) return;
    const secure = w.location?.protocol === "https:" ? "; Secure" : "";
    const body = value === null ? "; max-age=0" : `; max-age=${COOKIE_MAX_AGE_S}`;
    w.document.cookie = `${name}=${encodeURIComponent(value ?? "")}${body}; path=/; SameSite=Lax${secure}`;
  } catch {
    // cookies blocked
  }
}

/** A value kept in both places; reading prefers localStorage and heals whichever copy went missing. */
export function readDurable(name: string): string | null {
  const value = readLocal(name) ?? readCookie(name);
  if (value !== null) writeDurable(name, value);
  return value;
}

export function writeDurable(name: string, value: string | null): void {
  writeLocal(name, value);
  writeCookie(name, value);
}

/** A random (v4) UUID; crypto.randomUUID exists only in secure contexts, getRandomValues everywhere. */
export function uuid(): string {
  const c = browser().crypto;
  if (typeof c?.randomUUID === "function") return c.randomUUID();
  const b = new Uint8Array(16);
  if (typeof c?.getRandomValues === "function") c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The localStorage keys that start with `prefix` (none when storage is blocked). */
export function localKeys(prefix: string): string[] {
  const out: string[] = [];
  try {
    const ls = browser().localStorage;
    if (!ls) return out;
    for (let i = 0; i < ls.length; i++) {
      const k = ls.key(i);
      if (k?.startsWith(prefix)) out.push(k);
    }
  } catch {
    // storage blocked
  }
  return out;
}

export function readJson<T>(name: string): T | null {
  const text = readLocal(name);
  if (text === null) return null;
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}
