import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PortraitError } from "../errors.js";
import type { PropertyOp } from "../records.js";
import type { PropertyEntry, StoredValue, ValueType } from "../types.js";
import { applyPropertyOps, mergeProperties, type TypeLookup } from "./apply.js";

type Props = Record<string, PropertyEntry>;

const none: TypeLookup = { get: () => undefined };
const registered = (types: Record<string, ValueType>): TypeLookup => ({
  get: (path) => (Object.hasOwn(types, path) ? types[path] : undefined),
});

function typeOf(value: StoredValue): ValueType {
  if (Array.isArray(value)) return "multi";
  if (typeof value === "object") return "object";
  return typeof value as ValueType;
}

const set = (key: string, value: StoredValue, type: ValueType = typeOf(value)): PropertyOp => ({
  kind: "set",
  key,
  value,
  type,
});
const setOnce = (key: string, value: StoredValue, type: ValueType = typeOf(value)): PropertyOp => ({
  kind: "setOnce",
  key,
  value,
  type,
});
const incr = (key: string, by: number): PropertyOp => ({ kind: "incr", key, by });
const add = (key: string, ...values: string[]): PropertyOp => ({ kind: "add", key, values });
const remove = (key: string, ...values: string[]): PropertyOp => ({ kind: "remove", key, values });
const setMulti = (key: string, ...values: string[]): PropertyOp => ({ kind: "setMulti", key, values });
const del = (key: string): PropertyOp => ({ kind: "delete", key });

function apply(props: Props, ops: PropertyOp[], ts: number, types: TypeLookup = none) {
  return applyPropertyOps(props, ops, ts, types);
}

function errorOf(fn: () => unknown): PortraitError {
  try {
    fn();
  } catch (e) {
    if (e instanceof PortraitError) return e;
    throw e;
  }
  throw new Error("expected a PortraitError, nothing was thrown");
}

function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null) {
    for (const inner of Object.values(v)) deepFreeze(inner);
    Object.freeze(v);
  }
  return v;
}

describe("plain set", () => {
  it("creates an entry and registers the type of an unregistered key", () => {
    const r = apply({}, [set("Plan", "pro")], 100);
    expect(r.props).toEqual({ Plan: { v: "pro", t: "string", ts: 100 } });
    expect(r.registrations).toEqual([{ path: "Plan", type: "string" }]);
  });

  it("registers nothing for a registered key", () => {
    expect(apply({}, [set("Plan", "pro")], 100, registered({ Plan: "string" })).registrations).toEqual([]);
  });

  it("applies iff ts >= the stored ts; a tie goes to the later arrival", () => {
    const props: Props = { Plan: { v: "old", t: "string", ts: 100 } };
    expect(apply(props, [set("Plan", "stale")], 99).props.Plan).toEqual({ v: "old", t: "string", ts: 100 });
    expect(apply(props, [set("Plan", "tie")], 100).props.Plan).toEqual({ v: "tie", t: "string", ts: 100 });
    expect(apply(props, [set("Plan", "new")], 101).props.Plan).toEqual({ v: "new", t: "string", ts: 101 });
  });

  it("clears the counter mark", () => {
    const props: Props = { Points: { v: 5, t: "number", ts: 100, counter: true } };
    expect(apply(props, [set("Points", 1)], 200).props.Points).toEqual({ v: 1, t: "number", ts: 200 });
  });

  it("stores dates and multi-values; an empty multi-value is no value", () => {
    const r = apply({}, [set("Signup", 1_732_000_000_000, "date"), set("Tags", ["a", "b"]), set("None", [])], 100);
    expect(r.props).toEqual({
      Signup: { v: 1_732_000_000_000, t: "date", ts: 100 },
      Tags: { v: ["a", "b"], t: "multi", ts: 100 },
      None: { ts: 100 },
    });
    expect(r.registrations).toContainEqual({ path: "None", type: "multi" });
  });

  it("does not share arrays with the operation", () => {
    const op = set("Tags", ["a"]);
    const r = apply({}, [op], 100);
    (op as { value: string[] }).value.push("b");
    expect(r.props.Tags?.v).toEqual(["a"]);
  });
});

