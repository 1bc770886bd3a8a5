/**
 * The application service the transports call: each method is one use case in one transaction.
 * HTTP, CLI and imports stay thin by calling only this.
 */

import { type ClockSkew, clockSkewOf, readSentAt } from "../engine/clock-skew.js";
import { PortraitError } from "../engine/errors.js";
import { toIsoUtc } from "../engine/iso-utc.js";
import { isPlainObject, parseRecord } from "../engine/parse-record.js";
import { parsePropertySet } from "../engine/properties/parse.js";
import type { AnyRecord, IngestRecord, RecordResult } from "../engine/records.js";
import { assertStorableText } from "../engine/text.js";
import type {
  Account,
  JsonValue,
  ProfileDocument,
  ProfileState,
  StoredEvent,
  UserAccountRef,
} from "../engine/types.js";
import type {
  DeletedCounts,
  MergeRow,
  ProfileLookup,
  ProfileSnapshot,
  SnapshotReader,
  Store,
  StoreReader,
  TimelineEvent,
} from "../store/store.js";
import { type Accounts, validateSettings } from "./accounts.js";
import { applyRecord } from "./apply-record.js";
import { batchHandles } from "./batch-handles.js";
import { type Clock, type IdSource, randomIds, systemClock } from "./clock.js";
import { deleteProfile, household } from "./delete.js";
import { type UndoUnapplied, undoMerge } from "./demerge.js";
import { GroupCommit } from "./group-commit.js";
import { mergeProfiles } from "./merge.js";
import { RecordScope } from "./record-scope.js";
import { reindexIdentities } from "./settings.js";
import { TypeCache } from "./type-cache.js";
import { UnitOfWork } from "./unit-of-work.js";
import { identityValuesView, iso, type ProfileView, profileView, propertyStatesView } from "./views.js";

export const MAX_BATCH = 1000;

export interface BatchFailure {
  index: number;
  code: string;
  error: string;
  field?: string;
}

export interface BatchResult {
  status: "success" | "partial" | "fail";
  processed: number;
  unprocessed: BatchFailure[];
  results: Array<RecordResult & { index: number }>;
}

export interface EventView {
  id: string;
  name: string;
  ts: string;
  properties: Record<string, unknown>;
  anonymous: boolean;
  profileId: string;
  deviceId: string | null;
  platform: string | null;
}

/** An event of a timeline page as it is sent: its properties are the JSON text the store keeps (TimelineEvent). */
export interface TimelineEventView extends Omit<EventView, "properties"> {
  propertiesJson: string;
}

export interface TimelineView<E> {
  events: E[];
  nextCursor: string | null;
}

interface IngestJob {
  /** The batch as sent, and the account whose settings parsed it: parsed again if the settings changed since. */
  raw: unknown[];
  parsedWith: Account;
  opts: ParseOptions;
  parsed: Array<{ index: number; record: IngestRecord }>;
  refused: BatchFailure[];
  now: number;
}

type ParseOptions = { deviceHandlesOnly?: boolean; clockSkew?: ClockSkew };

export interface IngestOptions {
  /** The SDK endpoint: device handles only, records marked as sent with a public key (parse-record.ts). */
  deviceHandlesOnly?: boolean;
  /** The SDK endpoint: the envelope may carry `sentAt`, the sender's clock, and numeric ts are moved by its skew. */
  readsSentAt?: boolean;
}

interface JobOutcome {
  ok: BatchResult["results"];
  refused: BatchFailure[];
}

export class Portrait {
  readonly types: TypeCache;
  private readonly groupCommit: GroupCommit<IngestJob, JobOutcome>;
  /**
   * The newest account row each write transaction found, by the settings revision it had: records are checked
   * against these settings, not those of the caller's (possibly cached) account, so a settings change made through
   * another process applies to this one's next transaction (docs/scaling.md).
   */
  private readonly current = new Map<string, { revision: number; account: Account }>();

  constructor(
    readonly store: Store,
    readonly clock: Clock = systemClock,
    readonly ids: IdSource = randomIds,
  ) {
    this.types = new TypeCache(store);
    // As many groups of one account at once as the store can write concurrently (1 on SQLite).
    this.groupCommit = new GroupCommit<IngestJob, JobOutcome>(
      (account, jobs) => this.applyBatches(account, jobs),
      undefined,
      store.concurrentWriters ?? 1,
    );
  }

