/** A table copied row for row (tables.ts TABLE_COPIES): SQLite rows → chunks → multi-row INSERTs. */
import { type CopyContext, checkInterrupted, secondsSince, type TableResult } from "./copy-context.js";
import { insertStatement, RowChunk } from "./row-chunk.js";
import { origin, type TableCopy } from "./tables.js";

export async function copyTable(ctx: CopyContext, copy: TableCopy): Promise<TableResult> {
  const start = performance.now();
  const total = ctx.source.value<number>(copy.count);
  const text = insertStatement(copy.table, copy.columns, copy.identity);
  const fresh = () => new RowChunk(copy.table, copy.columns, copy.key, copy.sanitise);
  let chunk = fresh();
  let rows = 0;
  const report = (done: boolean) =>
    ctx.progress({ table: copy.table, rows, total, done, seconds: secondsSince(start) });
  const send = async () => {
    await ctx.target.send(copy.table, chunk.statement(text));
    rows += chunk.rows;
    chunk = fresh();
    report(false);
    checkInterrupted(ctx);
  };
  for (const row of ctx.source.rows(copy.select)) {
    chunk.add(row);
    if (chunk.full) await send();
  }
  if (chunk.rows > 0) await send();
  await ctx.target.drain();
  report(true);
  const result: TableResult = {
    table: copy.table,
    ...origin(copy.table),
    rows,
    expected: total,
    seconds: secondsSince(start),
  };
  if (copy.leftOut) {
    const left = ctx.source.value<number>(copy.leftOut.count);
    if (left > 0) result.note = `${left} ${copy.leftOut.why}`;
  }
  return result;
}
