/**
 * The account's property type registry, cached in memory. Registrations never change except string → multi,
 * so a cached entry can only be behind by that one step, and the store's unique constraint settles races.
 */
import type { ValueType } from "../engine/types.js";
import type { Store, TypeScope } from "../store/store.js";

export class TypeCache {
  /** account → scope → path → type: nested, so a look-up on the ingest path builds no key string. */
  private readonly accounts = new Map<string, Map<string, Map<string, ValueType>>>();

  constructor(private readonly store: Store) {}

  /** Loads an account's registry once; call before `get` in a transaction. */
  async ensure(accountId: string): Promise<void> {
    if (this.accounts.has(accountId)) return;
    const scopes = new Map<string, Map<string, ValueType>>();
    for (const r of await this.store.reader.listTypes(accountId)) put(scopes, r.scope, r.path, r.type);
    this.accounts.set(accountId, scopes);
  }

  get(accountId: string, scope: TypeScope, path: string): ValueType | undefined {
    return this.accounts.get(accountId)?.get(scope)?.get(path);
  }

  set(accountId: string, scope: TypeScope, path: string, type: ValueType): void {
    const scopes = this.accounts.get(accountId);
    if (scopes) put(scopes, scope, path, type);
  }

  /** All registered profile property paths, sorted (the segment CSV export columns). */
  profilePaths(accountId: string): string[] {
    return [...(this.accounts.get(accountId)?.get("profile")?.keys() ?? [])].sort();
  }
}

function put(scopes: Map<string, Map<string, ValueType>>, scope: string, path: string, type: ValueType): void {
  let paths = scopes.get(scope);
  if (!paths) {
    paths = new Map();
    scopes.set(scope, paths);
  }
  paths.set(path, type);
}
