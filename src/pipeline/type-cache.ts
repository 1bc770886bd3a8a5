/**
 * The account's property type registry, cached in memory. Registrations never change except string → multi, and that
 * change moves the account's types revision in the store: every write transaction reads the revision first and
 * reloads the registry when it moved, so a change made by another process (another API node on PostgreSQL, another
 * process on the SQLite file) is seen by the next transaction here. New registrations need no reload: a path this
 * process has not seen is registered through the store, whose unique constraint returns the winner.
 */
import type { ValueType } from "../engine/types.js";
import type { Store, StoreReader, TypeScope } from "../store/store.js";

/**
 * How many property paths an account may register (docs/semantics.md "Registered properties"): far more than a real
 * account uses, few enough that what a public-key holder can register (the hostile-input audit's 250k junk keys made
 * every segment export 511 MB) stays small. Counted from this process's registry (see UnitOfWork.register).
 */
export const MAX_PROFILE_PATHS = 2_000;
/** Property paths per event name. */
export const MAX_EVENT_PATHS = 2_000;
/** Event names that have properties registered (an event without properties registers nothing, and is not counted). */
export const MAX_EVENT_NAMES = 10_000;

interface Registry {
  /** The store's types revision this registry was loaded at (or later: see `ensure`). */
  revision: number;
  /** scope → path → type: nested, so a look-up on the ingest path builds no key string. */
  scopes: Map<string, Map<string, ValueType>>;
}

export class TypeCache {
  private readonly accounts = new Map<string, Registry>();

  constructor(private readonly store: Store) {}

  /**
   * Makes the cached registry current as `reader` sees the store: inside a write transaction pass the transaction and
   * the types revision it read, so that the registry is the one its records are checked against. One read of the
   * revision (none when given) while nothing changed.
   */
  async ensure(accountId: string, reader: StoreReader = this.store.reader, known?: number): Promise<void> {
    // The revision is read before the registry: a change that commits in between leaves a registry newer than its
    // revision, which only costs one more reload, never a stale registry taken for a current one.
    const revision = known ?? (await reader.revisions(accountId)).types;
    if (this.accounts.get(accountId)?.revision === revision) return;
    const scopes = new Map<string, Map<string, ValueType>>();
    for (const r of await reader.listTypes(accountId)) put(scopes, r.scope, r.path, r.type);
    this.accounts.set(accountId, { revision, scopes });
  }

  get(accountId: string, scope: TypeScope, path: string): ValueType | undefined {
    return this.accounts.get(accountId)?.scopes.get(scope)?.get(path);
  }

  set(accountId: string, scope: TypeScope, path: string, type: ValueType): void {
    const registry = this.accounts.get(accountId);
    if (registry) put(registry.scopes, scope, path, type);
  }

  /** How many paths `scope` has registered (as this process's registry knows them). */
  count(accountId: string, scope: TypeScope): number {
    return this.accounts.get(accountId)?.scopes.get(scope)?.size ?? 0;
  }

  /** How many event names have paths registered. */
  eventNames(accountId: string): number {
    const scopes = this.accounts.get(accountId)?.scopes;
    return scopes ? scopes.size - (scopes.has("profile") ? 1 : 0) : 0;
  }

  /** All registered profile property paths, sorted (the segment CSV export columns). */
  profilePaths(accountId: string): string[] {
    return [...(this.accounts.get(accountId)?.scopes.get("profile")?.keys() ?? [])].sort();
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
