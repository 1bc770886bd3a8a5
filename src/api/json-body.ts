/**
 * What a JSON body's bytes must be before they are parsed (API.md: "JSON in and out, UTF-8"). Bytes that are not
 * UTF-8 were decoded as U+FFFD and stored as such, silently (hostile-input audit F12); a declared charset other
 * than UTF-8 was ignored, so a Latin-1 "Zoë" was stored as "Zo\uFFFD". Now: a charset other than UTF-8 is 415, and
 * bytes that are not UTF-8 are 400 INVALID_JSON, naming where they start. A byte order mark is kept as it is (JSON
 * then refuses it, as before).
 *
 * Request bodies sent compressed (`Content-Encoding: gzip`, …) are not decoded by the server: 415 naming the header
 * (RFC 9110 §8.4), rather than a JSON error quoting compressed bytes or an import of gzip bytes as CSV (F13).
 */
import type { FastifyRequest } from "fastify";
import { PortraitError, show } from "../engine/errors.js";

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The declared `charset` parameter of a Content-Type, or null when there is none. */
function charsetOf(contentType: string | undefined): string | null {
  if (contentType === undefined) return null;
  const match = /;\s*charset\s*=\s*(?:"([^"]*)"|([^;\s]*))/i.exec(contentType);
  if (match === null) return null;
  return match[1] ?? match[2] ?? "";
}

/** The body's text, decoded as UTF-8; else the refusal: a charset other than UTF-8 (415), bytes not UTF-8 (400). */
export function decodeJsonBody(request: FastifyRequest, body: Buffer): string {
  const charset = charsetOf(request.headers["content-type"]);
  if (charset !== null && !/^utf-?8$/i.test(charset)) {
    throw new PortraitError(
      "UNSUPPORTED_MEDIA_TYPE",
      `JSON bodies are UTF-8: charset ${show(charset)} is not supported (send UTF-8, with charset=utf-8 or none)`,
    );
  }
  try {
    return utf8.decode(body);
  } catch {
    throw new PortraitError(
      "INVALID_JSON",
      `the body is not valid UTF-8 (bytes that are not UTF-8 at offset ${firstInvalidByte(body)}): JSON bodies are UTF-8`,
    );
  }
}

/** The offset of the first byte that cannot continue valid UTF-8 (only computed for a refused body). */
function firstInvalidByte(body: Buffer): number {
  // The longest prefix that decodes, by halving. With `stream`, a prefix that ends inside a character is no error,
  // so the prefixes that decode are exactly those before the fault.
  const decodes = (n: number): boolean => {
    try {
      new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(body.subarray(0, n), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  let lo = 0;
  let hi = body.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (decodes(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** A Content-Encoding the server does not apply to a request body: 415 naming the header; null when there is none. */
export function contentEncodingRefusal(request: FastifyRequest): PortraitError | null {
  const raw = request.headers["content-encoding"];
  if (raw === undefined) return null;
  const codings = String(raw)
    .split(",")
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== "" && c !== "identity");
  if (codings.length === 0) return null;
  return new PortraitError(
    "UNSUPPORTED_MEDIA_TYPE",
    `Content-Encoding ${show(String(raw))} is not supported: send the body uncompressed (no Content-Encoding, or identity)`,
  );
}
