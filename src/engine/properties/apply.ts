/**
 * Applying property operations to a profile's properties, and merging two profiles' properties
 * (SEMANTICS §4 "Ordering", §7). Pure: inputs are never mutated; unchanged entries are shared with the result.
 */
import { fail, show } from "../errors.js";
import type { PropertyOp } from "../records.js";
import type { JsonValue, PropertyEntry, StoredValue, ValueType } from "../types.js";
import { MAX_CUSTOM_KEYS, own } from "./keys.js";
import { isSystemProperty, MAX_MULTI_VALUES, SYSTEM_PROPERTY_TYPES } from "./parse.js";

/** The account's registered profile property types, by path (`Points`, `address.city`). */
export interface TypeLookup {
  get(path: string): ValueType | undefined;
}

/** A type the caller must register; `change: true` is the one allowed change, string → multi by `$add`. */
export interface TypeRegistration {
  path: string;
  type: ValueType;
  change?: boolean;
}

export interface AppliedOps {
  props: Record<string, PropertyEntry>;
  registrations: TypeRegistration[];
}

/**
 * Applies one record's operations (in order) at record time `ts` (epoch ms). SEMANTICS §4 "Ordering":
 * - set / `$set` / `$delete` apply iff `ts` ≥ the stored ts (a tie: this later arrival wins); `$delete` leaves a
 *   tombstone `{ts}`, also for a key that never existed, so an older set arriving later stays ignored;
 * - `$setOnce` applies iff the key has no value (absent or tombstone), and then takes `ts` (a tombstone's ts when newer);
 * - `$incr`/`$decr`/`$add`/`$remove` always apply and keep the stored ts (a key they create gets `ts`, a key they
 *   revive from a tombstone keeps the tombstone's ts);
 * - every value is type-checked against the registered type (or the one an earlier op of this set registered),
 *   also when ordering then ignores it; unregistered paths are returned as registrations.
 */
export function applyPropertyOps(
  props: Readonly<Record<string, PropertyEntry>>,
  ops: readonly PropertyOp[],
  ts: number,
  types: TypeLookup,
): AppliedOps {
  const out: Record<string, PropertyEntry> = { ...props };
  const registry = new PendingTypes(types);
  for (const op of ops) {
    applyOne(out, op, ts, registry);
  }
  checkCustomKeyCount(props, out, ops);
  return { props: out, registrations: registry.registrations };
}

