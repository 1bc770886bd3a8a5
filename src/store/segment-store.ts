/**
 * The part of the Store that segments use (SEMANTICS §6, API.md Segments): evaluating a condition over an account's
 * profiles, and saved segments. Each adapter implements it in its `*-segments.ts` file, with the condition → SQL
 * compiler beside it in `*-segment-compiler.ts` (STYLE: a condition kind = its evaluator in engine/segment + its SQL
 * in each adapter's compiler).
 *
 * Contract for every read here:
 * - the result is exactly the set of profiles `isMember` (engine/segment/evaluate.ts) accepts for the same condition
 *   and context: no sampling, no approximation; orphans and merge tombstones are never members (SEMANTICS §5);
 * - conditions reach the database only as bound parameters (values, property paths, event names), never as SQL text;
 * - reads see committed data only.
 *
 * The condition is a parsed tree (engine/segment/parse.ts); `inSegment` nodes are expanded through `ctx.segment`,
 * which the caller resolves (and checks for cycles) beforehand.
 */
import type { Condition, Json } from "../engine/segment/condition.js";
import type { EvaluateContext } from "../engine/segment/evaluate.js";
import type { ProfileState } from "../engine/types.js";

/** A saved segment: its definition exactly as sent, evaluated fresh on every read. */
export interface SavedSegment {
  id: string;
  name: string;
  /** The `where` condition as the client sent it (grammar JSON). */
  where: Json;
  createdAt: number;
}

/** One page of members: profile ids in id order, and the id to continue after (null at the end). */
export interface SegmentPage {
  ids: string[];
  next: string | null;
}

export type InsertSegmentResult = { inserted: true } | { inserted: false; missing: string };
export type DeleteSegmentResult = { deleted: true } | { deleted: false; usedBy: string[] } | { deleted: false };

export interface SegmentStore {
  /** How many profiles are members (exact). */
  countSegment(accountId: string, condition: Condition, ctx: EvaluateContext): Promise<number>;
  /** Members in profile id order, `limit` at a time, after the id `after` (null: from the start). */
  querySegment(
    accountId: string,
    condition: Condition,
    ctx: EvaluateContext,
    page: { after: string | null; limit: number },
  ): Promise<SegmentPage>;
  /**
   * Every member's state in profile id order, in batches, read through one database cursor (one snapshot, nothing
   * but the current batch in memory): exports. Breaking out of the loop releases the cursor.
   */
  streamSegment(
    accountId: string,
    condition: Condition,
    ctx: EvaluateContext,
    opts?: { batchSize?: number },
  ): AsyncIterable<ProfileState[]>;

  /**
   * Saves a segment that uses the segments `refs` (its `inSegment` ids). Atomic with deletes: if one of `refs` does
   * not exist (or is deleted meanwhile) nothing is saved and the first missing id is returned.
   */
  insertSegment(accountId: string, segment: SavedSegment, refs: readonly string[]): Promise<InsertSegmentResult>;
  getSegment(accountId: string, id: string): Promise<SavedSegment | null>;
  /** Oldest first (created_at, then id); `after` is the last segment of the previous page. */
  listSegments(
    accountId: string,
    page: { after: { createdAt: number; id: string } | null; limit: number },
  ): Promise<SavedSegment[]>;
  /** Ids of the saved segments whose condition names `id` in an `inSegment`, in id order. */
  listSegmentsUsing(accountId: string, id: string): Promise<string[]>;
  /**
   * Deletes a segment unless another one uses it (then `usedBy` lists them and nothing changes); atomic with
   * inserts that would start using it. `{deleted: false}` alone: no such segment in the account.
   */
  deleteSegment(accountId: string, id: string): Promise<DeleteSegmentResult>;
}