describe("types", () => {
  it("refuses a value of another type than the registered one, naming key, expected and given", () => {
    const e = errorOf(() => apply({}, [set("Points", "ten")], 100, registered({ Points: "number" })));
    expect(e.code).toBe("TYPE_MISMATCH");
    expect(e.field).toBe("Points");
    expect(e.message).toContain('"Points"');
    expect(e.message).toContain("number");
    expect(e.message).toContain("string");
    expect(e.message).toContain('"ten"');
  });

  it("refuses a value of another type than an earlier op of the same set registered", () => {
    const e = errorOf(() => apply({}, [set("X", "a"), set("X", 1)], 100));
    expect(e.code).toBe("TYPE_MISMATCH");
    expect(e.field).toBe("X");
  });

  it("checks types even when ordering ignores the value", () => {
    const props: Props = { Points: { v: 1, t: "number", ts: 500 } };
    expect(errorOf(() => apply(props, [set("Points", "x")], 1, registered({ Points: "number" }))).code).toBe(
      "TYPE_MISMATCH",
    );
    expect(errorOf(() => apply(props, [setOnce("Points", "x")], 1, registered({ Points: "number" }))).code).toBe(
      "TYPE_MISMATCH",
    );
  });

  it("uses the built-in types of system properties and registers them once", () => {
    expect(errorOf(() => apply({}, [set("Name", 5)], 100)).code).toBe("TYPE_MISMATCH");
    expect(errorOf(() => apply({}, [set("MSG-email", "yes")], 100)).code).toBe("TYPE_MISMATCH");
    expect(apply({}, [set("Name", "Ana")], 100).registrations).toEqual([{ path: "Name", type: "string" }]);
    expect(apply({}, [set("DOB", "1997-08-14", "date")], 100).props.DOB).toEqual({
      v: "1997-08-14",
      t: "date",
      ts: 100,
    });
  });

  it("registers an object's inner paths: inner objects as object, leaves with their type", () => {
    const r = apply({}, [set("Address", { city: "Paris", geo: { lat: 1.5, ok: true } })], 100);
    expect(r.registrations).toEqual([
      { path: "Address", type: "object" },
      { path: "Address.city", type: "string" },
      { path: "Address.geo", type: "object" },
      { path: "Address.geo.lat", type: "number" },
      { path: "Address.geo.ok", type: "boolean" },
    ]);
  });

  it("refuses an object whose leaf has another type than registered", () => {
    const types = registered({ Address: "object", "Address.zip": "number" });
    const e = errorOf(() => apply({}, [set("Address", { zip: "75001" })], 100, types));
    expect(e.code).toBe("TYPE_MISMATCH");
    expect(e.field).toBe("Address.zip");
    expect(e.message).toContain("number");
    expect(errorOf(() => apply({}, [set("A", { b: 1 }), set("A", { b: { c: 1 } })], 100)).field).toBe("A.b");
  });

  it("refuses an object where a scalar is registered and the reverse", () => {
    expect(errorOf(() => apply({}, [set("A", { b: 1 })], 100, registered({ A: "string" }))).field).toBe("A");
    expect(errorOf(() => apply({}, [set("A", "x")], 100, registered({ A: "object" }))).field).toBe("A");
  });
});

