/**
 * What applying one record needs besides the record: the transaction's working set, time and ids, and the
 * bookkeeping that is written once the record succeeds (system events, journals).
 */
import { countEvent } from "../engine/activity.js";
import type { IdentityKey, NewEvent } from "../engine/types.js";
import type { IdSource } from "./clock.js";
import type { UnitOfWork } from "./unit-of-work.js";

/** Where an event came from: the device and platform it stores. */
export interface EventOrigin {
  deviceId: string | null;
  platform: string | null;
}

const NO_ORIGIN: EventOrigin = { deviceId: null, platform: null };

export class RecordScope {
  /** Events Portrait itself writes (Identity Set, Identity Error, Profile Merged…), inserted with the record. */
  readonly systemEvents: NewEvent[] = [];
  /** Profiles the record changed: each one's undoable merge journals the record (SEMANTICS §7). */
  readonly touched = new Set<string>();
  /** A login that moved its device: the profile it moved from, journalled with the record (LoginRecord.deviceFrom). */
  deviceFrom: string | null = null;
  /** The id given to an event the record stored without a client id, journalled with it (EventRecord.storedId). */
  storedEventId: string | null = null;
  /**
   * The device and platform of the record being applied: the Identity Set and Identity Error events it causes store
   * them like the record's own events would (SEMANTICS §11 "Every event stores its deviceId and platform").
   */
  origin: EventOrigin = NO_ORIGIN;

  constructor(
    readonly uow: UnitOfWork,
    readonly ids: IdSource,
    readonly now: number,
    /** True while demerge replays a journal: the record was already checked for idempotency. */
    readonly replay = false,
    /**
     * While demerge replays: those of the two people it restored who were identified before the merge. A replayed
     * login makes neither an orphan (it reached them as part of an identified person); see applyLogin.
     */
    readonly restored: ReadonlySet<string> = new Set(),
  ) {}

  systemEvent(
    profileId: string,
    name: string,
    ts: number,
    properties: NewEvent["properties"],
    origin: EventOrigin = NO_ORIGIN,
  ): void {
    this.systemEvents.push({
      profileId,
      id: this.ids.eventId(),
      name,
      ts,
      properties,
      deviceId: origin.deviceId,
      platform: origin.platform,
    });
  }

  /**
   * Writes the system events noted so far, each counted on its profile: at the end of the record, and before a merge
   * it causes, so that the source's events (its Identity Set, say) move to the target with the rest and an undo
   * brings them back.
   */
  async writeSystemEvents(): Promise<void> {
    if (this.systemEvents.length === 0) return;
    const events = this.systemEvents.splice(0);
    await this.uow.tx.insertEvents(this.uow.accountId, events);
    for (const e of events) {
      const state = await this.uow.load(e.profileId);
      if (state) this.uow.put(countEvent(state, e.name, 0));
    }
  }

  identitySet(profileId: string, key: IdentityKey, value: string, ts: number): void {
    this.systemEvent(profileId, "Identity Set", ts, { Key: key, Value: value }, this.origin);
  }

  identityError(profileId: string, key: string, code: string, ts: number): void {
    this.systemEvent(profileId, "Identity Error", ts, { Key: key, Code: code }, this.origin);
  }
}
