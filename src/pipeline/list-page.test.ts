import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PortraitError } from "../engine/errors.js";
import { type ListPage, pageOfList } from "./list-page.js";

const keyOf = (item: [string, string]) => item;

function all(items: Array<[string, string]>, limit: number, between?: (page: number) => void) {
  const seen: Array<[string, string]> = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: ListPage<[string, string]> = pageOfList(items, keyOf, { cursor, limit: String(limit) }, "things");
    expect(page.items.length).toBeLessThanOrEqual(limit);
    seen.push(...page.items);
    cursor = page.nextCursor;
    between?.(++pages);
  } while (cursor);
  return seen;
}

const distinctPairs = fc.uniqueArray(fc.tuple(fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme" })), {
  selector: (p) => JSON.stringify(p),
  maxLength: 40,
});

describe("pageOfList", () => {
  it("gives every item once, in code-point order of its key parts, whatever the page size", () => {
    fc.assert(
      fc.property(distinctPairs, fc.integer({ min: 1, max: 12 }), (items, limit) => {
        const byCodePoint = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
        const sorted = [...items].sort((a, b) => byCodePoint(a[0], b[0]) || byCodePoint(a[1], b[1]));
        expect(all(items, limit)).toEqual(sorted);
      }),
    );
  });

  it("neither repeats nor skips an item that stays when others are added or removed between pages", () => {
    fc.assert(
      fc.property(distinctPairs, distinctPairs, fc.integer({ min: 1, max: 5 }), (items, added, limit) => {
        const list = [...items];
        const stay = new Set(items.filter((_, i) => i % 2 === 0).map((p) => JSON.stringify(p)));
        const seen = all(list, limit, (page) => {
          if (page !== 1) return;
          for (let i = list.length - 1; i >= 0; i--) if (!stay.has(JSON.stringify(list[i]))) list.splice(i, 1);
          for (const p of added) if (!list.some((q) => JSON.stringify(q) === JSON.stringify(p))) list.push(p);
        });
        const seenKeys = seen.map((p) => JSON.stringify(p));
        expect(new Set(seenKeys).size).toBe(seenKeys.length);
        for (const key of stay) expect(seenKeys).toContain(key);
      }),
    );
  });

  it("refuses a cursor of another list or one it never made, naming the field", () => {
    const other = pageOfList(
      [
        ["a", "1"],
        ["b", "2"],
      ],
      keyOf,
      { limit: 1 },
      "others",
    ).nextCursor;
    const madeUp = Buffer.from('["things","x","y","z"]').toString("base64url");
    for (const cursor of [other, "garbage", Buffer.from('["things", 3]').toString("base64url"), 42, madeUp]) {
      let refused: unknown = null;
      try {
        pageOfList([["a", "1"]], keyOf, { cursor }, "things");
      } catch (e) {
        refused = e;
      }
      expect(refused).toBeInstanceOf(PortraitError);
      expect(refused).toMatchObject({ code: "INVALID_VALUE", field: "cursor" });
    }
  });
});