describe("$delete", () => {
  it("leaves a tombstone when ts >= the stored ts", () => {
    const props: Props = { Plan: { v: "pro", t: "string", ts: 100 } };
    expect(apply(props, [del("Plan")], 100).props.Plan).toEqual({ ts: 100 });
    expect(apply(props, [del("Plan")], 150).props.Plan).toEqual({ ts: 150 });
    expect(apply(props, [del("Plan")], 99).props.Plan).toEqual({ v: "pro", t: "string", ts: 100 });
  });

  it("leaves a tombstone for a key that never existed, so an older set arriving later stays ignored", () => {
    const r1 = apply({}, [del("Plan")], 200);
    expect(r1.props).toEqual({ Plan: { ts: 200 } });
    expect(r1.registrations).toEqual([]);
    expect(apply(r1.props, [set("Plan", "stale")], 150).props.Plan).toEqual({ ts: 200 });
    expect(apply(r1.props, [set("Plan", "newer")], 250).props.Plan).toEqual({ v: "newer", t: "string", ts: 250 });
  });
});

describe("$setOnce", () => {
  it("applies to an absent key and takes the record ts", () => {
    expect(apply({}, [setOnce("First", "web")], 100).props.First).toEqual({ v: "web", t: "string", ts: 100 });
  });

  it("never changes a key that has a value, whatever the ts", () => {
    const props: Props = { First: { v: "web", t: "string", ts: 100 } };
    expect(apply(props, [setOnce("First", "ios")], 500).props.First).toBe(props.First);
    expect(apply(props, [setOnce("First", "ios")], 1).props.First).toBe(props.First);
  });

  it("applies to a tombstone, even an older record, keeping the newer of the two ts", () => {
    const props: Props = { First: { ts: 300 } };
    const revived = apply(props, [setOnce("First", "ios")], 100).props;
    expect(revived.First).toEqual({ v: "ios", t: "string", ts: 300 });
    // A set older than the delete stays out, as it would have without the $setOnce.
    expect(apply(revived, [set("First", "stale")], 200).props.First?.v).toBe("ios");
    expect(apply(props, [setOnce("First", "ios")], 400).props.First).toEqual({ v: "ios", t: "string", ts: 400 });
  });

  it("clears the counter mark of a revived key", () => {
    expect(apply({ N: { ts: 5 } }, [setOnce("N", 3)], 10).props.N).toEqual({ v: 3, t: "number", ts: 10 });
  });
});

describe("$set (multi)", () => {
  it("replaces the set with last-writer-wins", () => {
    const props: Props = { Tags: { v: ["a"], t: "multi", ts: 100 } };
    expect(apply(props, [setMulti("Tags", "x", "y")], 100).props.Tags).toEqual({ v: ["x", "y"], t: "multi", ts: 100 });
    expect(apply(props, [setMulti("Tags", "x")], 99).props.Tags).toBe(props.Tags);
    expect(apply(props, [setMulti("Tags")], 101).props.Tags).toEqual({ ts: 101 });
  });

  it("registers multi, refuses a string key", () => {
    expect(apply({}, [setMulti("Tags", "a")], 1).registrations).toEqual([{ path: "Tags", type: "multi" }]);
    expect(errorOf(() => apply({}, [setMulti("Tags", "a")], 1, registered({ Tags: "string" }))).code).toBe(
      "TYPE_MISMATCH",
    );
  });
});