  /** Ingest records waiting for their group's transaction (GET /metrics). */
  waitingRecords(): number {
    return this.groupCommit.waitingRecords();
  }

  /**
   * Runs a use case in one write transaction with a fresh working set, checked against the account's settings and
   * types as they are in the store now. `lockAccount`: every other write transaction of the account waits for this
   * one (settings changes).
   */
  async transact<T>(
    account: Account,
    fn: (uow: UnitOfWork) => Promise<T>,
    opts: { lockAccount?: boolean } = {},
  ): Promise<T> {
    let uow: UnitOfWork | undefined;
    const result = await this.store.write(account.id, async (tx) => {
      if (opts.lockAccount) await tx.lockAccount(account.id);
      // Inside the transaction: what another process changed since the last one is what this one's records meet.
      const revisions = await tx.revisions(account.id);
      await this.types.ensure(account.id, tx, revisions.types);
      const current = await this.currentAccount(account, revisions.settings, (id) => tx.getAccount(id));
      uow = new UnitOfWork(tx, current, this.types, this.clock);
      const value = await fn(uow);
      await uow.flush();
      return value;
    });
    uow?.committed();
    return result;
  }

  /**
   * The account as of settings revision `revision`: the one known here, or read again when another is newer. Inside
   * a write transaction, which holds the account's settings lock (StoreTx.revisions), no change can commit in
   * between; outside one, a change committed in between leaves a row newer than its revision, which only costs a
   * read more next time. `read`: where the row is read, the transaction's own connection inside one (a read on the
   * pool there waited for a connection that the other transactions doing the same held: a burst of writes on a node
   * that had not read the settings yet, or just after a change, stalled 10 s and answered 503).
   */
  private async currentAccount(
    account: Account,
    revision: number,
    read: (accountId: string) => Promise<Account | null> = (id) => this.store.getAccount(id),
  ): Promise<Account> {
    const known = this.current.get(account.id);
    if (known?.revision === revision) return known.account;
    const fresh = (await read(account.id)) ?? account;
    this.current.set(account.id, { revision, account: fresh });
    return fresh;
  }

  /** The newest settings of an account this process has seen (the caller's may come from a cache). */
  latest(account: Account): Account {
    return this.current.get(account.id)?.account ?? account;
  }

  /**
   * PATCH /v1/account/settings (SEMANTICS §11 Settings changes): an added identity key back-fills the index from
   * properties or fails 409 listing duplicates; a removed key drops its rows; a lowered limit releases the oldest.
   * One transaction that holds the account: the patch applies to the settings as stored, and no record is checked
   * against the old settings after it commits, in this process or another.
   */
  async updateSettings(accounts: Accounts, account: Account, patch: unknown): Promise<Account> {
    // A malformed patch is refused before the account's lock is taken (it would make every writer wait); the patch is
    // validated again below against the settings as stored.
    validateSettings(account.settings, patch);
    const { updated, revision } = await this.transact(
      account,
      async (uow) => {
        const before = uow.account.settings;
        const next = validateSettings(before, patch);
        await reindexIdentities(uow, before, next);
        await uow.tx.updateSettings(account.id, next);
        return { updated: { ...uow.account, settings: next }, revision: (await uow.tx.revisions(account.id)).settings };
      },
      { lockAccount: true },
    );
    // What this process reads next (an import's date cells, for one) takes the new settings at once.
    this.current.set(account.id, { revision, account: updated });
    accounts.settingsChanged(updated);
    return updated;
  }

