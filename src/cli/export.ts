/**
 * `portrait export --profile ID` prints what GET /v1/profiles/{id}/export answers (every stored fact about the person,
 * SEMANTICS §10); `portrait export --segment ID` writes what GET /v1/segments/{id}/export.csv answers. Both go through
 * the same pipeline functions as the API, on the store opened directly.
 */
import type { Command } from "commander";
import { CliError } from "./cli-error.js";
import { type StoreAccess, type StoreOptions, storeAccess } from "./store-access.js";

export function addExportCommand(program: Command, access: StoreAccess = storeAccess): void {
  const { withStoreOptions, withStore, accountOf } = access;
  withStoreOptions(
    program
      .command("export")
      .description("a person's data as JSON (--profile), or a saved segment's members as CSV (--segment)"),
  )
    .option("--profile <id>", "a profile id: prints the same JSON as GET /v1/profiles/{id}/export")
    .option("--segment <id>", "a saved segment id: writes the same CSV as GET /v1/segments/{id}/export.csv")
    .option("--account <id>", "account id, or its name", "default")
    .action(async (opts: StoreOptions & { profile?: string; segment?: string; account: string }) => {
      if ((opts.profile === undefined) === (opts.segment === undefined)) {
        throw new CliError("INVALID_VALUE", "give --profile ID or --segment ID (one of them)");
      }
      await withStore(opts, async (store) => {
        const account = await accountOf(store, opts.account);
        const { Portrait } = await import("../pipeline/portrait.js");
        const portrait = new Portrait(store);
        if (opts.profile !== undefined) {
          const document = await portrait.exportProfile(account, opts.profile);
          await write(`${JSON.stringify(document, null, 2)}\n`);
          return;
        }
        const { Segments } = await import("../pipeline/segments.js");
        for await (const chunk of await new Segments(portrait).export(account, opts.segment as string)) {
          await write(chunk);
        }
      });
    });
}

/** Writes to stdout, waiting while its buffer is full: a large segment is never held in memory. */
function write(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
  });
}
