/**
 * The few browser globals the SDK touches, typed here so the SDK type-checks inside the Node project (no DOM lib
 * there) and so every one of them is visibly optional: storage can be disabled, old browsers lack sendBeacon or
 * crypto.randomUUID, and the SDK must keep working (or quietly do less) in all of those cases.
 */

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
  readonly length: number;
  key(index: number): string | null;
}

export interface FetchResponse {
  status: number;
  json(): Promise<unknown>;
}

export interface FetchInit {
  method: "GET" | "POST";
  body?: string;
  headers?: Record<string, string>;
  credentials: "omit";
  keepalive?: boolean;
}

interface EventTarget {
  addEventListener(type: string, listener: () => void): void;
}

export interface BrowserWindow extends EventTarget {
  localStorage?: StorageLike;
  document?: EventTarget & {
    cookie: string;
    referrer: string;
    visibilityState?: string;
    currentScript?: { src?: string; getAttribute?(name: string): string | null } | null;
  };
  location?: { href: string; search: string; protocol: string };
  navigator?: { language?: string; onLine?: boolean; sendBeacon?(url: string, data: string): boolean };
  screen?: { width: number; height: number };
  crypto?: { randomUUID?(): string; getRandomValues?(array: Uint8Array): Uint8Array };
  fetch?(url: string, init: FetchInit): Promise<FetchResponse>;
  setTimeout(callback: () => void, ms: number): number;
  clearTimeout(handle: number): void;
  portrait?: unknown;
}

/** The page's window; a function so tests in Node can import the SDK's pure parts without a window. */
export function browser(): BrowserWindow {
  return globalThis as unknown as BrowserWindow;
}

const PREFIX = "[portrait]";

/** Console output the SDK promises (warnings about dropped input, opt-out notices); never throws. */
export const log = {
  warn(...args: unknown[]): void {
    if (typeof console !== "undefined") console.warn(PREFIX, ...args);
  },
  info(...args: unknown[]): void {
    if (typeof console !== "undefined") console.info(PREFIX, ...args);
  },
  error(...args: unknown[]): void {
    if (typeof console !== "undefined") console.error(PREFIX, ...args);
  },
};
