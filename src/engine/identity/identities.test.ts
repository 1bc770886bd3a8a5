/** Identity value limits: the newest `limit` values by ts are held; the rest are released (SEMANTICS §2, §7). */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { addIdentityValues, removeIdentityKey } from "./identities.js";

describe("addIdentityValues", () => {
  it("holds one value per key by default: a new Email replaces the old one, which is released", () => {
    const r = addIdentityValues(
      { Email: [{ value: "a@x.io", ts: 1 }] },
      [{ key: "Email", value: "b@x.io", ts: 2 }],
      {},
    );
    expect(r.identities).toEqual({ Email: [{ value: "b@x.io", ts: 2 }] });
    expect(r.released).toEqual([{ key: "Email", value: "a@x.io" }]);
    expect(r.added).toEqual([{ key: "Email", value: "b@x.io" }]);
  });

  it("an older value than the one held does not displace it under limit 1", () => {
    const r = addIdentityValues(
      { Email: [{ value: "new@x.io", ts: 10 }] },
      [{ key: "Email", value: "old@x.io", ts: 5 }],
      {},
    );
    expect(r.identities.Email?.map((x) => x.value)).toEqual(["new@x.io"]);
    expect(r.added).toEqual([]);
    expect(r.released).toEqual([]);
  });

  it("keeps up to the limit, oldest dropped first; re-sending a value refreshes its ts", () => {
    const limits = { Email: 3 };
    let ids = addIdentityValues(
      {},
      [1, 2, 3].map((i) => ({ key: "Email" as const, value: `e${i}@x.io`, ts: i })),
      limits,
    ).identities;
    ids = addIdentityValues(ids, [{ key: "Email", value: "e1@x.io", ts: 4 }], limits).identities;
    const r = addIdentityValues(ids, [{ key: "Email", value: "e5@x.io", ts: 5 }], limits);
    expect(r.identities.Email?.map((x) => x.value)).toEqual(["e3@x.io", "e1@x.io", "e5@x.io"]);
    expect(r.released).toEqual([{ key: "Email", value: "e2@x.io" }]);
  });

  it("a value re-sent at an older ts keeps its place, as its property keeps the newer write", () => {
    const limits = { Email: 2 };
    let ids = addIdentityValues({}, [{ key: "Email", value: "b0@x.io", ts: 3 }], limits).identities;
    ids = addIdentityValues(ids, [{ key: "Email", value: "b1@x.io", ts: 3 }], limits).identities;
    const older = addIdentityValues(ids, [{ key: "Email", value: "b0@x.io", ts: 0 }], limits);
    expect(older.identities.Email?.map((x) => x.value)).toEqual(["b0@x.io", "b1@x.io"]);
    expect(older.identities.Email?.[0]?.ts).toBe(3);
    const same = addIdentityValues(ids, [{ key: "Email", value: "b0@x.io", ts: 3 }], limits);
    expect(same.identities.Email?.map((x) => x.value)).toEqual(["b1@x.io", "b0@x.io"]);
  });

  it("law: the held values are exactly the newest `limit` distinct values by ts, whatever the arrival order", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 1000 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 1, max: 5 }),
        (stamps, limit) => {
          const additions = stamps.map((ts) => ({
            key: "Phone" as const,
            value: `+3361234${String(ts).padStart(4, "0")}`,
            ts,
          }));
          let ids = {};
          for (const a of additions) ids = addIdentityValues(ids, [a], { Phone: limit }).identities;
          const expected = [...stamps].sort((a, b) => a - b).slice(-limit);
          expect((ids as { Phone?: Array<{ ts: number }> }).Phone?.map((x) => x.ts)).toEqual(expected);
        },
      ),
    );
  });

  it("removeIdentityKey releases every value of the key", () => {
    const r = removeIdentityKey({ Email: [{ value: "a@x.io", ts: 1 }], Identity: [{ value: "u", ts: 1 }] }, "Email");
    expect(r.identities).toEqual({ Identity: [{ value: "u", ts: 1 }] });
    expect(r.released).toEqual([{ key: "Email", value: "a@x.io" }]);
  });
});
