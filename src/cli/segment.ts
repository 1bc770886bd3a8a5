/**
 * `portrait segment count --where '<json>' [--account default]`: an exact segment count (SEMANTICS §6), through the same
 * pipeline as POST /v1/segments/query. A refused condition exits 1 with `INVALID_SEGMENT: at <JSON path>: <why>`.
 */
import type { Command } from "commander";
import { PortraitError } from "../engine/errors.js";
import { type StoreAccess, type StoreOptions, storeAccess } from "./store-access.js";

export function addSegmentCommands(program: Command, access: StoreAccess = storeAccess): void {
  const { withStoreOptions, withStore, accountOf } = access;
  const segment = program.command("segment").description("find people by criteria (segments)");
  withStoreOptions(segment.command("count").description("count the profiles a condition matches (exact)"))
    .requiredOption("--where <json>", 'a segment condition, e.g. \'{"property": "Plan", "op": "eq", "value": "pro"}\'')
    .option("--account <id>", "account id, or its name", "default")
    .option("--json", "print JSON")
    .action(async (opts: StoreOptions & { where: string; account: string; json?: boolean }) => {
      let where: unknown;
      try {
        where = JSON.parse(opts.where);
      } catch (e) {
        throw new PortraitError(
          "INVALID_SEGMENT",
          `at where: --where is not valid JSON: ${(e as Error).message}`,
          "where",
        );
      }
      await withStore(opts, async (store) => {
        const account = await accountOf(store, opts.account);
        let count: number;
        try {
          // Loaded on use, as the store is (main.ts): client commands such as `portrait import` stay small in memory.
          const [{ Portrait }, { Segments }] = await Promise.all([
            import("../pipeline/portrait.js"),
            import("../pipeline/segments.js"),
          ]);
          count = await new Segments(new Portrait(store)).count(account, where);
        } catch (e) {
          // The terminal has no `field`: the JSON path of the fault goes into the sentence.
          if (e instanceof PortraitError && e.field !== undefined) {
            throw new PortraitError(e.code, `at ${e.field}: ${e.message}`, e.field);
          }
          throw e;
        }
        process.stdout.write(opts.json ? `${JSON.stringify({ count })}\n` : `${count}\n`);
      });
    });
}
