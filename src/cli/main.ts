/**
 * The `portrait` command. `serve` runs the server; the operator commands (accounts, keys, find, segment, export) open
 * the same store directly, which is safe while a server runs on it (SQLite WAL, or PostgreSQL). `copy-store` moves a
 * SQLite store into PostgreSQL and wants its server stopped (copy-store.ts). Only `serve` creates
 * a store: its first start creates the account `default` and prints its keys, which an operator command run first
 * would have prevented (an account existed, so no first run).
 */

import { existsSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { Command } from "commander";
import { configFromEnv, portNumber, storeLocation } from "../config.js";
import { PortraitError } from "../engine/errors.js";
import { normaliseIdentityValue } from "../engine/properties/values.js";
import { IDENTITY_KEYS, type IdentityKey } from "../engine/types.js";
import { apiKeyView } from "../pipeline/accounts.js";
import { CliError } from "./cli-error.js";
import { addCopyStoreCommand } from "./copy-store.js";
import { addExportCommand } from "./export.js";
import { addImportCommands } from "./import.js";
import { addSegmentCommands } from "./segment.js";
import { accountOf, type StoreOptions, sameAccountName, withStore, withStoreOptions } from "./store-access.js";

function print(value: unknown, json: boolean | undefined, text: () => string): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    return;
  }
  // An empty list is no lines, not one empty line.
  const lines = text();
  if (lines !== "") process.stdout.write(`${lines}\n`);
}

/** package.json's version, found by walking up from this module (src/cli, dist/src/cli, or a test bundle). */
function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, "package.json");
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { name?: string; version?: string };
      if (pkg.name === "portrait" && pkg.version) return pkg.version;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return "unknown";
    dir = parent;
  }
}

