/**
 * The offline queue and its sender. Records wait in localStorage (bounded) until the server answers 200 for them,
 * so a closed tab, a reload or an outage loses nothing; every record carries the UUID `id` it got when queued, so
 * sending one twice (a retry after a lost response, a beacon at page hide, a queue taken over by another tab) is
 * harmless: the server stores it once (SEMANTICS §11 Idempotency).
 *
 * Each page keeps a queue of its own (`portrait_queue_<key>~<page>`): localStorage is not atomic across tabs, and
 * two tabs reading, changing and writing back one shared queue overwrote each other's records. A page stamps that
 * it is alive every 20 s and removes the stamp when it goes away; the queue of a page gone (no stamp, or one older
 * than 3 minutes, beyond what a background tab's throttled timers allow) is taken over by the next page that sends.
 * When storage refuses the queue (blocked, private mode, full), this page's records wait in memory instead.
 *
 * The page's queue lives in memory and is written to storage at most every 100 ms, and at once when the page is
 * hidden or goes away and before each send: writing the whole queue (up to 1000 records) on every call made a burst
 * of calls cost quadratic time, and froze the page for a minute at 10,000 calls.
 *
 * When: 1 s after a record is queued, on the `online` event, after a failure with exponential back-off
 * (network errors, 408, 429, 5xx), when the page is hidden (a keepalive fetch, whose answer is still read if the
 * page lives on) and when it goes away (navigator.sendBeacon). A 4xx for the whole batch is not
 * retried (the batch would fail again); a 200 with `unprocessed` entries logs each refusal and drops the record.
 */
import { browser, type FetchResponse, log } from "./browser.js";
import type { Json, JsonObject } from "./sanitize.js";
import { ALIVE_KEY_PREFIX, localKeys, QUEUE_KEY_PREFIX, readJson, readLocal, uuid, writeLocal } from "./storage.js";

export interface WireRecord {
  type: "login" | "profile" | "event" | "token";
  id: string;
  deviceId: string;
  /** Epoch seconds, to the millisecond. */
  ts: number;
  name?: string;
  properties?: JsonObject;
  channel?: "push";
  token?: string | null;
  context?: Record<string, Json>;
}

export const MAX_QUEUE = 1000;
const BATCH_RECORDS = 100;
/** Below the 64 KB that keepalive fetches and beacons may carry in flight. */
const BEACON_BYTES = 60_000;
const FLUSH_DELAY_MS = 1000;
const BACKOFF_START_MS = 1000;
const BACKOFF_MAX_MS = 120_000;
/** After a beacon, its records are not sent again by this page for a while (they stay queued until a 200). */
const BEACON_GRACE_MS = 60_000;
const ALIVE_EVERY_MS = 20_000;
/** A page whose stamp is older is gone: hidden tabs' timers run at least once a minute. */
const GONE_AFTER_MS = 180_000;
/** How long a queued record may wait in memory only: what a crash (not a closed tab, which writes it) could lose. */
const PERSIST_DELAY_MS = 100;

function byteLength(s: string): number {
  return new TextEncoder().encode(s).length;
}

interface Unprocessed {
  index?: number;
  code?: string;
  error?: string;
  field?: string;
}

export class Outbox {
  /** Every page's queue key for this public key starts with it (and an older SDK's single queue is exactly it). */
  private readonly queuePrefix: string;
  private readonly pageId = uuid();
  private readonly storageKey: string;
  private warnedMemory = false;
  private aliveTimer: number | null = null;
  private readonly batchUrl: string;
  private sending: Promise<void> | null = null;
  private timer: number | null = null;
  private timerAt = 0;
  private failures = 0;
  private batchSize = BATCH_RECORDS;
  private readonly beaconed = new Map<string, number>();
  /** Ids of the batch being sent by fetch right now (a beacon at page hide leaves them out). */
  private inflight: ReadonlySet<string> = new Set();
  private warnedFull = false;
  /** This page's queue; storage holds what it was when last persisted. */
  private list: WireRecord[];
  /** The list changed since it was last written to storage. */
  private dirty = false;
  private persistTimer: number | null = null;
  /** Set by pagehide: the page may come back from the back-forward cache, its stored queue taken over meanwhile. */
  private left = false;

  /** `blocked`: the visitor opted out (perhaps in another tab): nothing is sent or stored, the queue is dropped. */
  constructor(
    endpoint: string,
    key: string,
    private readonly blocked: () => boolean,
  ) {
    this.queuePrefix = QUEUE_KEY_PREFIX + key;
    this.storageKey = `${this.queuePrefix}~${this.pageId}`;
    this.batchUrl = `${endpoint}/v1/sdk/batch?key=${encodeURIComponent(key)}`;
    this.list = this.load();
    this.stayAlive();
    if (!blocked()) this.adoptGone();
  }

