/**
 * The charset an upload declares (`text/csv; charset=windows-1252`, or `?charset=` where a multipart part's own
 * parameters are lost: busboy keeps only a file part's type). UTF-8 is the default and needs no decoding; any other
 * charset the WHATWG Encoding standard knows is decoded to UTF-8 while the file is read, in constant memory.
 */
import { Transform } from "node:stream";
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

/** Bytes in `charset` → UTF-8 bytes; a character split across reads is completed by the next one. */
export function utf8From(charset: string): Transform {
  const decoder = new TextDecoder(charset);
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      done(null, Buffer.from(decoder.decode(chunk, { stream: true }), "utf8"));
    },
    flush(done) {
      const rest = decoder.decode();
      done(null, rest === "" ? undefined : Buffer.from(rest, "utf8"));
    },
  });
}
