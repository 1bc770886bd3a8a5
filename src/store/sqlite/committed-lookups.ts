/**
 * Device owners and profile statuses as committed, remembered across the write transactions of SQLite's one writer
 * connection. They are the two look-ups a count-only event makes (engine/activity.ts; pipeline/resolve.ts
 * countOnlyTarget) and were ≈ 16% of the server's CPU under B1, one SQL statement each per event.
 *
 * Unlike ProfileKeyHints these are answers, not hints, so they are kept exact:
 * - A transaction that writes a device, or a profile's status columns, forgets that entry here at once and does not
 *   learn it again before it ends: what it reads of it meanwhile may be its own uncommitted row. A write it cannot
 *   name entry by entry (a profile's devices deleted together) forgets every device, and that transaction learns no
 *   device again. A rollback then needs nothing more: what it undoes is already forgotten. Nothing else writes these rows on this connection: one write transaction runs at a time
 *   (WriteQueue), and the import and segment bookkeeping that shares the connection writes other tables.
 * - Another connection's commit (a second process on the same file, a CLI) forgets everything: every write checks
 *   `PRAGMA data_version` right after BEGIN IMMEDIATE, from when no other connection can commit until it ends.
 */
import type { DeviceRow } from "../../engine/types.js";
import { dropOldest } from "../drop-oldest.js";
import type { ProfileStatus } from "../store.js";

/** A remembered profile status, with the pk it was read with. */
export interface KnownStatus extends ProfileStatus {
  pk: number;
}

/**
 * One kind of look-up for every account, at most `limit` entries in all: when full, the oldest eighth of the largest
 * account's entries go. Keyed by account, then by id, so that a look-up hashes the id as it came (a key joined from
 * account and id was a new string to flatten and hash on every look-up: ≈ 5% of B1's CPU).
 */
export class LookupTable<V> {
  private readonly accounts = new Map<string, Map<string, V>>();
  private entries = 0;

  constructor(private readonly limit: number) {}

  get size(): number {
    return this.entries;
  }

  get(accountId: string, id: string): V | undefined {
    return this.accounts.get(accountId)?.get(id);
  }

  set(accountId: string, id: string, value: V): void {
    let ids = this.accounts.get(accountId);
    if (ids === undefined) {
      ids = new Map();
      this.accounts.set(accountId, ids);
    }
    if (!ids.has(id)) {
      if (this.entries >= this.limit) this.evict();
      this.entries++;
    }
    ids.set(id, value);
  }

  delete(accountId: string, id: string): void {
    if (this.accounts.get(accountId)?.delete(id)) this.entries--;
  }

  clear(): void {
    this.accounts.clear();
    this.entries = 0;
  }

  private evict(): void {
    let largest: Map<string, V> | undefined;
    for (const ids of this.accounts.values()) if (largest === undefined || ids.size > largest.size) largest = ids;
    if (largest !== undefined) this.entries -= dropOldest(largest, Math.ceil(this.limit / 8));
  }
}

/** Both look-ups of one store. */
export class CommittedLookups {
  /** Device id → the device's row. */
  readonly devices: LookupTable<DeviceRow>;
  /** Profile id → the profile's pk and status; only profiles that exist. */
  readonly statuses: LookupTable<KnownStatus>;
  private dataVersion: number | undefined;

  /** 100k of each (B1 at full size has 100k devices) measured 25 MB of heap, B1's ids and all. */
  constructor(limit = 100_000) {
    this.devices = new LookupTable(limit);
    this.statuses = new LookupTable(limit);
  }

  /** At the start of each write transaction, with `PRAGMA data_version` read after its BEGIN IMMEDIATE. */
  begin(dataVersion: number): void {
    if (dataVersion !== this.dataVersion) this.forgetAll();
    this.dataVersion = dataVersion;
  }

  forgetAll(): void {
    this.devices.clear();
    this.statuses.clear();
  }
}