  /** POST /v1/ingest and /v1/sdk/batch: records applied in order, each atomic; 400 only for a malformed batch. */
  async ingest(account: Account, body: unknown, options: IngestOptions = {}): Promise<BatchResult> {
    if (!isPlainObject(body) || !Array.isArray(body.records)) {
      throw new PortraitError("INVALID_BATCH", 'the body must be {"records": [...]}', "records");
    }
    const raw = body.records as unknown[];
    if (raw.length > MAX_BATCH) {
      throw new PortraitError(
        "BATCH_TOO_LARGE",
        `a batch holds at most ${MAX_BATCH} records, got ${raw.length}`,
        "records",
      );
    }
    // A bad sentAt refuses the batch before anything is read (clock-skew.ts); /v1/ingest takes none.
    const sentAt = options.readsSentAt ? readSentAt(body.sentAt) : undefined;
    const now = this.clock.now();
    const clockSkew = clockSkewOf(sentAt, now);
    const opts: ParseOptions = clockSkew
      ? { deviceHandlesOnly: options.deviceHandlesOnly, clockSkew }
      : { deviceHandlesOnly: options.deviceHandlesOnly };
    let parsedWith = this.latest(account);
    let { parsed, refused } = parseBatch(raw, parsedWith, now, opts);
    if (parsed.length === 0 && raw.length > 0) {
      // Nothing to write under the settings known here. Unless they changed meanwhile (maybe through another process),
      // that is the answer, and a batch of refusals costs no write transaction.
      const current = await this.currentAccount(account, (await this.store.reader.revisions(account.id)).settings);
      if (current !== parsedWith) {
        parsedWith = current;
        ({ parsed, refused } = parseBatch(raw, parsedWith, now, opts));
      }
    }
    let results: BatchResult["results"] = [];
    let unprocessed = refused;
    if (parsed.length > 0) {
      const job: IngestJob = { raw, parsedWith, opts, parsed, refused, now };
      const applied = await this.groupCommit.submit(account, job, parsed.length);
      results = applied.ok;
      unprocessed = applied.refused;
    }
    unprocessed.sort((a, b) => a.index - b.index);
    const status = unprocessed.length === 0 ? "success" : results.length === 0 ? "fail" : "partial";
    return { status, processed: results.length, unprocessed, results };
  }

  /**
   * Applies several parsed batches in one transaction (group commit). Results are built inside the transaction
   * function so that a store that re-runs it (PostgreSQL on deadlock) starts clean.
   */
  private applyBatches(account: Account, jobs: IngestJob[]): Promise<JobOutcome[]> {
    return this.transact(account, async (uow) => {
      // Parsed under other settings than the account has now (changed since, maybe by another process): parsed again.
      const batches = jobs.map((job) =>
        job.parsedWith === uow.account ? job : { ...job, ...parseBatch(job.raw, uow.account, job.now, job.opts) },
      );
      // A hint: a store may load and lock what the records name in a few round trips (StoreTx.prefetch). SQLite has
      // none, and then the handles are not even collected.
      if (uow.tx.prefetch) {
        const records = batches.flatMap((job) => job.parsed.map((p) => p.record));
        await uow.tx.prefetch(account.id, batchHandles(uow.account, records));
      }
      const outcomes: JobOutcome[] = [];
      for (const { parsed, now, refused: unparsed } of batches) {
        const ok: BatchResult["results"] = [];
        const refused: BatchFailure[] = [...unparsed];
        for (const { index, record } of parsed) {
          try {
            const result = await uow.atomically(() => applyRecord(new RecordScope(uow, this.ids, now), record));
            ok.push({ index, ...result });
          } catch (e) {
            refused.push(failure(index, e));
          }
        }
        outcomes.push({ ok, refused });
      }
      return outcomes;
    });
  }

  /** One record from the profile API (PATCH, flags, documents): atomic, errors thrown. */
  async apply(account: Account, record: AnyRecord): Promise<RecordResult> {
    return this.applyThen(account, record, async (_uow, result) => result);
  }

  /** One record in a transaction of its own, then `answer` from what it did, in the same transaction. */
  private async applyThen<T>(
    account: Account,
    record: AnyRecord,
    answer: (uow: UnitOfWork, result: RecordResult, now: number) => Promise<T>,
  ): Promise<T> {
    const now = this.clock.now();
    return this.transact(account, async (uow) => {
      const result = await uow.atomically(() => applyRecord(new RecordScope(uow, this.ids, now), record));
      return answer(uow, result, now);
    });
  }

  /**
   * A record for the profile a route's path names (`/v1/profiles/{id}/…`): an id that names nobody is the path's
   * fault, so its refusal names the field `id`, as GET and DELETE on the same path do, not the record's `profileId`.
   */
  async applyAtPath(account: Account, record: AnyRecord): Promise<RecordResult> {
    return this.atPath(record, () => this.apply(account, record));
  }