function applyOne(out: Record<string, PropertyEntry>, op: PropertyOp, ts: number, registry: PendingTypes): void {
  const { key } = op;
  const cur = own(out, key);
  switch (op.kind) {
    case "set":
    case "setOnce": {
      registry.check(key, op.type, op.value);
      if (op.type === "object") registry.checkLeaves(key, op.value as { [key: string]: JsonValue });
      const applies = op.kind === "set" ? cur === undefined || ts >= cur.ts : cur?.v === undefined;
      // `$setOnce` on a tombstone keeps the delete's ts when that is newer: a set older than the delete must stay out.
      if (applies) out[key] = valueEntry(op.value, op.type, op.kind === "setOnce" ? Math.max(ts, cur?.ts ?? ts) : ts);
      return;
    }
    case "setMulti":
      registry.check(key, "multi", op.values);
      if (cur === undefined || ts >= cur.ts) out[key] = valueEntry(op.values, "multi", ts);
      return;
    case "delete":
      if (cur === undefined || ts >= cur.ts) out[key] = { ts };
      return;
    case "incr": {
      if (cur?.v !== undefined && typeof cur.v !== "number") {
        fail("TYPE_MISMATCH", `Property ${show(key)} holds a ${typeName(cur.v)}; $incr/$decr need a number`, key);
      }
      if (op.by === 0) {
        // "0 is accepted and changes nothing" (SEMANTICS §4); the type must still fit.
        registry.check(key, "number", 0, false);
        return;
      }
      registry.check(key, "number", op.by);
      const result = (cur?.v ?? 0) + op.by;
      if (!Number.isFinite(result)) {
        fail(
          "INVALID_OPERATION",
          `$incr/$decr on ${show(key)} would make it ${result}, which is not a finite number`,
          key,
        );
      }
      out[key] = { v: result === 0 ? 0 : result, t: "number", ts: cur?.ts ?? ts, counter: true };
      return;
    }
    case "add": {
      const base = storedSet(cur, key, "$add");
      const merged = [...base];
      const seen = new Set(base);
      for (const v of op.values) {
        if (!seen.has(v)) {
          seen.add(v);
          merged.push(v);
        }
      }
      const storedString = typeof cur?.v === "string";
      if (merged.length === base.length && !storedString) {
        // Nothing new: still refuse a key of another type, but register nothing.
        registry.checkAdd(key, op.values, false);
        return;
      }
      registry.checkAdd(key, op.values, true);
      if (merged.length > MAX_MULTI_VALUES && merged.length > base.length) {
        fail(
          "TOO_MANY_VALUES",
          `Property ${show(key)} holds at most ${MAX_MULTI_VALUES} values; $add would make it ${merged.length}`,
          key,
        );
      }
      out[key] = { v: merged, t: "multi", ts: cur?.ts ?? ts };
      return;
    }
    case "remove": {
      registry.checkRemove(key, op.values);
      if (cur === undefined || cur.v === undefined) return;
      const base = storedSet(cur, key, "$remove");
      const drop = new Set(op.values);
      const kept = base.filter((v) => !drop.has(v));
      if (kept.length === base.length) return;
      // An emptied set removes the key; the tombstone keeps the old ts (set-edits never move it).
      out[key] = kept.length === 0 ? { ts: cur.ts } : { v: kept, t: "multi", ts: cur.ts };
      return;
    }
  }
}

/** A fresh entry for a set; an empty multi-value is no value (a tombstone), like an emptied set. */
function valueEntry(value: StoredValue, type: ValueType, ts: number): PropertyEntry {
  if (Array.isArray(value)) return value.length === 0 ? { ts } : { v: [...value], t: type, ts };
  return { v: value, t: type, ts };
}

/** The stored value as a set of strings: absent → [], a string → [it], a multi-value → itself. */
function storedSet(cur: PropertyEntry | undefined, key: string, op: string): readonly string[] {
  const v = cur?.v;
  if (v === undefined) return [];
  if (typeof v === "string") return [v];
  if (Array.isArray(v)) return v;
  return fail("TYPE_MISMATCH", `Property ${show(key)} holds a ${typeName(v)}; ${op} needs a multi-value`, key);
}

function typeName(v: StoredValue | JsonValue): ValueType {
  if (Array.isArray(v)) return "multi";
  if (typeof v === "object") return "object";
  return typeof v as "string" | "number" | "boolean";
}

/** The types this set has fixed so far, on top of the account's registry (SEMANTICS §4: the first write fixes it). */
class PendingTypes {
  readonly registrations: TypeRegistration[] = [];
  private readonly pending = new Map<string, ValueType>();

  constructor(private readonly types: TypeLookup) {}

  expected(path: string): ValueType | undefined {
    return own(SYSTEM_PROPERTY_TYPES, path) ?? this.pending.get(path) ?? this.types.get(path);
  }

  /** Refuses a value of another type than the path's; registers the type of an unregistered path. */
  check(path: string, given: ValueType, value: unknown, register = true): void {
    const expected = this.expected(path);
    if (expected !== undefined && expected !== given) mismatch(path, expected, given, value);
    // System properties have built-in types but are registered like any key, so the registry lists every key.
    if (register && !this.pending.has(path) && this.types.get(path) === undefined) this.register(path, given, false);
  }

  /** Every inner path of an object value: inner objects are `object`, leaves their scalar type. */
  checkLeaves(path: string, obj: { [key: string]: JsonValue }): void {
    for (const [k, v] of Object.entries(obj)) {
      const at = `${path}.${k}`;
      const type = typeName(v);
      this.check(at, type, v);
      if (type === "object") this.checkLeaves(at, v as { [key: string]: JsonValue });
    }
  }

