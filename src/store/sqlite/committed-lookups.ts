/**
 * Device owners and profile statuses as committed, remembered across the write transactions of SQLite's one writer
 * connection. They are the two look-ups a count-only event makes (engine/activity.ts; pipeline/resolve.ts
 * countOnlyTarget) and were ≈ 16% of the server's CPU under B1, one SQL statement each per event.
 *
 * Unlike ProfileKeyHints these are answers, not hints, so they are kept exact:
 * - A transaction that writes a device, or a profile's status columns, forgets that entry here at once and does not
 *   learn it again before it ends: what it reads of it meanwhile may be its own uncommitted row. A write it cannot
 *   name entry by entry (a profile's devices deleted together) forgets every device, and so does a rollback of a
 *   transaction that did so. Nothing else writes these rows on this connection: one write transaction runs at a time
 *   (WriteQueue), and the import and segment bookkeeping that shares the connection writes other tables.
 * - Another connection's commit (a second process on the same file, a CLI) forgets everything: every write checks
 *   `PRAGMA data_version` right after BEGIN IMMEDIATE, from when no other connection can commit until it ends.
 */
import type { DeviceRow } from "../../engine/types.js";
import type { ProfileStatus } from "../store.js";

/** A remembered profile status, with the pk it was read with. */
export interface KnownStatus extends ProfileStatus {
  pk: number;
}

/** A Map that keeps at most `limit` entries: when full, the oldest eighth goes. */
export class BoundedMap<V> {
  private readonly entries = new Map<string, V>();

  constructor(private readonly limit: number) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string): V | undefined {
    return this.entries.get(key);
  }

  set(key: string, value: V): void {
    if (this.entries.size >= this.limit && !this.entries.has(key)) {
      let evict = Math.ceil(this.limit / 8);
      for (const old of this.entries.keys()) {
        this.entries.delete(old);
        if (--evict === 0) break;
      }
    }
    this.entries.set(key, value);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }
}

/** Both look-ups of one store, keyed by account and id. */
export class CommittedLookups {
  /** `${accountId}\0${deviceId}` → the device's row. */
  readonly devices: BoundedMap<DeviceRow>;
  /** `${accountId}\0${profileId}` → the profile's pk and status; only profiles that exist. */
  readonly statuses: BoundedMap<KnownStatus>;
  private dataVersion: number | undefined;

  /** At ≈ 200 bytes an entry, 100k of each (B1's full size has 100k devices) hold ≈ 40 MB at most. */
  constructor(limit = 100_000) {
    this.devices = new BoundedMap(limit);
    this.statuses = new BoundedMap(limit);
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

export function lookupKey(accountId: string, id: string): string {
  return `${accountId}\u0000${id}`;
}
