/** How operator commands reach the store: its flags, opening it (it must exist), and the account they act on. */
import type { Command } from "commander";
import { storeLocation } from "../config.js";
import type { Account } from "../engine/types.js";
import type { Store } from "../store/store.js";
import { CliError } from "./cli-error.js";

export interface StoreOptions {
  dataDir?: string;
  databaseUrl?: string;
}

export function withStoreOptions(cmd: Command): Command {
  return cmd
    .option("--data-dir <dir>", "SQLite data directory (default: $PORTRAIT_DATA_DIR or ./data)")
    .option("--database-url <url>", "PostgreSQL URL (default: $PORTRAIT_DATABASE_URL)");
}

/** Opens the store that the flags (else the environment) name; it must exist already: only `portrait serve` creates one. */
export async function withStore<T>(opts: StoreOptions, fn: (store: Store) => Promise<T>): Promise<T> {
  const location = storeLocation(opts);
  // Loaded on use: `portrait import`, a client of the server, never loads a store (nor the SQLite driver).
  const { openStore } = await import("../store/open.js");
  const store = await openStore({ ...location, storeFrom: location.from, mustExist: true });
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * The account an operator command acts on: `--account` names it by id, or by its name when no account has that id
 * (names are unique, compared without case; a store from before that rule may hold two, which then need the id).
 */
export async function accountOf(store: Store, given: string | undefined): Promise<Account> {
  const wanted = given ?? "default";
  const byId = await store.getAccount(wanted);
  if (byId) return byId;
  const named = (await store.listAccounts()).filter((a) => sameAccountName(a.name, wanted));
  if (named.length === 1) return named[0] as Account;
  if (named.length > 1) {
    throw new CliError(
      "AMBIGUOUS_ACCOUNT",
      `${named.length} accounts are named ${wanted}: give the id of one (${named.map((a) => a.id).join(", ")})`,
    );
  }
  throw new CliError("UNKNOWN_ACCOUNT", `no account ${wanted}; see \`portrait accounts list\``);
}

/** Account names differ only when they differ beyond case: `Acme` and `acme` would be told apart by nobody. */
export function sameAccountName(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** What a command module needs of the store; a test may hand in its own (an in-process server's store). */
export interface StoreAccess {
  withStoreOptions(cmd: Command): Command;
  withStore<T>(opts: StoreOptions, fn: (store: Store) => Promise<T>): Promise<T>;
  accountOf(store: Store, id: string | undefined): Promise<Account>;
}

export const storeAccess: StoreAccess = { withStoreOptions, withStore, accountOf };