  /**
   * `applyAtPath`, answered with the profile as the record's transaction leaves it (committedView): read after
   * COMMIT, a delete landing in between made a committed PATCH answer 404.
   */
  private async applyAtPathAndView(account: Account, record: AnyRecord): Promise<ProfileView> {
    const handle = record.handle.kind === "profile" ? record.handle.profileId : "";
    return this.atPath(record, () =>
      this.applyThen(account, record, (uow, result, now) => this.committedView(uow, result.profileId ?? handle, now)),
    );
  }

  private async atPath<T>(record: AnyRecord, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (e) {
      if (e instanceof PortraitError && e.code === "UNKNOWN_PROFILE" && e.field === "profileId") {
        const id = record.handle.kind === "profile" ? record.handle.profileId : "";
        throw new PortraitError("UNKNOWN_PROFILE", `profile ${id} does not exist`, "id");
      }
      throw e;
    }
  }

  async patchProfile(account: Account, profileId: string, body: unknown): Promise<ProfileView> {
    const now = this.clock.now();
    assertStorableText(body);
    const properties = parsePropertySet(body, { timezone: account.settings.timezone, now });
    try {
      return await this.applyAtPathAndView(account, {
        type: "profile",
        ts: now,
        handle: { kind: "profile", profileId },
        properties,
      });
    } catch (e) {
      // The PATCH body is the property set itself: its errors name the key, not `properties.key`.
      if (e instanceof PortraitError && e.field?.startsWith("properties.")) {
        throw new PortraitError(e.code, e.message, e.field.slice("properties.".length));
      }
      throw e;
    }
  }

  async setFlags(
    account: Account,
    profileId: string,
    flags: { test?: boolean; controlGroupExcluded?: boolean },
  ): Promise<ProfileView> {
    const now = this.clock.now();
    return this.applyAtPathAndView(account, {
      type: "flags",
      ts: now,
      handle: { kind: "profile", profileId },
      ...flags,
    });
  }

  async merge(
    account: Account,
    targetId: string,
    sourceId: string,
  ): Promise<{ mergeId: string; profile: ProfileView }> {
    const now = this.clock.now();
    return this.transact(account, async (uow) => {
      const scope = new RecordScope(uow, this.ids, now);
      // SEMANTICS §7 names tombstones among what cannot be merged: a stale id must not merge its target silently
      // (the general rule that a tombstone's id acts on its target gives way to this one; docs/semantics.md).
      const target = await uow.load(targetId);
      const source = await uow.load(sourceId);
      if (!target) throw new PortraitError("UNKNOWN_PROFILE", `targetId ${targetId} is not a profile`, "targetId");
      if (!source) throw new PortraitError("UNKNOWN_PROFILE", `sourceId ${sourceId} is not a profile`, "sourceId");
      const result = await mergeProfiles(scope, target.id, source.id);
      await scope.writeSystemEvents();
      return { mergeId: result.mergeId, profile: await this.committedView(uow, result.target.id, now) };
    });
  }

  /** Both people as restored, and (only when there is some) what of them the undo left with others. */
  async undoMerge(
    account: Account,
    mergeId: string,
  ): Promise<{ target: ProfileView; source: ProfileView; unapplied?: UndoUnapplied[] }> {
    const now = this.clock.now();
    return this.transact(account, async (uow) => {
      const result = await undoMerge(uow, this.ids, now, mergeId);
      return {
        target: await this.committedView(uow, result.targetId, now),
        source: await this.committedView(uow, result.sourceId, now),
        ...(result.unapplied.length > 0 && { unapplied: result.unapplied }),
      };
    });
  }

  /**
   * The answer of a merge or an undo: a profile as the transaction leaves it, read inside it (its writes flushed;
   * the profile stays locked until COMMIT). Read after COMMIT, a delete landing in between made a committed undo
   * answer 404 UNKNOWN_PROFILE, telling its client it had failed.
   */
  private async committedView(uow: UnitOfWork, profileId: string, now: number): Promise<ProfileView> {
    await uow.flushAndForget();
    const card = await uow.tx.getProfileCard(uow.accountId, { profileId });
    if (!card) throw new Error(`profile ${profileId} is gone inside the transaction that wrote it`);
    return profileView(uow.account, card, now);
  }

