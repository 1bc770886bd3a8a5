/**
 * The SegmentStore part of the conformance suite (segment-store.ts): saved segments, and the rule that segment
 * results follow the data through every Store write — profiles inserted, updated (read first or not, inside a
 * savepoint that rolls back), deleted; events inserted, moved, deleted and restored; orphans. Each adapter's
 * `*-segments.test.ts` runs it; the differential test (../segment-differential.test.ts) checks the SQL itself.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Condition, Json } from "../../engine/segment/condition.js";
import type { EvaluateContext } from "../../engine/segment/evaluate.js";
import { parseCondition } from "../../engine/segment/parse.js";
import type { NewEvent, ProfileState } from "../../engine/types.js";
import type { Store } from "../store.js";
import { blankProfile, newAccount, newId } from "./fixtures.js";

const NOW = Date.UTC(2025, 0, 15, 12);
const DAY = 86_400_000;
const CTX: EvaluateContext = { now: NOW, timezone: "UTC", segment: () => undefined };

function where(json: Json): Condition {
  return parseCondition(json, { timezone: "UTC", now: NOW });
}

function withCity(state: ProfileState, city: string | undefined): ProfileState {
  const props = { ...state.props };
  if (city === undefined) delete props.City;
  else props.City = { v: city, t: "string", ts: NOW };
  return { ...state, props };
}

function event(profileId: string, name: string, daysAgo: number): NewEvent {
  return { profileId, id: newId(), name, ts: NOW - daysAgo * DAY, properties: {}, deviceId: null, platform: null };
}

export function describeSegmentConformance(
  name: string,
  makeStore: () => Promise<Store>,
  dropStore: (s: Store) => Promise<void>,
): void {
  describe(`SegmentStore conformance: ${name}`, () => {
    let store: Store;

    beforeAll(async () => {
      store = await makeStore();
    });
    afterAll(async () => {
      await dropStore(store);
    });

    async function freshAccount(): Promise<string> {
      const account = newAccount(NOW);
      await store.createAccount(account);
      return account.id;
    }

    async function members(accountId: string, json: Json): Promise<string[]> {
      const c = where(json);
      const page = await store.segments.querySegment(accountId, c, CTX, { after: null, limit: 1000 });
      expect(await store.segments.countSegment(accountId, c, CTX)).toBe(page.ids.length);
      return page.ids;
    }

    describe("saved segments", () => {
      it("inserts, reads, lists oldest first with a cursor, and keeps `where` exactly as sent", async () => {
        const accountId = await freshAccount();
        const a = {
          id: "seg-a",
          name: "A",
          where: { any: [{ type: "customer" }, { test: true }] } as Json,
          createdAt: NOW,
        };
        const b = { id: "seg-b", name: "B ✓", where: { property: "x", op: "exists" }, createdAt: NOW };
        const c = { id: "seg-c", name: "C", where: { inSegment: "seg-a" }, createdAt: NOW - 1 };
        expect(await store.segments.insertSegment(accountId, a, [])).toEqual({ inserted: true });
        expect(await store.segments.insertSegment(accountId, b, [])).toEqual({ inserted: true });
        expect(await store.segments.insertSegment(accountId, c, ["seg-a"])).toEqual({ inserted: true });
        expect(await store.segments.getSegment(accountId, "seg-b")).toEqual(b);
        expect(await store.segments.getSegment(accountId, "seg-none")).toBeNull();
        const first = await store.segments.listSegments(accountId, { after: null, limit: 2 });
        expect(first.map((s) => s.id)).toEqual(["seg-c", "seg-a"]);
        const last = first[first.length - 1]!;
        const rest = await store.segments.listSegments(accountId, {
          after: { createdAt: last.createdAt, id: last.id },
          limit: 2,
        });
        expect(rest).toEqual([b]);
        expect(await store.segments.listSegmentsUsing(accountId, "seg-a")).toEqual(["seg-c"]);
        expect(await store.segments.listSegmentsUsing(accountId, "seg-b")).toEqual([]);
      });

      it("refuses a segment that names a missing one, and a delete while another uses it", async () => {
        const accountId = await freshAccount();
        const other = await freshAccount();
        const base = { id: "base", name: "base", where: { type: "customer" }, createdAt: NOW };
        expect(await store.segments.insertSegment(accountId, base, [])).toEqual({ inserted: true });
        const user = { id: "user", name: "user", where: { inSegment: "base" }, createdAt: NOW };
        // Another account's segment of that id does not exist for it.
        expect(await store.segments.insertSegment(other, user, ["base"])).toEqual({ inserted: false, missing: "base" });
        expect(await store.segments.getSegment(other, "user")).toBeNull();
        expect(await store.segments.insertSegment(accountId, user, ["base"])).toEqual({ inserted: true });
        expect(await store.segments.deleteSegment(other, "base")).toEqual({ deleted: false });
        expect(await store.segments.deleteSegment(accountId, "base")).toEqual({ deleted: false, usedBy: ["user"] });
        expect(await store.segments.deleteSegment(accountId, "user")).toEqual({ deleted: true });
        expect(await store.segments.deleteSegment(accountId, "base")).toEqual({ deleted: true });
        expect(await store.segments.deleteSegment(accountId, "base")).toEqual({ deleted: false });
        expect(await store.segments.listSegmentsUsing(accountId, "base")).toEqual([]);
      });
    });

    describe("results follow the data", () => {
      it("profile inserts, updates (read first or not) and deletes", async () => {
        const accountId = await freshAccount();
        const a = withCity(blankProfile(newId(), NOW), "Paris");
        const b = withCity(blankProfile(newId(), NOW), "Lyon");
        await store.write(accountId, async (tx) => {
          await tx.insertProfile(accountId, a);
          await tx.insertProfile(accountId, b);
        });
        expect(await members(accountId, { property: "City", op: "eq", value: "Paris" })).toEqual([a.id]);
        // Updated without reading it first.
        await store.write(accountId, (tx) => tx.updateProfile(accountId, withCity(b, "Paris")));
        expect(await members(accountId, { property: "City", op: "eq", value: "Paris" })).toEqual([a.id, b.id].sort());
        // Read, then written back twice in one transaction.
        await store.write(accountId, async (tx) => {
          const state = (await tx.lockProfile(accountId, a.id))!;
          await tx.updateProfile(accountId, withCity(state, "Rome"));
          await tx.updateProfile(accountId, withCity(state, undefined));
        });
        expect(await members(accountId, { property: "City", op: "exists" })).toEqual([b.id]);
        await store.write(accountId, (tx) => tx.deleteProfileData(accountId, b.id));
        expect(await members(accountId, { property: "City", op: "exists" })).toEqual([]);
        expect(await members(accountId, { property: "City", op: "notExists" })).toEqual([a.id]);
      });

      it("a savepoint that rolls back takes its property changes back, and a later identical write still lands", async () => {
        const accountId = await freshAccount();
        const a = withCity(blankProfile(newId(), NOW), "Paris");
        await store.write(accountId, (tx) => tx.insertProfile(accountId, a));
        await store.write(accountId, async (tx) => {
          const state = (await tx.lockProfile(accountId, a.id))!;
          await expect(
            tx.savepoint(async () => {
              await tx.updateProfile(accountId, withCity(state, "Lyon"));
              throw new Error("the record fails");
            }),
          ).rejects.toThrow("the record fails");
          // The same change again, outside the failed savepoint: it must be written, not taken as already there.
          await tx.updateProfile(accountId, withCity(state, "Lyon"));
        });
        expect(await members(accountId, { property: "City", op: "eq", value: "Lyon" })).toEqual([a.id]);
        await store.write(accountId, async (tx) => {
          const state = (await tx.lockProfile(accountId, a.id))!;
          await expect(
            tx.savepoint(async () => {
              await tx.updateProfile(accountId, withCity(state, "Rome"));
              throw new Error("the record fails");
            }),
          ).rejects.toThrow();
        });
        expect(await members(accountId, { property: "City", op: "eq", value: "Lyon" })).toEqual([a.id]);
      });

      it("events inserted, moved (merge), restored (undo) and deleted; orphans and tombstones", async () => {
        const accountId = await freshAccount();
        const a = blankProfile(newId(), NOW);
        const b = blankProfile(newId(), NOW);
        const orphan = { ...blankProfile(newId(), NOW), orphanOf: a.id };
        await store.write(accountId, async (tx) => {
          for (const p of [a, b, orphan]) await tx.insertProfile(accountId, p);
        });
        const seqs = await store.write(accountId, (tx) =>
          tx.insertEvents(accountId, [
            event(a.id, "Charged", 1),
            event(b.id, "Charged", 2),
            event(b.id, "Charged", 40),
            event(orphan.id, "Charged", 1),
            event(orphan.id, "Charged", 1),
          ]),
        );
        const twice = { did: "Charged", count: { op: "gte", value: 2 } };
        const recent = { did: "Charged", withinLast: { days: 30 } };
        expect(await members(accountId, twice)).toEqual([b.id]);
        expect(await members(accountId, recent)).toEqual([a.id, b.id].sort());
        // Merge B into A: B's events move, B becomes a tombstone.
        await store.write(accountId, async (tx) => {
          await tx.moveEvents(accountId, [seqs[1]!, seqs[2]!], a.id);
          await tx.updateProfile(accountId, { ...b, mergedInto: a.id });
        });
        expect(await members(accountId, twice)).toEqual([a.id]);
        expect(await members(accountId, { didNot: "Charged" })).toEqual([]);
        // Undo: moved back, B live again; one event deleted and restored.
        await store.write(accountId, async (tx) => {
          await tx.moveEvents(accountId, [seqs[1]!, seqs[2]!], b.id);
          await tx.updateProfile(accountId, b);
        });
        expect(await members(accountId, twice)).toEqual([b.id]);
        const [old] = await store.write(accountId, (tx) => tx.listEventsBySeq(accountId, [seqs[2]!]));
        await store.write(accountId, (tx) => tx.deleteEvents(accountId, [seqs[2]!]));
        expect(await members(accountId, twice)).toEqual([]);
        await store.write(accountId, (tx) => tx.restoreEvents(accountId, [old!]));
        expect(await members(accountId, twice)).toEqual([b.id]);
        // The orphan's two purchases count for nobody; the orphan itself is never a member.
        expect(await members(accountId, { did: "Charged", count: { op: "eq", value: 2 } })).toEqual([b.id]);
        expect(await members(accountId, { not: { type: "customer" } })).toEqual([a.id, b.id].sort());
        await store.write(accountId, (tx) => tx.deleteProfileData(accountId, b.id));
        expect(await members(accountId, recent)).toEqual([a.id]);
      });

      it("streams members in batches and stops cleanly when the reader stops early", async () => {
        const accountId = await freshAccount();
        const states = Array.from({ length: 7 }, () => withCity(blankProfile(newId(), NOW), "Paris"));
        await store.write(accountId, async (tx) => {
          for (const s of states) await tx.insertProfile(accountId, s);
        });
        const c = where({ property: "City", op: "eq", value: "Paris" });
        const batches: string[][] = [];
        for await (const batch of store.segments.streamSegment(accountId, c, CTX, { batchSize: 3 })) {
          batches.push(batch.map((s) => s.id));
        }
        expect(batches.map((b) => b.length)).toEqual([3, 3, 1]);
        expect(batches.flat()).toEqual(states.map((s) => s.id).sort());
        for await (const batch of store.segments.streamSegment(accountId, c, CTX, { batchSize: 2 })) {
          expect(batch).toHaveLength(2);
          break;
        }
        // The store is still usable (no cursor, connection or lock left behind).
        await store.write(accountId, (tx) => tx.updateProfile(accountId, withCity(states[0]!, "Lyon")));
        expect(await store.segments.countSegment(accountId, c, CTX)).toBe(6);
      });
    });
  });
}