  private load(): WireRecord[] {
    const list = readJson<WireRecord[]>(this.storageKey);
    return Array.isArray(list) ? list : [];
  }

  /** This page's queue, with what it took over from pages gone. */
  records(): WireRecord[] {
    return this.list;
  }

  /** Writes the queue to storage now, if it changed; the one place that serialises the whole queue. */
  persist(): void {
    if (this.persistTimer !== null) browser().clearTimeout(this.persistTimer);
    this.persistTimer = null;
    if (!this.dirty) return;
    this.dirty = false;
    if (this.blocked()) return;
    this.list = this.bounded(this.list);
    // Storage that refuses the queue (blocked, full) leaves it in memory for the life of the page.
    if (writeLocal(this.storageKey, this.list.length ? JSON.stringify(this.list) : null) || this.warnedMemory) return;
    this.warnedMemory = true;
    log.warn("the browser refuses to store the offline queue; records wait in memory while this page is open");
  }

  /** The queue changed: written within PERSIST_DELAY_MS, so that a burst of calls costs one write. */
  private changed(): void {
    this.dirty = true;
    if (this.left)
      this.persist(); // no timer may run after pagehide
    else this.persistTimer ??= browser().setTimeout(() => this.persist(), PERSIST_DELAY_MS);
  }

  /**
   * Stamps this page alive now and every 20 s; `pageshow` after the back-forward cache calls it again. While opted
   * out the page keeps the timer (to stamp again after an opt-in) but stores nothing.
   */
  stayAlive(): void {
    const w = browser();
    writeLocal(ALIVE_KEY_PREFIX + this.pageId, this.blocked() ? null : String(Date.now()));
    if (this.aliveTimer !== null) w.clearTimeout(this.aliveTimer);
    this.aliveTimer = w.setTimeout(() => {
      this.aliveTimer = null;
      this.stayAlive();
    }, ALIVE_EVERY_MS);
  }

  /** The page goes away: its queue is written and its stamp goes, so that the next page takes the queue over. */
  leave(): void {
    this.persist();
    this.left = true;
    writeLocal(ALIVE_KEY_PREFIX + this.pageId, null);
  }

  /** `pageshow`: back from the back-forward cache, another page may have taken the stored queue over meanwhile. */
  back(): void {
    if (this.left) this.list = this.load();
    this.left = false;
    this.stayAlive();
  }

  /** Moves the queues of pages gone (and an older SDK's shared queue) into this page's own. */
  private adoptGone(): void {
    const now = Date.now();
    let taken: WireRecord[] = [];
    const from: string[] = [];
    for (const k of localKeys(this.queuePrefix)) {
      if (k === this.storageKey) continue;
      if (k !== this.queuePrefix) {
        if (k[this.queuePrefix.length] !== "~") continue; // another public key that starts like this one
        const page = k.slice(this.queuePrefix.length + 1);
        const alive = Number(readLocal(ALIVE_KEY_PREFIX + page));
        if (Number.isFinite(alive) && alive > 0 && now - alive < GONE_AFTER_MS) continue;
        writeLocal(ALIVE_KEY_PREFIX + page, null);
      }
      const list = readJson<WireRecord[]>(k);
      if (Array.isArray(list)) taken = taken.concat(list);
      from.push(k);
    }
    if (from.length === 0) return;
    const have = new Set(this.list.map((r) => r.id));
    const merged = this.list.concat(taken.filter((r) => r && typeof r.id === "string" && !have.has(r.id)));
    merged.sort((a, b) => a.ts - b.ts);
    this.list = merged;
    // Written before the other pages' queues are removed: a crash in between sends records twice, never loses them.
    this.dirty = true;
    this.persist();
    for (const k of from) writeLocal(k, null);
  }

  private bounded(list: WireRecord[]): WireRecord[] {
    if (list.length <= MAX_QUEUE) return list;
    if (!this.warnedFull) log.warn(`the offline queue holds at most ${MAX_QUEUE} records; the oldest are dropped`);
    this.warnedFull = true;
    return list.slice(list.length - MAX_QUEUE);
  }

  /** O(1): the bound (MAX_QUEUE) is applied when the queue is written, once per burst. */
  add(record: WireRecord): void {
    this.list.push(record);
    this.changed();
    this.schedule(FLUSH_DELAY_MS);
  }

  /** Opt-out: nothing queued by any page of this key is sent. */
  clear(): void {
    this.list = [];
    this.dirty = false;
    if (this.persistTimer !== null) browser().clearTimeout(this.persistTimer);
    this.persistTimer = null;
    for (const k of localKeys(this.queuePrefix)) writeLocal(k, null);
    writeLocal(this.storageKey, null);
  }