export function buildCli(): Command {
  const program = new Command("portrait")
    .description("Portrait, the self-hostable user-profile engine")
    .version(packageVersion(), "-V, --version", "print the version")
    .showHelpAfterError();

  withStoreOptions(
    program
      .command("serve")
      .description(
        "serve the API on $PORTRAIT_PORT (default 8080) with data in $PORTRAIT_DATA_DIR or $PORTRAIT_DATABASE_URL",
      )
      .option("-p, --port <port>", "port to listen on (default: $PORTRAIT_PORT or 8080)"),
  ).action(async (opts: { port?: string } & StoreOptions) => {
    const config = configFromEnv();
    if (opts.port !== undefined) config.port = portNumber(opts.port, "--port");
    if (opts.dataDir !== undefined || opts.databaseUrl !== undefined) {
      // As for the operator commands: a flag wins over the environment.
      const location = storeLocation(opts);
      Object.assign(config, { ...location, storeFrom: location.from });
    }
    // V8 grows the old generation by up to 4× what survives each full collection; ingestion keeps a transaction's
    // objects alive across awaits, so they are promoted and die there, and the heap grew to ≈ 180 MB around a live
    // set of ≈ 25 MB during a bulk import. 1.5× keeps the server's RSS ≈ 80 MB lower at no measurable cost in
    // speed (B4, B9). Set before the server allocates anything.
    setFlagsFromString("--heap-growing-percent=50");
    // The store holds every person's data, the keys' hashes and the SFTP host's private key; uploads wait in the
    // data directory. What the server creates is for its own user only (0700 directories, 0600 files).
    process.umask(0o077);
    // Loaded here so that client commands (`portrait import`) do not load the server (and stay small in memory).
    const { printFirstRun, startServer } = await import("../server.js");
    const server = await startServer(config);
    if (server.firstRun) printFirstRun(server.firstRun, server.url);
    else process.stdout.write(`Portrait listening on ${server.url}\n`);
    const stop = (signal: string) => {
      server.app.log.info({ signal }, "shutting down: finishing in-flight requests");
      server.close().then(
        () => process.exit(0),
        (err) => {
          server.app.log.error({ err }, "shutdown failed");
          process.exit(1);
        },
      );
    };
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });

  const accounts = program.command("accounts").description("manage accounts (tenants)");
  withStoreOptions(accounts.command("create <name>").description("create an account with a secret and a public key"))
    .option("--json", "print JSON")
    .action(async (given: string, opts: StoreOptions & { json?: boolean }) => {
      const name = given.trim();
      if (name === "") throw new PortraitError("INVALID_VALUE", "an account name must not be blank", "name");
      await withStore(opts, async (store) => {
        // The first start of `serve` creates `default` and the dashboard login only on a store with no account.
        if ((await store.listAccounts()).length === 0) {
          throw new CliError(
            "NO_ACCOUNT_YET",
            "this store has no account yet: start `portrait serve` once, which creates the account default " +
              "and prints its keys and dashboard login",
          );
        }
        const taken = (await store.listAccounts()).find((a) => sameAccountName(a.name, name));
        if (taken) {
          throw new CliError("ACCOUNT_EXISTS", `an account named ${taken.name} exists already (id ${taken.id})`);
        }
        const { Accounts } = await import("../pipeline/accounts.js");
        const created = await new Accounts(store).create(name);
        const out = { id: created.account.id, name, secretKey: created.secretKey, publicKey: created.publicKey };
        print(out, opts.json, () => `account ${out.id}\nsecret key ${out.secretKey}\npublic key ${out.publicKey}`);
      });
    });
  withStoreOptions(accounts.command("list").description("list accounts"))
    .option("--json", "print JSON")
    .action(async (opts: StoreOptions & { json?: boolean }) => {
      await withStore(opts, async (store) => {
        const list = (await store.listAccounts()).map((a) => ({ id: a.id, name: a.name }));
        print(list, opts.json, () => list.map((a) => `${a.id}\t${a.name}`).join("\n"));
      });
    });

  withStoreOptions(
    program
      .command("backup <file>")
      .description("copy the SQLite store to <file>, consistent even while the server writes (PostgreSQL: pg_dump)"),
  ).action(async (file: string, opts: StoreOptions) => {
    await withStore(opts, async (store) => {
      if (!store.backupTo) {
        throw new CliError(
          "UNSUPPORTED",
          "the store is PostgreSQL: back it up with pg_dump (docs/scaling.md, Backups)",
        );
      }
      if (file.trim() === "") throw new CliError("INVALID_VALUE", "name the backup file");
      if (existsSync(file)) throw new CliError("INVALID_VALUE", `${file} exists already: name a new file`);
      const folder = path.dirname(path.resolve(file));
      if (!existsSync(folder)) throw new CliError("INVALID_VALUE", `the folder ${folder} does not exist`);
      try {
        await store.backupTo(file);
      } catch (e) {
        throw new CliError("BACKUP_FAILED", (e as Error).message);
      }
      console.log(`backup written to ${file} (${statSync(file).size} bytes)`);
    });
  });

  const keys = program.command("keys").description("manage API keys");
  withStoreOptions(keys.command("create").description("create a key (shown once)"))
    .option("--account <id>", "account id, or its name", "default")
    .option("--kind <kind>", "secret or public", "secret")
    .option("--name <name>", "a name to recognise it by", "cli")
    .option("--json", "print JSON")
    .action(async (opts: StoreOptions & { account: string; kind: string; name: string; json?: boolean }) => {
      await withStore(opts, async (store) => {
        const account = await accountOf(store, opts.account);
        const { Accounts } = await import("../pipeline/accounts.js");
        const created = await new Accounts(store).createKey(account.id, opts.kind as never, opts.name);
        // As POST /v1/keys answers.
        const out = { ...apiKeyView(created.row), key: created.key };
        print(out, opts.json, () => `${out.kind} key ${out.id}: ${out.key}`);
      });
    });
  withStoreOptions(keys.command("list").description("list keys"))
    .option("--account <id>", "account id, or its name", "default")
    .option("--json", "print JSON")
    .action(async (opts: StoreOptions & { account: string; json?: boolean }) => {
      await withStore(opts, async (store) => {
        const account = await accountOf(store, opts.account);
        // The keys as GET /v1/keys lists them.
        const list = (await store.listApiKeys(account.id)).map(apiKeyView);
        print(list, opts.json, () =>
          list
            .map((k) => `${k.id}\t${k.kind}\t${k.prefix}…\t${k.name}${k.revokedAt ? `\trevoked ${k.revokedAt}` : ""}`)
            .join("\n"),
        );
      });
    });
  withStoreOptions(keys.command("revoke <id>").description("revoke a key (a revoked key stays revoked: exit 0)"))
    .option("--account <id>", "account id, or its name", "default")
    .option("--json", "print JSON")
    .action(async (id: string, opts: StoreOptions & { account: string; json?: boolean }) => {
      await withStore(opts, async (store) => {
        const account = await accountOf(store, opts.account);
        const before = (await store.listApiKeys(account.id)).find((k) => k.id === id);
        const { Accounts } = await import("../pipeline/accounts.js");
        // As DELETE /v1/keys/{id}: revoking a revoked key succeeds (it keeps its first revocation time).
        if (!(await new Accounts(store).revokeKey(account.id, id)))
          throw new PortraitError("UNKNOWN_KEY", `key ${id} does not exist`, "id");
        const already =
          before?.revokedAt != null ? ` (already revoked at ${new Date(before.revokedAt).toISOString()})` : "";
        print({ revoked: true }, opts.json, () => `revoked ${id}${already}`);
      });
    });

  withStoreOptions(program.command("find").description("find a person by an identity"))
    .option("--account <id>", "account id, or its name", "default")
    .option("--email <email>")
    .option("--identity <identity>")
    .option("--phone <phone>")
    .option("--fbid <fbid>")
    .option("--gpid <gpid>")
    .action(async (opts: StoreOptions & Record<string, string | undefined>) => {
      const given = IDENTITY_KEYS.filter((k) => opts[k.toLowerCase()] !== undefined);
      if (given.length === 0)
        throw new PortraitError("MISSING_HANDLE", "name one of --identity, --email, --phone, --fbid, --gpid");
      if (given.length > 1) {
        const flags = given.map((k) => `--${k.toLowerCase()}`).join(", ");
        throw new PortraitError("MULTIPLE_HANDLES", `name one handle only, got ${flags}`);
      }
      const key = given[0] as IdentityKey;
      await withStore(opts, async (store) => {
        const account = await accountOf(store, opts.account);
        const value = normaliseIdentityValue(key, opts[key.toLowerCase()], key);
        const { Portrait } = await import("../pipeline/portrait.js");
        const profiles = await new Portrait(store).findProfiles(account, { kind: "identity", key, value });
        process.stdout.write(`${JSON.stringify({ profiles }, null, 2)}\n`);
      });
    });
  addImportCommands(program, withStore, accountOf);
  addSegmentCommands(program);
  addExportCommand(program);
  addCopyStoreCommand(program);
  return program;
}

/** The reader of stdout went away (`portrait export … | head`): what it wanted, it has; stop quietly, as `cat` does. */
const isClosedPipe = (err: unknown) => (err as NodeJS.ErrnoException | null)?.code === "EPIPE";
// Without a listener, a write to a closed pipe is an unhandled 'error' event: a stack trace instead of an exit.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err) => {
    if (isClosedPipe(err)) process.exit(0);
    throw err;
  });
}

buildCli()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    if (isClosedPipe(err)) process.exit(0);
    const message =
      err instanceof PortraitError || err instanceof CliError
        ? `${err.code}: ${err.message}`
        : err instanceof Error
          ? err.message
          : String(err);
    // One line, never a stack trace.
    process.stderr.write(`portrait: ${message.replace(/\s*\n\s*/g, " ")}\n`);
    process.exit(1);
  });