  async deleteProfile(account: Account, profileId: string): Promise<DeletedCounts> {
    return this.transact(account, (uow) => deleteProfile(uow, profileId));
  }

  /** The live profile an id names (a tombstone's id reads as its target), or null. `r`: where to read it. */
  async getProfile(account: Account, profileId: string, r = this.store.reader): Promise<ProfileView | null> {
    return this.viewOf(account, { profileId }, r);
  }

  /** The view of the live profile a look-up names: a tombstone's id reads as its target. */
  private async viewOf(account: Account, lookup: ProfileLookup, r = this.store.reader): Promise<ProfileView | null> {
    let card = await r.getProfileCard(account.id, lookup);
    if (card?.state.mergedInto) {
      // A tombstone (rare): follow the merges on the profile rows alone, then read the live one's card.
      const live = await this.liveState(account, card.state.mergedInto, r);
      card = live ? await r.getProfileCard(account.id, { profileId: live.id }) : null;
    }
    return card ? profileView(account, card, this.clock.now()) : null;
  }

  private async liveState(account: Account, profileId: string, r = this.store.reader): Promise<ProfileState | null> {
    let state = await r.getProfile(account.id, profileId);
    for (let hops = 0; state?.mergedInto && hops < 64; hops++) {
      state = await r.getProfile(account.id, state.mergedInto);
    }
    return state;
  }

  async requireProfile(account: Account, profileId: string, r = this.store.reader): Promise<ProfileView> {
    const view = await this.getProfile(account, profileId, r);
    if (!view) throw new PortraitError("UNKNOWN_PROFILE", `profile ${profileId} does not exist`, "id");
    return view;
  }

  /** Find People by identity (API.md GET /v1/profiles?…). */
  async findProfiles(account: Account, query: FindQuery): Promise<ProfileView[]> {
    const r = this.store.reader;
    let id: string | null = null;
    if (query.kind === "identity") {
      const view = await this.viewOf(account, { identity: { key: query.key, value: query.value } });
      return view ? [view] : [];
    }
    if (query.kind === "device") id = (await r.findDevice(account.id, query.deviceId))?.profileId ?? null;
    else if (query.kind === "userAccount") id = await r.findProfileByUserAccount(account.id, query.ref);
    else id = query.profileId;
    const view = id ? await this.getProfile(account, id) : null;
    return view ? [view] : [];
  }

  /** The timeline: own events plus orphans' events flagged anonymous, newest first (SEMANTICS §5). */
  async timeline(
    account: Account,
    profileId: string,
    page: { cursor?: string | null; limit: number },
  ): Promise<TimelineView<EventView>> {
    const { events, nextCursor } = await this.timelinePage(account, profileId, page);
    return { events: events.map(parsedEventView), nextCursor };
  }

  /** As `timeline`, each event's properties left as JSON text for a transport to pass through (GET …/events). */
  async timelinePage(
    account: Account,
    profileId: string,
    page: { cursor?: string | null; limit: number },
  ): Promise<TimelineView<TimelineEventView>> {
    const opts = { before: decodeCursor(page.cursor), limit: page.limit };
    let ownerId = profileId;
    let result = await this.store.reader.timelinePage(account.id, ownerId, opts);
    if (result === null) {
      // Not live: a tombstone's timeline is its target's.
      const profile = await this.liveState(account, profileId);
      if (!profile) throw new PortraitError("UNKNOWN_PROFILE", `profile ${profileId} does not exist`, "id");
      ownerId = profile.id;
      result = await this.store.reader.timelinePage(account.id, ownerId, opts);
      if (result === null) throw new PortraitError("UNKNOWN_PROFILE", `profile ${profileId} does not exist`, "id");
    }
    return {
      events: result.events.map((e) => timelineEventView(e, e.profileId !== ownerId)),
      nextCursor: result.next ? encodeCursor(result.next) : null,
    };
  }

  /** Every stored fact about a person as one document (SEMANTICS §10). */
  async exportProfile(account: Account, profileId: string): Promise<Record<string, unknown>> {
    // One snapshot for all its reads: read one after another as things stood at each read, a write committed in
    // between made the document disagree with itself (stats.events against the events listed: the audit, F4).
    return this.store.snapshot(account.id, (r) => this.exportFrom(r, account, profileId));
  }

