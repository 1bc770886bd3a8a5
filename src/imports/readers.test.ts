import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { ReadError, readCsv, readNdjson, type SourceRow } from "./readers.js";

async function all(rows: AsyncIterable<SourceRow>): Promise<SourceRow[]> {
  const out: SourceRow[] = [];
  for await (const r of rows) out.push(r);
  return out;
}

/** A stream that hands the text over in tiny chunks, so rows straddle chunk boundaries. */
const chunked = (text: string | Buffer, size = 3) => {
  const bytes = Buffer.from(text);
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
  return Readable.from(parts);
};

describe("CSV reader", () => {
  it("reads the header as row 0, then rows with quoting, CRLF, a BOM and empty lines", async () => {
    const rows = await all(readCsv(chunked('\uFEFFa,b\r\n1,"x, ""y"""\r\n\r\n2,"multi\nline"\r\n')));
    expect(rows.map((r) => [r.row, r.data])).toEqual([
      [0, ["a", "b"]],
      [1, ["1", 'x, "y"']],
      [2, ["2", "multi\nline"]],
    ]);
  });

  it("yields the rows before broken quoting, then a ReadError", async () => {
    const seen: SourceRow[] = [];
    await expect(async () => {
      for await (const r of readCsv(chunked('a\n1\n2\n"3\n'))) seen.push(r);
    }).rejects.toThrow(ReadError);
    expect(seen.map((r) => r.data)).toEqual([["a"], ["1"], ["2"]]);
  });

  it("refuses a record over the size limit", async () => {
    await expect(all(readCsv(Readable.from([`a\n${"x".repeat(100)}\n`]), 50))).rejects.toThrow(/Max Record Size/);
  });
});

describe("NDJSON reader", () => {
  it("numbers lines, skips blank ones, strips CR and a BOM, and keeps a last line without newline", async () => {
    const rows = await all(readNdjson(chunked('\uFEFF{"a":1}\r\n\n  \n{"b":"é"}\n{"c":3}')));
    expect(rows.map((r) => [r.row, r.data])).toEqual([
      [1, '{"a":1}'],
      [4, '{"b":"é"}'],
      [5, '{"c":3}'],
    ]);
    expect(rows.at(-1)?.bytesRead).toBe(Buffer.byteLength('\uFEFF{"a":1}\r\n\n  \n{"b":"é"}\n{"c":3}'));
  });

  it("reports an over-long line as a problem row, keeping its start, and goes on", async () => {
    const rows = await all(readNdjson(chunked(`${"y".repeat(500)}\n{"ok":true}\n`, 64), 100));
    expect(rows[0]).toMatchObject({ row: 1, problem: expect.stringMatching(/longer than 100 bytes/) });
    expect(String(rows[0]?.data).startsWith("yyyy")).toBe(true);
    expect(rows[1]).toMatchObject({ row: 2, data: '{"ok":true}' });
  });
});