  /** `$add` needs a multi-value, or a string key, which it turns into one (the one allowed type change). */
  checkAdd(path: string, values: readonly string[], changes: boolean): void {
    const expected = this.expected(path);
    if (expected === undefined) {
      if (changes) this.register(path, "multi", false);
    } else if (expected === "string" && !isSystemProperty(path)) {
      if (changes) this.register(path, "multi", true);
    } else if (expected !== "multi") {
      mismatch(path, expected, "multi", values);
    }
  }

  /** `$remove` works on a multi-value, or on a string key (removing the string itself). Registers nothing. */
  checkRemove(path: string, values: readonly string[]): void {
    const expected = this.expected(path);
    if (expected !== undefined && expected !== "multi" && (expected !== "string" || isSystemProperty(path))) {
      mismatch(path, expected, "multi", values);
    }
  }

  private register(path: string, type: ValueType, change: boolean): void {
    this.pending.set(path, type);
    this.registrations.push(change ? { path, type, change } : { path, type });
  }
}

function mismatch(path: string, expected: ValueType, given: ValueType, value: unknown): never {
  return fail("TYPE_MISMATCH", `Property ${show(path)} is a ${expected}, got a ${given} (${show(value)})`, path);
}

/**
 * At most MAX_CUSTOM_KEYS custom keys with a value (system properties and tombstones do not count). Only growth
 * is refused, so a profile already above the limit (after a merge) can still be written to.
 */
function checkCustomKeyCount(
  before: Readonly<Record<string, PropertyEntry>>,
  after: Record<string, PropertyEntry>,
  ops: readonly PropertyOp[],
): void {
  const valued = (props: Readonly<Record<string, PropertyEntry>>, key: string) =>
    !isSystemProperty(key) && own(props, key)?.v !== undefined;
  let countBefore = 0;
  for (const key of Object.keys(before)) if (valued(before, key)) countBefore++;
  let countAfter = 0;
  for (const key of Object.keys(after)) if (valued(after, key)) countAfter++;
  if (countAfter <= MAX_CUSTOM_KEYS || countAfter <= countBefore) return;
  // Name the first key that went past the limit.
  const added = [...new Set(ops.map((op) => op.key))].filter((k) => valued(after, k) && !valued(before, k));
  const culprit = added[Math.max(0, MAX_CUSTOM_KEYS - countBefore)] ?? added[added.length - 1];
  fail(
    "TOO_MANY_PROPERTIES",
    `A profile holds at most ${MAX_CUSTOM_KEYS} custom properties; ${show(culprit)} would make it ${countAfter}`,
    culprit,
  );
}

/**
 * Merges the source profile's properties into the target's (SEMANTICS §7). Per key: the entry with the greater ts
 * wins, a tie keeps the target's; when both last changed by `$incr`/`$decr` the values are summed; when both hold a
 * multi-value they are unioned, the target's order first (the union may exceed 100 values: a merge loses nothing).
 * Tombstones compete by ts like values. Neither input is mutated.
 */
export function mergeProperties(
  target: Readonly<Record<string, PropertyEntry>>,
  source: Readonly<Record<string, PropertyEntry>>,
): Record<string, PropertyEntry> {
  const out: Record<string, PropertyEntry> = { ...target };
  for (const key of Object.keys(source)) {
    const s = own(source, key)!;
    const t = own(target, key);
    out[key] = t === undefined ? s : mergeEntry(t, s);
  }
  return out;
}

function mergeEntry(t: PropertyEntry, s: PropertyEntry): PropertyEntry {
  const ts = Math.max(t.ts, s.ts);
  if (t.counter && s.counter && typeof t.v === "number" && typeof s.v === "number") {
    const sum = t.v + s.v;
    if (Number.isFinite(sum)) return { v: sum === 0 ? 0 : sum, t: "number", ts, counter: true };
  }
  if (Array.isArray(t.v) && Array.isArray(s.v)) {
    const union = [...new Set([...t.v, ...s.v])];
    return { v: union, t: "multi", ts };
  }
  return s.ts > t.ts ? s : t;
}
