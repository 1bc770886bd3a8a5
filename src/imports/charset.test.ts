import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { charsetOf, importText } from "./charset.js";

/** The bytes in chunks of `size`, so that a BOM or a character may straddle two reads. */
const chunked = (bytes: Buffer, size: number) => {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
  return Readable.from(parts);
};

async function read(bytes: Buffer, charset: string | null, size = 1): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const chunk of importText(chunked(bytes, size), charset)) out.push(chunk as Buffer);
  return Buffer.concat(out);
}

const utf16be = (text: string) => Buffer.from(text, "utf16le").swap16();

describe("importText", () => {
  const text = "Name,Email\nRen\u00e9e \u20ac,r@x.io\n";

  it("lets a BOM decide the encoding over the declared charset, and removes it (WHATWG decode)", async () => {
    const cases: Array<[string, Buffer]> = [
      ["utf-8", Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])],
      ["utf-16le", Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")])],
      ["utf-16be", Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(text)])],
    ];
    for (const [name, bytes] of cases) {
      for (const declared of [null, "windows-1252", "utf-16le", "iso-8859-2"]) {
        for (const size of [1, 2, 5, 1 << 20]) {
          const charset = declared === null ? null : charsetOf(declared);
          expect((await read(bytes, charset, size)).toString("utf8"), `${name} as ${declared} by ${size}`).toBe(text);
        }
      }
    }
  });

  it("decodes the declared charset without a BOM, and passes UTF-8 on as it is", async () => {
    expect((await read(Buffer.from([0x43, 0x61, 0x66, 0xe9, 0x20, 0x80]), "windows-1252")).toString()).toBe(
      "Caf\u00e9 \u20ac",
    );
    const notUtf8 = Buffer.from([0x41, 0xe9, 0xff, 0x0a]);
    expect(await read(notUtf8, null)).toEqual(notUtf8);
    // Only one BOM is removed; a second is text.
    const twice = Buffer.from([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf, 0x41]);
    expect((await read(twice, "windows-1252")).toString()).toBe("\uFEFFA");
  });

  it("reads files shorter than a BOM, and empty ones", async () => {
    expect((await read(Buffer.from([0xef, 0xbb, 0xbf]), "windows-1252")).length).toBe(0);
    expect((await read(Buffer.from([0xff, 0xfe]), null)).length).toBe(0);
    expect((await read(Buffer.from("A"), null)).toString()).toBe("A");
    expect((await read(Buffer.from([0xe9]), "windows-1252")).toString()).toBe("\u00e9");
    expect((await read(Buffer.alloc(0), null)).length).toBe(0);
  });
});