describe("$incr / $decr", () => {
  it("creates an absent key at 0 + n with the record ts, marked as a counter", () => {
    const r = apply({}, [incr("Points", 10)], 100);
    expect(r.props.Points).toEqual({ v: 10, t: "number", ts: 100, counter: true });
    expect(r.registrations).toEqual([{ path: "Points", type: "number" }]);
  });

  it("always applies and keeps the stored ts", () => {
    const props: Props = { Points: { v: 5, t: "number", ts: 100 } };
    expect(apply(props, [incr("Points", 3)], 50).props.Points).toEqual({ v: 8, t: "number", ts: 100, counter: true });
    expect(apply(props, [incr("Points", -8)], 900).props.Points).toEqual({
      v: -3,
      t: "number",
      ts: 100,
      counter: true,
    });
  });

  it("counts a tombstone as 0 and keeps its ts", () => {
    expect(apply({ Points: { ts: 300 } }, [incr("Points", 2)], 100).props.Points).toEqual({
      v: 2,
      t: "number",
      ts: 300,
      counter: true,
    });
  });

  it("treats 0 as no change", () => {
    const props: Props = { Points: { v: 5, t: "number", ts: 100 } };
    expect(apply(props, [incr("Points", 0)], 200).props.Points).toBe(props.Points);
    const r = apply({}, [incr("Points", 0)], 200);
    expect(r.props).toEqual({});
    expect(r.registrations).toEqual([]);
    expect(errorOf(() => apply({}, [incr("Plan", 0)], 1, registered({ Plan: "string" }))).code).toBe("TYPE_MISMATCH");
  });

  it("needs a numeric or absent key", () => {
    const e = errorOf(() => apply({ Plan: { v: "pro", t: "string", ts: 1 } }, [incr("Plan", 1)], 2));
    expect(e.code).toBe("TYPE_MISMATCH");
    expect(e.field).toBe("Plan");
    expect(e.message).toContain("number");
    expect(errorOf(() => apply({}, [incr("Plan", 1)], 2, registered({ Plan: "string" }))).code).toBe("TYPE_MISMATCH");
    expect(errorOf(() => apply({}, [incr("Name", 1)], 2)).code).toBe("TYPE_MISMATCH");
  });

  it("refuses a result that is not finite", () => {
    const props: Props = { Big: { v: Number.MAX_VALUE, t: "number", ts: 1 } };
    const e = errorOf(() => apply(props, [incr("Big", Number.MAX_VALUE)], 2));
    expect(e.code).toBe("INVALID_OPERATION");
    expect(e.field).toBe("Big");
  });
});

describe("$add", () => {
  it("creates a set on an absent key with the record ts", () => {
    const r = apply({}, [add("Tags", "a", "b")], 100);
    expect(r.props.Tags).toEqual({ v: ["a", "b"], t: "multi", ts: 100 });
    expect(r.registrations).toEqual([{ path: "Tags", type: "multi" }]);
  });

  it("unions in insertion order and keeps the stored ts", () => {
    const props: Props = { Tags: { v: ["a", "b"], t: "multi", ts: 100 } };
    expect(apply(props, [add("Tags", "c", "a", "d")], 50).props.Tags).toEqual({
      v: ["a", "b", "c", "d"],
      t: "multi",
      ts: 100,
    });
  });

  it("changes nothing when every value is already there", () => {
    const props: Props = { Tags: { v: ["a", "b"], t: "multi", ts: 100 } };
    expect(apply(props, [add("Tags", "b")], 500).props.Tags).toBe(props.Tags);
    expect(apply({}, [add("Tags")], 1)).toEqual({ props: {}, registrations: [] });
  });

  it("turns a string key into a multi-value, the one allowed type change", () => {
    const props: Props = { Color: { v: "red", t: "string", ts: 100 } };
    const r = apply(props, [add("Color", "blue", "red")], 50, registered({ Color: "string" }));
    expect(r.props.Color).toEqual({ v: ["red", "blue"], t: "multi", ts: 100 });
    expect(r.registrations).toEqual([{ path: "Color", type: "multi", change: true }]);
    // A string key changed elsewhere: registered multi, this profile still holds a string.
    expect(apply(props, [add("Color", "blue")], 50, registered({ Color: "multi" })).props.Color).toEqual({
      v: ["red", "blue"],
      t: "multi",
      ts: 100,
    });
  });

  it("after the change, a plain string set in the same record is a mismatch", () => {
    const e = errorOf(() => apply({}, [add("Color", "x"), set("Color", "y")], 1, registered({ Color: "string" })));
    expect(e.code).toBe("TYPE_MISMATCH");
  });

  it("refuses other types, and system properties", () => {
    const e = errorOf(() => apply({}, [add("Points", "x")], 1, registered({ Points: "number" })));
    expect(e.code).toBe("TYPE_MISMATCH");
    expect(e.field).toBe("Points");
    expect(e.message).toContain("multi");
    expect(errorOf(() => apply({ N: { v: 1, t: "number", ts: 1 } }, [add("N", "x")], 1)).code).toBe("TYPE_MISMATCH");
    expect(errorOf(() => apply({}, [add("Name", "x")], 1)).code).toBe("TYPE_MISMATCH");
  });

  it("allows at most 100 values", () => {
    const hundred = Array.from({ length: 100 }, (_, i) => `t${i}`);
    const props: Props = { Tags: { v: hundred.slice(0, 99), t: "multi", ts: 1 } };
    expect(apply(props, [add("Tags", "t99")], 2).props.Tags?.v).toHaveLength(100);
    const e = errorOf(() => apply(props, [add("Tags", "t99", "t100")], 2));
    expect(e.code).toBe("TOO_MANY_VALUES");
    expect(e.field).toBe("Tags");
    expect(e.message).toContain("100");
  });

  it("revives a tombstone keeping its ts", () => {
    expect(apply({ Tags: { ts: 300 } }, [add("Tags", "a")], 100).props.Tags).toEqual({ v: ["a"], t: "multi", ts: 300 });
  });
});

