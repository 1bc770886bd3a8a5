/**
 * The charset an upload declares (`text/csv; charset=windows-1252`, or `?charset=` where a multipart part's own
 * parameters are lost: busboy keeps only a file part's type). UTF-8 is the default and needs no decoding; any other
 * charset the WHATWG Encoding standard knows is decoded to UTF-8 while the file is read, in constant memory.
 */
import { type Readable, Transform } from "node:stream";
import { PortraitError, show } from "../engine/errors.js";

/** The decoder's name for a declared charset; null for UTF-8 (or none). Unknown charsets are 415. */
export function charsetOf(declared: string | undefined | null): string | null {
  if (declared === undefined || declared === null || declared.trim() === "") return null;
  let name: string;
  try {
    name = new TextDecoder(declared.trim().replace(/^"(.*)"$/, "$1")).encoding;
  } catch {
    throw new PortraitError(
      "UNSUPPORTED_MEDIA_TYPE",
      `charset ${show(declared)} is not one Portrait can read (UTF-8, windows-1252, iso-8859-1, utf-16le…)`,
      "charset",
    );
  }
  return name === "utf-8" ? null : name;
}

/** The `charset` parameter of a Content-Type header, if any. */
export function charsetParam(contentType: string | undefined): string | undefined {
  for (const param of (contentType ?? "").split(";").slice(1)) {
    const eq = param.indexOf("=");
    if (eq > 0 && param.slice(0, eq).trim().toLowerCase() === "charset") return param.slice(eq + 1).trim();
  }
  return undefined;
}

/** The byte order marks the WHATWG Encoding standard's `decode` sniffs, longest first. */
const BOMS: ReadonlyArray<{ bytes: readonly number[]; charset: string | null }> = [
  { bytes: [0xef, 0xbb, 0xbf], charset: null },
  { bytes: [0xff, 0xfe], charset: "utf-16le" },
  { bytes: [0xfe, 0xff], charset: "utf-16be" },
];

/**
 * An import file's bytes → UTF-8 without a byte order mark, for the readers. As WHATWG `decode` does, a BOM (UTF-8,
 * UTF-16 LE or BE) decides the encoding over the declared charset, and is removed: a UTF-8 BOM read as
 * windows-1252 became `ï»¿` in front of the first header (a property `ï»¿Name`, or no handle column found). Without a
 * BOM the declared charset is decoded (null: the bytes are UTF-8, passed on as they are, so that rows which are not
 * UTF-8 are still refused as such). A read error of `file` reaches the readers as it would without decoding.
 */
export function importText(file: Readable, charset: string | null): Readable {
  let head: Buffer | null = Buffer.alloc(0);
  let decode: ((chunk: Buffer) => Buffer) | null = null;
  let finish: () => Buffer | null = () => null;
  const start = (bytes: Buffer): Buffer => {
    const bom = BOMS.find((b) => b.bytes.every((byte, i) => bytes[i] === byte));
    const body = bom ? bytes.subarray(bom.bytes.length) : bytes;
    const encoding = bom ? bom.charset : charset;
    if (encoding === null) {
      decode = (chunk) => chunk;
    } else {
      // The BOM is gone already: a second one would be text (U+FEFF), as in WHATWG decode.
      const decoder = new TextDecoder(encoding, { ignoreBOM: bom !== undefined });
      decode = (chunk) => Buffer.from(decoder.decode(chunk, { stream: true }), "utf8");
      finish = () => {
        const rest = decoder.decode();
        return rest === "" ? null : Buffer.from(rest, "utf8");
      };
    }
    return decode(body);
  };
  const text = new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (decode) return done(null, decode(chunk));
      // The first bytes decide: wait for three of them (or the end of a shorter file).
      head = Buffer.concat([head as Buffer, chunk]);
      if (head.length < 3) return done();
      const out = start(head);
      head = null;
      done(null, out);
    },
    flush(done) {
      const first = decode ? null : start(head as Buffer);
      const rest = finish();
      const out = Buffer.concat([first ?? Buffer.alloc(0), rest ?? Buffer.alloc(0)]);
      done(null, out.length > 0 ? out : undefined);
    },
  });
  file.on("error", (e) => text.destroy(e));
  return file.pipe(text);
}
