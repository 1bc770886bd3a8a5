/**
 * Which profile each device belonged to, as committed rows said, remembered across transactions by one process.
 *
 * PostgreSQL is written by several processes and nothing tells this one what the others committed, so a remembered
 * device is a claim to check, not an answer: each entry keeps its owner's handles revision (`profiles.handles_rev`,
 * schema version 9), which a trigger moves in the same transaction as any change or removal of one of that profile's
 * device rows. Prefetch reads the owner's status anyway for count-only events; when the revision it reads is the one
 * remembered, the device row is still the one remembered, and its own probe is saved (about half of that statement's
 * work). Any other answer, including a missing owner, sends the device back to its probe.
 *
 * Only entries read in one statement together with their owner's revision are learnt, and only once their transaction
 * has committed, never for a device that the transaction itself wrote: a rolled-back change must not be remembered.
 */
import type { DeviceRow } from "../../engine/types.js";
import { dropOldest } from "../drop-oldest.js";

export interface RememberedDevice {
  device: DeviceRow;
  /** The owner's handles revision when the device row was read with it. */
  rev: number;
}

/** How many devices a process remembers by default: ≈ 25 MB of heap at B1's id lengths. */
export const DEVICE_OWNERS_LIMIT = 100_000;

export class DeviceOwners {
  private readonly accounts = new Map<string, Map<string, RememberedDevice>>();
  private size = 0;
  /** Look-ups answered (a remembered device whose revision still held): tests read it to know the path ran. */
  hits = 0;

  constructor(private readonly limit = DEVICE_OWNERS_LIMIT) {}

  get(accountId: string, deviceId: string): RememberedDevice | undefined {
    return this.accounts.get(accountId)?.get(deviceId);
  }

  set(accountId: string, entry: RememberedDevice): void {
    if (this.limit <= 0) return;
    // Learnt again, it counts as the newest.
    this.delete(accountId, entry.device.deviceId);
    // Before the account's map is taken: making room may empty it and drop it.
    if (this.size >= this.limit) this.dropOldest(Math.ceil(this.limit / 8));
    let devices = this.accounts.get(accountId);
    if (devices === undefined) {
      devices = new Map();
      this.accounts.set(accountId, devices);
    }
    devices.set(entry.device.deviceId, entry);
    this.size++;
  }

  delete(accountId: string, deviceId: string): void {
    if (this.accounts.get(accountId)?.delete(deviceId)) this.size--;
  }

  /** Drops `n` entries, oldest learnt first within each account, accounts in the order they were first seen. */
  private dropOldest(n: number): void {
    for (const [accountId, devices] of this.accounts) {
      const dropped = dropOldest(devices, n);
      this.size -= dropped;
      n -= dropped;
      if (devices.size === 0) this.accounts.delete(accountId);
      if (n <= 0) return;
    }
  }
}
