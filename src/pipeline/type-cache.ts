/**
 * The account's property type registry, cached in memory. Registrations never change except string → multi,
 * so a cached entry can only be behind by that one step, and the store's unique constraint settles races.
 */
import type { ValueType } from "../engine/types.js";
import type { Store, TypeScope } from "../store/store.js";

export class TypeCache {
  private readonly accounts = new Map<string, Map<string, ValueType>>();

  constructor(private readonly store: Store) {}

  /** Loads an account's registry once; call before `get` in a transaction. */
  async ensure(accountId: string): Promise<void> {
    if (this.accounts.has(accountId)) return;
    const map = new Map<string, ValueType>();
    for (const r of await this.store.reader.listTypes(accountId)) map.set(`${r.scope}\u0000${r.path}`, r.type);
    this.accounts.set(accountId, map);
  }

  get(accountId: string, scope: TypeScope, path: string): ValueType | undefined {
    return this.accounts.get(accountId)?.get(`${scope}\u0000${path}`);
  }

  set(accountId: string, scope: TypeScope, path: string, type: ValueType): void {
    this.accounts.get(accountId)?.set(`${scope}\u0000${path}`, type);
  }

  /** All registered profile property paths, sorted (the segment CSV export columns). */
  profilePaths(accountId: string): string[] {
    const out: string[] = [];
    for (const k of this.accounts.get(accountId)?.keys() ?? []) {
      const [scope, path] = k.split("\u0000") as [string, string];
      if (scope === "profile") out.push(path);
    }
    return out.sort();
  }
}
