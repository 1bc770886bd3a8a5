/**
 * One transaction's working set: profile states loaded (and locked) once, changed in memory record by record,
 * written back once at the end. A record that fails is rolled back both in the store (savepoint) and here.
 *
 * Count-only events (engine/activity.ts) for profiles not loaded here are folded per profile instead, and added in
 * the store without reading the profile (StoreTx.addActivity). A profile is either loaded or has a pending fold,
 * never both: loading it folds the pending events into its state.
 */
import { type ActivityDelta, applyActivityDelta, foldActivity, restampHolds } from "../engine/activity.js";
import { PortraitError } from "../engine/errors.js";
import type { Account, ProfileState, ValueType } from "../engine/types.js";
import type { StoreTx, TypeScope } from "../store/store.js";
import type { Clock } from "./clock.js";
import { MAX_EVENT_NAMES, MAX_EVENT_PATHS, MAX_PROFILE_PATHS, type TypeCache } from "./type-cache.js";

export class UnitOfWork {
  private readonly states = new Map<string, ProfileState>();
  private readonly dirty = new Set<string>();
  /** Per-record undo log: the value each touched entry had before the record began. */
  private undo: Map<string, ProfileState | undefined> | null = null;
  /** Count-only events of profiles not loaded here, folded per profile. */
  private readonly activity = new Map<string, ActivityDelta>();
  /** Per-record undo log of `activity`. */
  private undoActivity: Map<string, ActivityDelta | undefined> | null = null;
  private pendingTypes = new Map<string, ValueType>();
  private undoTypes: string[] | null = null;
  /** Paths registered in this transaction that were new, per scope (the registry's counts before commit). */
  private readonly newPaths = new Map<TypeScope, number>();
  /** Per-record undo log of `newPaths`: the scopes whose count the record raised. */
  private undoNewPaths: TypeScope[] | null = null;

  constructor(
    readonly tx: StoreTx,
    readonly account: Account,
    readonly types: TypeCache,
    readonly clock: Clock,
  ) {}

  get accountId(): string {
    return this.account.id;
  }

  /** Loads and locks a profile once per transaction. */
  async load(profileId: string): Promise<ProfileState | null> {
    const cached = this.states.get(profileId);
    if (cached) return cached;
    let state = await this.tx.lockProfile(this.account.id, profileId);
    if (!state) return null;
    const pending = this.activity.get(profileId);
    if (pending) {
      if (!restampHolds(state, pending)) throw zoneChanged(profileId);
      this.remember(profileId);
      this.rememberActivity(profileId);
      this.activity.delete(profileId);
      state = applyActivityDelta(state, pending);
      this.dirty.add(profileId);
    }
    this.states.set(profileId, state);
    return state;
  }

  /** True when this transaction has loaded the profile: its changes then go through its state. */
  isLoaded(profileId: string): boolean {
    return this.states.has(profileId);
  }

  /** A count-only event (engine/activity.ts) of a profile that is not loaded here, restamping `timezone` if given. */
  countActivity(profileId: string, ts: number, timezone: string | null = null): void {
    if (this.states.has(profileId)) throw new Error(`countActivity: profile ${profileId} is loaded; change its state.`);
    const restamp = this.activity.get(profileId)?.timezone;
    if (timezone !== null && restamp !== undefined && restamp.value !== timezone) throw zoneChanged(profileId);
    this.rememberActivity(profileId);
    this.activity.set(profileId, foldActivity(this.activity.get(profileId), ts, timezone));
  }

  /** Follows merge tombstones to the live profile (SEMANTICS §7: a tombstone's id acts on its target). */
  async loadLive(profileId: string): Promise<ProfileState | null> {
    let state = await this.load(profileId);
    for (let hops = 0; state?.mergedInto && hops < 64; hops++) state = await this.load(state.mergedInto);
    return state?.mergedInto ? null : state;
  }

  async create(state: ProfileState): Promise<void> {
    await this.tx.insertProfile(this.account.id, state);
    this.remember(state.id);
    this.states.set(state.id, state);
  }

  put(state: ProfileState): void {
    this.remember(state.id);
    this.states.set(state.id, state);
    this.dirty.add(state.id);
  }

  /** Forgets a profile that the record deleted from the store. */
  drop(profileId: string): void {
    this.remember(profileId);
    this.rememberActivity(profileId);
    this.activity.delete(profileId);
    this.states.delete(profileId);
    this.dirty.delete(profileId);
  }

  typeOf(scope: TypeScope, path: string): ValueType | undefined {
    // Registrations within a transaction are rare: skip building their key when there are none.
    const pending = this.pendingTypes.size === 0 ? undefined : this.pendingTypes.get(`${scope}\u0000${path}`);
    return pending ?? this.types.get(this.account.id, scope, path);
  }

  /**
   * Registers a type (first writer wins across processes; a loser sees the winner's type). A client's new path
   * (`field` given: the record's field it came from) is refused with TOO_MANY_PROPERTIES when the account has
   * registered as many as it may (type-cache.ts); Portrait's own properties (Timezone, is_test_user) pass no field and
   * are always registered. The counts are this process's registry plus this transaction's registrations: another
   * process's registrations are seen once this one reloads its registry (at its start, or when a type changes), so
   * several processes writing new paths at once can overshoot a limit, by what each registers before it reloads.
   */
  async register(scope: TypeScope, path: string, type: ValueType, change = false, field?: string): Promise<ValueType> {
    const k = `${scope}\u0000${path}`;
    const isNew = !change && this.typeOf(scope, path) === undefined;
    if (isNew && field !== undefined) this.checkRoom(scope, path, field);
    if (change) await this.tx.changeType(this.account.id, scope, path, type);
    const winner = change ? type : await this.tx.registerType(this.account.id, scope, path, type);
    this.undoTypes?.push(k);
    this.pendingTypes.set(k, winner);
    if (isNew) {
      this.newPaths.set(scope, (this.newPaths.get(scope) ?? 0) + 1);
      this.undoNewPaths?.push(scope);
    }
    return winner;
  }