describe("$remove", () => {
  it("removes elements and keeps the stored ts", () => {
    const props: Props = { Tags: { v: ["a", "b", "c"], t: "multi", ts: 100 } };
    expect(apply(props, [remove("Tags", "b", "z")], 900).props.Tags).toEqual({ v: ["a", "c"], t: "multi", ts: 100 });
    expect(apply(props, [remove("Tags", "z")], 900).props.Tags).toBe(props.Tags);
  });

  it("an emptied set removes the key, leaving a tombstone with the old ts", () => {
    const props: Props = { Tags: { v: ["a", "b"], t: "multi", ts: 100 } };
    expect(apply(props, [remove("Tags", "a", "b")], 900).props.Tags).toEqual({ ts: 100 });
  });

  it("does nothing on an absent key or a tombstone, and registers nothing", () => {
    expect(apply({}, [remove("Tags", "a")], 1)).toEqual({ props: {}, registrations: [] });
    const props: Props = { Tags: { ts: 5 } };
    expect(apply(props, [remove("Tags", "a")], 1).props.Tags).toBe(props.Tags);
  });

  it("removes a string value equal to one of the values", () => {
    const props: Props = { Color: { v: "red", t: "string", ts: 100 } };
    expect(apply(props, [remove("Color", "red")], 1, registered({ Color: "string" })).props.Color).toEqual({ ts: 100 });
    expect(apply(props, [remove("Color", "blue")], 1, registered({ Color: "string" })).props.Color).toBe(props.Color);
  });

  it("refuses other types", () => {
    expect(errorOf(() => apply({}, [remove("Points", "1")], 1, registered({ Points: "number" }))).code).toBe(
      "TYPE_MISMATCH",
    );
    expect(errorOf(() => apply({ N: { v: 1, t: "number", ts: 1 } }, [remove("N", "1")], 1)).field).toBe("N");
  });
});

describe("the custom key limit", () => {
  const full = (n: number): Props =>
    Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, { v: i, t: "number", ts: 1 }]));

  it("allows 256 custom keys with values and refuses the 257th, naming it", () => {
    expect(Object.keys(apply(full(255), [set("new1", 1)], 2).props)).toHaveLength(256);
    const e = errorOf(() => apply(full(255), [set("k0", 5), set("new1", 1), set("new2", 2)], 2));
    expect(e.code).toBe("TOO_MANY_PROPERTIES");
    expect(e.field).toBe("new2");
    expect(e.message).toContain("256");
  });

  it("does not count system properties or tombstones", () => {
    const props: Props = { ...full(256), Name: { v: "Ana", t: "string", ts: 1 }, gone: { ts: 1 } };
    expect(apply(props, [set("Email", "a@x.io"), set("k3", 9), del("k4"), set("k5", 1)], 2).props.Email?.v).toBe(
      "a@x.io",
    );
    expect(errorOf(() => apply(props, [set("gone", 1)], 2)).code).toBe("TOO_MANY_PROPERTIES");
    // Deleting one makes room for another in the same record.
    expect(apply(props, [del("k0"), set("gone", 1)], 2).props.gone?.v).toBe(1);
  });

  it("still lets a profile above the limit (after a merge) be written, without growing", () => {
    const props = full(300);
    expect(apply(props, [set("k1", 7)], 2).props.k1?.v).toBe(7);
    expect(errorOf(() => apply(props, [set("extra", 1)], 2)).field).toBe("extra");
  });
});