  private async exportFrom(r: SnapshotReader, account: Account, profileId: string): Promise<Record<string, unknown>> {
    const profile = await this.requireProfile(account, profileId, r);
    const members = await household(r, account.id, profile.id);
    const orphans = await r.listOrphans(account.id, profile.id);
    const events = await allEvents(r, account.id, [profile.id, ...orphans]);
    const now = this.clock.now();
    const orphanViews: ProfileView[] = [];
    // SEMANTICS §10: the orphans' documents go with the person on delete, so they are the person's data.
    const orphanDocuments: Array<{ profileId: string; documents: Array<Record<string, JsonValue>> }> = [];
    const orphanStates: Array<{ profileId: string; propertyStates: ReturnType<typeof propertyStatesView> }> = [];
    for (const id of orphans) {
      const card = await r.getProfileCard(account.id, { profileId: id });
      if (card) {
        orphanViews.push(profileView(account, card, now));
        orphanStates.push({ profileId: id, propertyStates: propertyStatesView(card.state) });
      }
      orphanDocuments.push({ profileId: id, documents: (await r.listDocuments(account.id, id)).map(documentView) });
    }
    const tombstones = members.filter((id) => id !== profile.id && !orphans.includes(id));
    // A tombstone's own merges are the person's history too (B into A, then A into C: C's export shows both).
    const merges = new Map<string, MergeRow>();
    for (const id of [profile.id, ...tombstones]) {
      for (const m of await r.listMergesTouching(account.id, id)) merges.set(m.id, m);
    }
    // In the order they were written (MergeRow.seq), oldest first: the order that decides which one is the latest.
    const history = [...merges.values()].sort((x, y) => x.seq - y.seq);
    const state = await r.getProfile(account.id, profile.id);
    if (!state) throw new PortraitError("UNKNOWN_PROFILE", `profile ${profileId} does not exist`, "id");
    const undoable = history.filter((m) => m.undoneAt === null);
    const journals = new Map<string, AnyRecord[]>();
    for (const m of undoable) journals.set(m.id, await r.listJournal(account.id, m.id));
    return {
      exportedAt: iso(now),
      profile,
      documents: (await r.listDocuments(account.id, profile.id)).map(documentView),
      devices: await r.listDevices(account.id, profile.id),
      events: events.map((e) => eventView(e, e.profileId !== profile.id)),
      orphans: orphanViews,
      tombstones,
      merges: history.map((m) => ({
        id: m.id,
        targetId: m.targetId,
        sourceId: m.sourceId,
        createdAt: iso(m.createdAt),
        undoneAt: iso(m.undoneAt),
      })),
      orphanDocuments,
      // The stored facts that decide later writes (SEMANTICS §4, §7), beside the values above.
      propertyStates: propertyStatesView(state),
      orphanPropertyStates: orphanStates,
      // Which source acquiredFrom came from and when: an earlier one seen later replaces it (SEMANTICS §11).
      acquisition: { from: state.acquiredFrom, kind: state.acquiredKind, ts: iso(state.acquiredTs) },
      identityValues: identityValuesView(state),
      chargedIds: await r.listChargedIds(account.id, profile.id),
      // What undoing each merge not undone yet would restore (SEMANTICS §7): both sides as they were before it.
      mergeSnapshots: undoable.map((m) => ({
        mergeId: m.id,
        target: snapshotView(account, m.target, now),
        source: snapshotView(account, m.source, now),
        droppedEvents: m.droppedEvents.map((e) => eventView(e, false)),
        journal: journals.get(m.id) ?? [],
      })),
    };
  }

  async getDocument(account: Account, profileId: string, ref: UserAccountRef): Promise<Record<string, JsonValue>> {
    const profile = await this.requireProfile(account, profileId);
    const doc = await this.store.reader.getDocument(account.id, ref);
    if (!doc || doc.profileId !== profile.id) {
      throw new PortraitError(
        "UNKNOWN_DOCUMENT",
        `profile ${profileId} has no document ${ref.compartmentId}/${ref.userAccountId}`,
      );
    }
    return documentView(doc);
  }

