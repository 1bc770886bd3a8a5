/**
 * Paging (API.md Conventions): the page size every list takes, and the paging of the lists that are read whole (an
 * account's API and SFTP keys, a person's documents), so that they answer `nextCursor` like every list. The cursor
 * names the last item given by its key, not by its place: an item added or removed between two pages moves no other
 * item into or out of the next page.
 */
import { PortraitError } from "../engine/errors.js";

export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 1000;

/**
 * A page size: in a query string, decimal digits (not `0x10`, `1e2` or ` 2`, which Number() would read); in a JSON
 * body, a number.
 */
export function pageLimit(raw: unknown, field = "limit", from: "query" | "body" = "query"): number {
  if (raw === undefined || raw === null) return DEFAULT_PAGE;
  const n = from === "query" && typeof raw === "string" && /^[0-9]{1,9}$/.test(raw) ? Number(raw) : raw;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > MAX_PAGE) {
    throw new PortraitError("INVALID_VALUE", `${field} must be a whole number from 1 to ${MAX_PAGE}`, field);
  }
  return n;
}

export interface ListPage<T> {
  items: T[];
  nextCursor: string | null;
}

/**
 * The page of `items` after `query.cursor`, at most `query.limit` long. Items are ordered by `keyOf`, compared part
 * by part in code-point order (the order the stores sort text in), whatever order they came in.
 */
export function pageOfList<T>(
  items: readonly T[],
  keyOf: (item: T) => string[],
  query: { cursor?: unknown; limit?: unknown },
  list: string,
): ListPage<T> {
  const limit = pageLimit(query.limit);
  const after = decodeListCursor(query.cursor, list);
  // A key of another shape is no cursor this list gave (a made-up one would page from anywhere).
  const sample = items[0];
  if (after !== null && sample !== undefined && after.length !== keyOf(sample).length) throw notACursor();
  const keyed = items.map((item) => ({ item, key: keyOf(item) }));
  keyed.sort((a, b) => compareKeys(a.key, b.key));
  const start = after === null ? 0 : keyed.findIndex((k) => compareKeys(k.key, after) > 0);
  const rest = start < 0 ? [] : keyed.slice(start);
  const page = rest.slice(0, limit);
  const last = page[page.length - 1];
  return {
    items: page.map((k) => k.item),
    nextCursor: rest.length > limit && last ? encodeListCursor(list, last.key) : null,
  };
}

function compareKeys(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = Buffer.compare(Buffer.from(a[i]!), Buffer.from(b[i]!));
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

function encodeListCursor(list: string, key: string[]): string {
  return Buffer.from(JSON.stringify([list, ...key])).toString("base64url");
}

/** The key a cursor of `list` names, or null for the first page; a cursor of another list is refused. */
function decodeListCursor(raw: unknown, list: string): string[] | null {
  if (raw === undefined || raw === null || raw === "") return null;
  let parts: unknown = null;
  if (typeof raw === "string") {
    try {
      parts = JSON.parse(Buffer.from(raw, "base64url").toString());
    } catch {
      parts = null;
    }
  }
  if (
    !Array.isArray(parts) ||
    parts.length < 2 ||
    parts[0] !== list ||
    !parts.every((p): p is string => typeof p === "string")
  ) {
    throw notACursor();
  }
  return parts.slice(1);
}

function notACursor(): PortraitError {
  return new PortraitError("INVALID_VALUE", "cursor is not one this list returned", "cursor");
}

/** Rows of a list kept oldest first (an account's keys): paged by creation time, then id. */
export function pageByCreation<T extends { createdAt: number; id: string }>(
  rows: readonly T[],
  query: { cursor?: unknown; limit?: unknown },
  list: string,
): ListPage<T> {
  // The time as text that sorts in time order.
  return pageOfList(rows, (r) => [String(r.createdAt).padStart(16, "0"), r.id], query, list);
}