  private registered(scope: TypeScope): number {
    return this.types.count(this.account.id, scope) + (this.newPaths.get(scope) ?? 0);
  }

  private checkRoom(scope: TypeScope, path: string, field: string): void {
    const count = this.registered(scope);
    if (scope === "profile") {
      if (count >= MAX_PROFILE_PATHS) {
        throw new PortraitError(
          "TOO_MANY_PROPERTIES",
          `the account has ${MAX_PROFILE_PATHS} profile properties, the most it may have: ${path} would be one more ` +
            "(remove the property from the record, or use a key the account has)",
          field,
        );
      }
      return;
    }
    const name = scope.slice("event:".length);
    if (count >= MAX_EVENT_PATHS) {
      throw new PortraitError(
        "TOO_MANY_PROPERTIES",
        `event ${name} has ${MAX_EVENT_PATHS} properties in this account, the most an event name may have: ${path} ` +
          "would be one more (remove the property from the record, or use a key the event has)",
        field,
      );
    }
    if (count > 0) return;
    let names = this.types.eventNames(this.account.id);
    for (const [s, n] of this.newPaths) {
      if (s !== "profile" && n > 0 && this.types.count(this.account.id, s) === 0) names++;
    }
    if (names >= MAX_EVENT_NAMES) {
      throw new PortraitError(
        "TOO_MANY_PROPERTIES",
        `the account has ${MAX_EVENT_NAMES} event names with properties, the most it may have: event ${name} cannot ` +
          "register its property " +
          `${path} (send it without properties, or use an event name the account has)`,
        field,
      );
    }
  }

  /** Runs one record atomically: on failure the store and this working set are as before it. */
  async atomically<T>(fn: () => Promise<T>): Promise<T> {
    this.undo = new Map();
    this.undoActivity = new Map();
    this.undoTypes = [];
    this.undoNewPaths = [];
    try {
      return await this.tx.savepoint(fn);
    } catch (e) {
      for (const [id, prev] of this.undo) {
        if (prev) this.states.set(id, prev);
        else this.states.delete(id);
      }
      for (const [id, prev] of this.undoActivity) {
        if (prev) this.activity.set(id, prev);
        else this.activity.delete(id);
      }
      for (const k of this.undoTypes) this.pendingTypes.delete(k);
      for (const scope of this.undoNewPaths) this.newPaths.set(scope, (this.newPaths.get(scope) ?? 1) - 1);
      throw e;
    } finally {
      this.undo = null;
      this.undoActivity = null;
      this.undoTypes = null;
      this.undoNewPaths = null;
    }
  }

  private remember(id: string): void {
    if (this.undo && !this.undo.has(id)) this.undo.set(id, this.states.get(id));
  }

  private rememberActivity(id: string): void {
    if (this.undoActivity && !this.undoActivity.has(id)) this.undoActivity.set(id, this.activity.get(id));
  }

  /**
   * Writes every changed profile back: once before commit, and before a step that reads profile rows through
   * SQL (merge snapshots). Marks stay set so a later rollback of the record cannot lose earlier records' changes.
   * Pending folds are added in the store and forgotten here (the record's undo log brings them back if its
   * savepoint, which then undoes the addition too, rolls back).
   */
  async flush(): Promise<void> {
    for (const id of this.dirty) {
      const state = this.states.get(id);
      if (state) await this.tx.updateProfile(this.account.id, state);
    }
    if (this.activity.size === 0) return;
    const deltas = [...this.activity].map(([profileId, d]) => ({
      profileId,
      firstTs: d.firstTs,
      lastTs: d.lastTs,
      events: d.events,
      ...(d.timezone && { timezone: d.timezone }),
    }));
    await this.tx.addActivity(this.account.id, deltas);
    for (const id of this.activity.keys()) this.rememberActivity(id);
    this.activity.clear();
  }

  /**
   * Between pages of a walk over many profiles, outside any record (settings.ts): writes every changed profile back,
   * then forgets every profile loaded. `flush` keeps its marks for a record's rollback, so a walk that flushed after
   * each page wrote every profile it had changed again at every later page (quadratic in the profiles it changes) and
   * kept them all in memory. A profile forgotten stays locked until COMMIT; loading it again reads what was written.
   */
  async flushAndForget(): Promise<void> {
    if (this.undo !== null) throw new Error("flushAndForget: not inside a record (its rollback needs the marks).");
    await this.flush();
    this.states.clear();
    this.dirty.clear();
  }

  /** After commit: registrations become visible to later transactions. */
  committed(): void {
    for (const [k, type] of this.pendingTypes) {
      const [scope, path] = k.split("\u0000") as [TypeScope, string];
      this.types.set(this.account.id, scope, path, type);
    }
    this.pendingTypes.clear();
    this.newPaths.clear();
  }
}

/**
 * Another transaction changed a profile's zone between two status reads of this one, so events counted against the
 * first no longer fold with the rest. Only PostgreSQL can get here (SQLite has one writer); its write() runs the
 * transaction again on a serialization failure.
 */
function zoneChanged(profileId: string): Error {
  return Object.assign(new Error(`Profile ${profileId}'s Timezone changed while its events were counted; run again.`), {
    code: "40001",
  });
}