  async listDocuments(account: Account, profileId: string): Promise<ProfileDocument[]> {
    const profile = await this.requireProfile(account, profileId);
    return this.store.reader.listDocuments(account.id, profile.id);
  }
}

/** Every event of some profiles, newest first, page after page. */
async function allEvents(r: StoreReader, accountId: string, profileIds: string[]): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  let before: { ts: number; seq: number } | null = null;
  for (;;) {
    const page = await r.listEvents(accountId, profileIds, { before, limit: 1000 });
    out.push(...page.events);
    if (!page.next) return out;
    before = page.next;
  }
}

export type FindQuery =
  | { kind: "identity"; key: import("../engine/types.js").IdentityKey; value: string }
  | { kind: "device"; deviceId: string }
  | { kind: "userAccount"; ref: UserAccountRef }
  | { kind: "profile"; profileId: string };

export function documentView(doc: ProfileDocument): Record<string, JsonValue> {
  return doc.body;
}

/** A merge's pre-merge snapshot of one side, as the export shows it: what an undo would restore. */
function snapshotView(account: Account, snapshot: ProfileSnapshot, now: number) {
  const { state } = snapshot;
  const card = {
    state,
    deviceIds: snapshot.devices.map((d) => d.deviceId),
    userAccounts: snapshot.userAccounts,
    orphanCount: snapshot.orphans.length,
  };
  return {
    profile: profileView(account, card, now),
    propertyStates: propertyStatesView(state),
    identityValues: identityValuesView(state),
    devices: snapshot.devices,
    documents: snapshot.documents.map(documentView),
    chargedIds: snapshot.chargedIds,
    orphans: snapshot.orphans,
  };
}

function timelineEventView(e: TimelineEvent, anonymous: boolean): TimelineEventView {
  return {
    id: e.id,
    name: e.name,
    ts: toIsoUtc(e.ts),
    propertiesJson: e.propertiesJson,
    anonymous,
    profileId: e.profileId,
    deviceId: e.deviceId,
    platform: e.platform,
  };
}

function parsedEventView(e: TimelineEventView): EventView {
  return {
    id: e.id,
    name: e.name,
    ts: e.ts,
    properties: JSON.parse(e.propertiesJson),
    anonymous: e.anonymous,
    profileId: e.profileId,
    deviceId: e.deviceId,
    platform: e.platform,
  };
}

export function eventView(e: StoredEvent, anonymous: boolean): EventView {
  return {
    id: e.id,
    name: e.name,
    ts: toIsoUtc(e.ts),
    properties: e.properties,
    anonymous,
    profileId: e.profileId,
    deviceId: e.deviceId,
    platform: e.platform,
  };
}

/** A batch's records parsed under an account's settings: those that parse, and why the others do not. */
function parseBatch(
  raw: unknown[],
  account: Account,
  now: number,
  opts: ParseOptions,
): Pick<IngestJob, "parsed" | "refused"> {
  const parsed: IngestJob["parsed"] = [];
  const refused: BatchFailure[] = [];
  raw.forEach((input, index) => {
    try {
      parsed.push({ index, record: parseRecord(input, { settings: account.settings, now, ...opts }) });
    } catch (e) {
      refused.push(failure(index, e));
    }
  });
  return { parsed, refused };
}

function failure(index: number, e: unknown): BatchFailure {
  if (e instanceof PortraitError) {
    return { index, code: e.code, error: e.message, ...(e.field !== undefined && { field: e.field }) };
  }
  throw e;
}

export function encodeCursor(c: { ts: number; seq: number }): string {
  return Buffer.from(`${c.ts}:${c.seq}`).toString("base64url");
}

export function decodeCursor(cursor: string | null | undefined): { ts: number; seq: number } | null {
  if (!cursor) return null;
  const m = /^(-?\d+):(\d+)$/.exec(Buffer.from(cursor, "base64url").toString());
  const ts = m ? Number(m[1]) : Number.NaN;
  const seq = m ? Number(m[2]) : Number.NaN;
  // Numbers no stored event has (beyond a safe integer) are no cursor this API returned; PostgreSQL would refuse them.
  if (!Number.isSafeInteger(ts) || !Number.isSafeInteger(seq)) {
    throw new PortraitError("INVALID_VALUE", "cursor is not one this API returned", "cursor");
  }
  return { ts, seq };
}