describe("purity", () => {
  it("never mutates its input and shares unchanged entries", () => {
    const props = deepFreeze<Props>({
      Plan: { v: "pro", t: "string", ts: 100 },
      Tags: { v: ["a"], t: "multi", ts: 100 },
      Points: { v: 1, t: "number", ts: 100, counter: true },
    });
    const r = apply(props, [add("Tags", "b"), incr("Points", 1), remove("Tags", "a"), del("Gone")], 200);
    expect(r.props).not.toBe(props);
    expect(r.props.Plan).toBe(props.Plan);
    expect(r.props.Tags).toEqual({ v: ["b"], t: "multi", ts: 100 });
    expect(props.Tags).toEqual({ v: ["a"], t: "multi", ts: 100 });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Laws

const key = fc.constantFrom("a", "b", "c", "d");
const smallTs = fc.integer({ min: 1, max: 12 });

const entry: fc.Arbitrary<PropertyEntry> = fc.oneof(
  fc
    .record({ v: fc.integer({ min: -1000, max: 1000 }), ts: smallTs, counter: fc.boolean() })
    .map(({ v, ts, counter }): PropertyEntry => (counter ? { v, t: "number", ts, counter } : { v, t: "number", ts })),
  fc
    .record({ v: fc.string({ maxLength: 4 }), ts: smallTs })
    .map(({ v, ts }): PropertyEntry => ({ v, t: "string", ts })),
  fc
    .record({ v: fc.uniqueArray(fc.string({ maxLength: 2 }), { minLength: 1, maxLength: 5 }), ts: smallTs })
    .map(({ v, ts }): PropertyEntry => ({ v, t: "multi", ts })),
  smallTs.map((ts): PropertyEntry => ({ ts })),
);
const props = fc.dictionary(key, entry, { maxKeys: 4 });

const anyOp: fc.Arbitrary<PropertyOp> = fc.oneof(
  fc.tuple(key, fc.integer()).map(([k, v]) => set(k, v)),
  fc.tuple(key, fc.string({ maxLength: 3 })).map(([k, v]) => set(k, v)),
  fc.tuple(key, fc.integer()).map(([k, v]) => set(k, { x: v, y: { z: "s" } })),
  fc.tuple(key, fc.integer()).map(([k, v]) => setOnce(k, v)),
  fc.tuple(key, fc.integer({ min: -50, max: 50 })).map(([k, v]) => incr(k, v)),
  fc.tuple(key, fc.array(fc.string({ maxLength: 2 }), { maxLength: 3 })).map(([k, v]) => add(k, ...new Set(v))),
  fc.tuple(key, fc.array(fc.string({ maxLength: 2 }), { maxLength: 3 })).map(([k, v]) => remove(k, ...new Set(v))),
  fc.tuple(key, fc.array(fc.string({ maxLength: 2 }), { maxLength: 3 })).map(([k, v]) => setMulti(k, ...new Set(v))),
  key.map((k) => del(k)),
);

function fold(records: Array<{ ops: PropertyOp[]; ts: number }>, start: Props = {}, types: TypeLookup = none): Props {
  let p = start;
  for (const r of records) p = apply(p, r.ops, r.ts, types).props;
  return p;
}

describe("laws (property-based)", () => {
  it("(a) last-writer-wins: any arrival order gives what ts order (ties by arrival) gives", () => {
    const plainSet = fc.oneof(
      fc.tuple(key, fc.integer({ min: 0, max: 9 })).map(([k, v]) => set(k, v)),
      key.map((k) => del(k)),
    );
    const record = fc.record({ ops: fc.array(plainSet, { minLength: 1, maxLength: 3 }), ts: smallTs });
    const numbers = registered({ a: "number", b: "number", c: "number", d: "number" });
    fc.assert(
      fc.property(fc.array(record, { maxLength: 12 }), (arrival) => {
        const sorted = [...arrival].sort((x, y) => x.ts - y.ts); // stable: ties keep arrival order
        const got = fold(arrival, {}, numbers);
        expect(got).toEqual(fold(sorted, {}, numbers));
        // And the model: per key, the last op among the records with the greatest ts.
        for (const k of ["a", "b", "c", "d"]) {
          let best: { ts: number; op: PropertyOp } | undefined;
          for (const r of arrival)
            for (const op of r.ops) if (op.key === k && (!best || r.ts >= best.ts)) best = { ts: r.ts, op };
          if (!best) expect(got[k]).toBeUndefined();
          else if (best.op.kind === "delete") expect(got[k]).toEqual({ ts: best.ts });
          else expect(got[k]).toEqual({ v: (best.op as { value: number }).value, t: "number", ts: best.ts });
        }
      }),
    );
  });

  it("(b) $incr/$decr commute: every permutation gives the same sum", () => {
    const step = fc.record({ key, by: fc.integer({ min: -1000, max: 1000 }), ts: smallTs });
    const start: Props = { a: { v: 7, t: "number", ts: 3 } };
    fc.assert(
      fc.property(
        fc
          .array(step, { maxLength: 15 })
          .chain((steps) =>
            fc.tuple(
              fc.constant(steps),
              fc.shuffledSubarray(steps, { minLength: steps.length, maxLength: steps.length }),
            ),
          ),
        ([steps, permuted]) => {
          const run = (xs: typeof steps) =>
            fold(
              xs.map((s) => ({ ops: [incr(s.key, s.by)], ts: s.ts })),
              start,
            );
          const x = run(steps);
          const y = run(permuted);
          for (const k of ["a", "b", "c", "d"]) {
            const expected = (k === "a" ? 7 : 0) + steps.filter((s) => s.key === k).reduce((sum, s) => sum + s.by, 0);
            const touched = steps.some((s) => s.key === k && s.by !== 0);
            expect(x[k]?.v).toBe(y[k]?.v);
            expect(x[k]?.counter).toBe(y[k]?.counter);
            if (k === "a" || touched) expect(x[k]?.v).toBe(expected);
            else expect(x[k]).toBeUndefined();
          }
          // The ts of a key that existed before is never moved.
          expect(x.a?.ts).toBe(3);
          expect(y.a?.ts).toBe(3);
        },
      ),
    );
  });

  it("(c) never mutates its input", () => {
    const types = fc.dictionary(key, fc.constantFrom<ValueType>("number", "string", "multi", "object"), { maxKeys: 4 });
    fc.assert(
      fc.property(props, fc.array(anyOp, { maxLength: 6 }), smallTs, types, (before, ops, ts, t) => {
        const snapshot = structuredClone(before);
        const opsSnapshot = structuredClone(ops);
        deepFreeze(before);
        deepFreeze(ops);
        try {
          const r = apply(before, ops, ts, registered(t));
          expect(r.props).not.toBe(before);
        } catch (e) {
          expect(e).toBeInstanceOf(PortraitError);
        }
        expect(before).toEqual(snapshot);
        expect(ops).toEqual(opsSnapshot);
      }),
    );
  });

  it("(d) $setOnce after a value never changes it", () => {
    fc.assert(
      fc.property(
        fc.integer(),
        smallTs,
        fc.array(fc.record({ v: fc.integer(), ts: fc.integer({ min: -5, max: 50 }) }), { maxLength: 10 }),
        (v0, ts0, tries) => {
          const start: Props = { a: { v: v0, t: "number", ts: ts0 } };
          const after = fold(
            tries.map((t) => ({ ops: [setOnce("a", t.v)], ts: t.ts })),
            start,
            registered({ a: "number" }),
          );
          expect(after.a).toEqual({ v: v0, t: "number", ts: ts0 });
        },
      ),
    );
  });

  it("(e) mergeProperties is deterministic and keeps each key's max-ts entry (sums counters, unions sets)", () => {
    fc.assert(
      fc.property(props, props, (target, source) => {
        const t0 = structuredClone(target);
        const s0 = structuredClone(source);
        const merged = mergeProperties(target, source);
        expect(mergeProperties(structuredClone(target), structuredClone(source))).toEqual(merged);
        expect(target).toEqual(t0);
        expect(source).toEqual(s0);
        expect(new Set(Object.keys(merged))).toEqual(new Set([...Object.keys(target), ...Object.keys(source)]));
        for (const [k, m] of Object.entries(merged)) {
          const t = target[k];
          const s = source[k];
          if (!t) expect(m).toBe(s);
          else if (!s) expect(m).toBe(t);
          else if (t.counter && s.counter) {
            expect(m).toEqual({
              v: (t.v as number) + (s.v as number),
              t: "number",
              ts: Math.max(t.ts, s.ts),
              counter: true,
            });
          } else if (Array.isArray(t.v) && Array.isArray(s.v)) {
            expect(m).toEqual({ v: [...new Set([...t.v, ...s.v])], t: "multi", ts: Math.max(t.ts, s.ts) });
          } else {
            expect(m).toBe(s.ts > t.ts ? s : t);
          }
        }
      }),
    );
  });
});

describe("mergeProperties", () => {
  it("keeps the newer entry per key, the target's on a tie, tombstones included", () => {
    const target: Props = {
      a: { v: "t", t: "string", ts: 10 },
      b: { v: "t", t: "string", ts: 10 },
      c: { ts: 30 },
      d: { v: 1, t: "number", ts: 10 },
    };
    const source: Props = {
      a: { v: "s", t: "string", ts: 20 },
      b: { v: "s", t: "string", ts: 10 },
      c: { v: "s", t: "string", ts: 20 },
      e: { v: true, t: "boolean", ts: 1 },
    };
    expect(mergeProperties(target, source)).toEqual({
      a: { v: "s", t: "string", ts: 20 },
      b: { v: "t", t: "string", ts: 10 },
      c: { ts: 30 },
      d: { v: 1, t: "number", ts: 10 },
      e: { v: true, t: "boolean", ts: 1 },
    });
  });

  it("sums keys both sides last changed by $incr/$decr, else last-writer-wins", () => {
    const merged = mergeProperties(
      { p: { v: 5, t: "number", ts: 10, counter: true }, q: { v: 5, t: "number", ts: 10, counter: true } },
      { p: { v: 3, t: "number", ts: 20, counter: true }, q: { v: 3, t: "number", ts: 20 } },
    );
    expect(merged.p).toEqual({ v: 8, t: "number", ts: 20, counter: true });
    expect(merged.q).toEqual({ v: 3, t: "number", ts: 20 });
  });

  it("unions multi-values, the target's order first, beyond 100 if need be", () => {
    expect(
      mergeProperties({ m: { v: ["b", "a"], t: "multi", ts: 5 } }, { m: { v: ["c", "a"], t: "multi", ts: 1 } }).m,
    ).toEqual({ v: ["b", "a", "c"], t: "multi", ts: 5 });
    const big = (p: string) => Array.from({ length: 80 }, (_, i) => `${p}${i}`);
    const merged = mergeProperties(
      { m: { v: big("t"), t: "multi", ts: 1 } },
      { m: { v: big("s"), t: "multi", ts: 1 } },
    );
    expect(merged.m?.v).toHaveLength(160);
  });
});