  private remove(ids: ReadonlySet<string>): void {
    this.list = this.list.filter((r) => !ids.has(r.id));
    for (const id of ids) this.beaconed.delete(id);
    // At once: a reload must not find records the server already has (harmless, but sent again).
    this.dirty = true;
    this.persist();
  }

  private schedule(ms: number): void {
    const w = browser();
    const at = Date.now() + ms;
    if (this.timer !== null) {
      if (this.timerAt <= at) return;
      w.clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = w.setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, ms);
  }

  /** Connectivity is back: forget the back-off and send now. */
  online(): void {
    this.failures = 0;
    void this.flush();
  }

  /** Sends everything queued, batch after batch; resolves when the queue is empty or a send failed. */
  flush(): Promise<void> {
    this.sending ??= this.drain().finally(() => {
      this.sending = null;
    });
    return this.sending;
  }

  private sendable(now: number): WireRecord[] {
    return this.records().filter((r) => (this.beaconed.get(r.id) ?? 0) < now && !this.inflight.has(r.id));
  }

  private async drain(): Promise<void> {
    const w = browser();
    if (this.blocked()) return this.clear(); // opted out in another tab since these were queued
    this.persist();
    this.adoptGone();
    for (;;) {
      const batch = this.sendable(Date.now()).slice(0, this.batchSize);
      if (batch.length === 0) return;
      if (!w.fetch || w.navigator?.onLine === false) return this.retryLater();
      // sentAt: this clock now, so the server can correct the records' ts for this clock's skew (fresh per attempt).
      const body = JSON.stringify({ records: batch, sentAt: Date.now() / 1000 });
      let res: FetchResponse;
      this.inflight = new Set(batch.map((r) => r.id));
      try {
        res = await w.fetch(this.batchUrl, {
          method: "POST",
          body,
          // text/plain keeps this a simple CORS request (no preflight); the server parses it as JSON.
          headers: { "content-type": "text/plain" },
          credentials: "omit",
          keepalive: byteLength(body) < BEACON_BYTES,
        });
      } catch {
        return this.retryLater(); // network error, refused connection, CORS refusal
      } finally {
        this.inflight = new Set();
      }
      const status = res.status;
      if (status === 200) {
        const answer = (await res.json().catch(() => null)) as { unprocessed?: Unprocessed[] } | null;
        for (const u of answer?.unprocessed ?? []) {
          const r = u.index === undefined ? undefined : batch[u.index];
          const what = r ? (r.type === "event" ? `event "${r.name}"` : `${r.type} record`) : "a record";
          log.warn(
            `the server refused ${what}: ${u.code ?? "ERROR"} ${u.error ?? ""}${u.field ? ` (${u.field})` : ""}`,
          );
        }
        this.failures = 0;
        this.remove(new Set(batch.map((r) => r.id)));
        continue;
      }
      if (status === 413 && batch.length > 1) {
        this.batchSize = Math.max(1, Math.floor(batch.length / 2));
        continue;
      }
      if (status === 408 || status === 429 || status >= 500) return this.retryLater();
      const answer = (await res.json().catch(() => null)) as { error?: { code?: string; message?: string } } | null;
      log.error(
        `the server refused a batch of ${batch.length} records (HTTP ${status} ${answer?.error?.code ?? ""}: ${answer?.error?.message ?? ""}); they are dropped`,
      );
      this.remove(new Set(batch.map((r) => r.id)));
    }
  }

  private retryLater(): void {
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** this.failures);
    this.failures = Math.min(this.failures + 1, 20);
    // Jitter, so that a recovering server is not hit by every browser at the same instant.
    this.schedule(Math.round(delay * (0.75 + Math.random() * 0.5)));
  }

  /**
   * Page hide: hand what is queued to the browser with sendBeacon, which outlives the page. The records stay queued
   * until a 200 is seen (a beacon's fate is unknown), so the next page load sends them again if the beacon was
   * lost; the server's idempotency makes the repeat harmless.
   */
  beacon(): void {
    const w = browser();
    this.persist();
    if (this.blocked() || !w.navigator?.sendBeacon || w.navigator.onLine === false) return;
    const now = Date.now();
    const batch: WireRecord[] = [];
    let bytes = 50; // the envelope: {"records":[…],"sentAt":…}
    for (const r of this.sendable(now)) {
      const size = byteLength(JSON.stringify(r)) + 1;
      if (bytes + size > BEACON_BYTES || batch.length >= BATCH_RECORDS) break;
      batch.push(r);
      bytes += size;
    }
    if (batch.length === 0) return;
    try {
      if (w.navigator.sendBeacon(this.batchUrl, JSON.stringify({ records: batch, sentAt: now / 1000 }))) {
        for (const r of batch) this.beaconed.set(r.id, now + BEACON_GRACE_MS);
        this.schedule(BEACON_GRACE_MS);
      }
    } catch {
      // a beacon refused synchronously changes nothing: the records are still queued
    }
  }
}
