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

  it("parses a large read a slice at a time: rows across slices stay whole, and few wait to be taken at once", async () => {
    // One 2 MB chunk, as a 1 MB-buffered file stream hands over; quoted multi-line cells and 2-byte characters straddle
    // the slice boundaries somewhere along the way.
    const lines = ["name,note"];
    for (let i = 0, length = 0; length < 2 * 1024 * 1024; i++) {
      lines.push(`é${i},"line ${i}\nnext ${"ü".repeat(i % 50)}"`);
      length += (lines.at(-1) as string).length + 1;
    }
    const rows = await all(readCsv(Readable.from([Buffer.from(`${lines.join("\n")}\n`)])));
    expect(rows.length).toBe(lines.length);
    const i = lines.length - 2;
    expect(rows.at(-1)?.data).toEqual([`é${i}`, `line ${i}\nnext ${"ü".repeat(i % 50)}`]);
    expect(rows.every((r, n) => (r.data as string[])[0] === (n === 0 ? "name" : `é${n - 1}`))).toBe(true);
    // Progress moves per slice of 64 KB, not once per read: rows are handed on before the next slice is parsed.
    expect(new Set(rows.map((r) => r.bytesRead)).size).toBeGreaterThanOrEqual(30);
  });

  it("marks the rows holding bytes that are not UTF-8, naming the cell, whatever the chunking; valid text passes", async () => {
    const bytes = Buffer.concat([
      Buffer.from("Email,Name\nok@x.io,Caf\u00e9 \uFFFD\nbad@x.io,Caf"),
      Buffer.from([0xe9]),
      Buffer.from('\nok2@x.io,"\u00fc\n\u20ac"\nbad2@x.io,\u00fc'),
      Buffer.from([0xc3]),
    ]);
    for (const size of [1, 2, 3, 7, 1000]) {
      const rows = await all(readCsv(chunked(bytes, size)));
      expect(
        rows.map((r) => [r.problem === undefined ? "ok" : r.problem.slice(0, 26), r.problemCell]),
        `chunks of ${size}`,
      ).toEqual([
        ["ok", undefined],
        ["ok", undefined],
        ["the row is not valid UTF-8", 1],
        ["ok", undefined],
        ["the row is not valid UTF-8", 1],
      ]);
    }
    // A UTF-16 file is decoded by its BOM, not judged as UTF-8.
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("a,b\n\u00e9,2\n", "utf16le")]);
    expect((await all(readCsv(chunked(utf16, 5)))).map((r) => [r.data, r.problem])).toEqual([
      [["a", "b"], undefined],
      [["\u00e9", "2"], undefined],
    ]);
  });

  it("hands on a record over the size limit as a problem row with its first cells, then stops in plain words", async () => {
    const seen: SourceRow[] = [];
    await expect(async () => {
      for await (const r of readCsv(Readable.from([`a,b\n1,2\nkeep,${"x".repeat(100)}\n3,4\n`]), 50)) seen.push(r);
    }).rejects.toThrow(/^row 2 is longer than 50 bytes, the limit of one CSV record: .*the rows before it are applied/);
    expect(seen.map((r) => [r.row, r.data, r.problem])).toEqual([
      [0, ["a", "b"], undefined],
      [1, ["1", "2"], undefined],
      [2, ["keep"], "the record is longer than 50 bytes, the limit of one CSV record"],
    ]);
  });
});

describe("CSV reader, wide rows", () => {
  it("names a header of more columns than the limit as a problem, and keeps only the first cells of a wider row", async () => {
    const header = Array.from({ length: 12 }, (_, i) => `c${i}`).join(",");
    const wide = Array.from({ length: 5000 }, () => "1").join(",");
    const rows = await all(
      readCsv(
        chunked(
          `${header}
x,y
${wide}
`,
          1000,
        ),
        1 << 20,
        10,
      ),
    );
    expect(rows.map((r) => [r.row, r.problem])).toEqual([
      [
        0,
        "the header has 12 columns, more than 10, the most a CSV import may have (a record holds at most 256 custom properties)",
      ],
      [1, undefined],
      [
        2,
        "the row has 5000 cells, more than 10, the most a CSV row may have: only its first 10 are kept in this report",
      ],
    ]);
    expect(rows[0]?.data).toHaveLength(10);
    expect(rows[2]?.data).toEqual(Array.from({ length: 10 }, () => "1"));
  });

  it("reads a header of exactly the limit, 1,024 columns by default", async () => {
    const header = Array.from({ length: 1024 }, (_, i) => `c${i}`);
    const rows = await all(
      readCsv(
        chunked(
          `${header.join(",")}
${header.join(",")},extra
`,
          4096,
        ),
      ),
    );
    expect(rows[0]).toMatchObject({ row: 0, data: header });
    expect(rows[0]?.problem).toBeUndefined();
    expect(rows[1]?.problem).toMatch(/^the row has 1025 cells, more than 1024/);
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

  it("marks a line that is not UTF-8", async () => {
    const bytes = Buffer.concat([Buffer.from('{"a":"\u00e9"}\n{"a":"'), Buffer.from([0xe9]), Buffer.from('"}\n')]);
    expect((await all(readNdjson(chunked(bytes, 4)))).map((r) => r.problem?.slice(0, 27))).toEqual([
      undefined,
      "the line is not valid UTF-8",
    ]);
  });

  it("reports an over-long line as a problem row, keeping its start, and goes on", async () => {
    const rows = await all(readNdjson(chunked(`${"y".repeat(500)}\n{"ok":true}\n`, 64), 100));
    expect(rows[0]).toMatchObject({ row: 1, problem: expect.stringMatching(/longer than 100 bytes/) });
    expect(String(rows[0]?.data).startsWith("yyyy")).toBe(true);
    expect(rows[1]).toMatchObject({ row: 2, data: '{"ok":true}' });
  });

  it("says an over-long line was truncated, with its length in bytes and its line number, cut at a character", async () => {
    // 2-byte characters put the 200-byte mark of the kept head inside one at an odd offset.
    const long = `{"nn":"${"\u00e9".repeat(400)}"}`;
    const text = `{"ok":1}\n\n${long}\r\n{"ok":2}\n${"z".repeat(400)}`;
    for (const size of [1, 7, 64, 10_000]) {
      const rows = await all(readNdjson(chunked(text, size), 300));
      expect(
        rows.map((r) => [r.row, r.problem]),
        `chunks of ${size}`,
      ).toEqual([
        [1, undefined],
        [
          3,
          `line 3 is ${Buffer.byteLength(long)} bytes, longer than 300 bytes, the limit of one NDJSON line: it is not read, and this report shows only its first 200 bytes followed by "…"`,
        ],
        [4, undefined],
        [5, expect.stringMatching(/^line 5 is 400 bytes, longer than 300 bytes/)],
      ]);
      const head = String(rows[1]?.data);
      expect(head.endsWith("…")).toBe(true);
      expect(head).not.toContain("\ufffd");
      expect(long.startsWith(head.slice(0, -1))).toBe(true);
      expect(Buffer.byteLength(head.slice(0, -1))).toBe(199);
      expect(rows[3]?.data).toBe(`${"z".repeat(200)}…`);
    }
  });
});
