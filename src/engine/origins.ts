/**
 * `allowedOrigins` (API.md Account settings): the sites whose pages may call the SDK endpoints. A browser sends its
 * page's origin exactly as `new URL(page).origin` spells it (lower case, punycode, no default port), so an entry is
 * kept in that spelling: `https://Shop.Example:443/` and `https://shop.example` are one origin, and an entry that
 * could never equal an Origin header (a path, a query, no scheme) is refused rather than stored to silently match
 * nothing. `https://*.shop.example` allows every subdomain of shop.example (not shop.example itself); a wildcard needs
 * at least two labels after it (`https://*.com` is refused).
 */
import { PortraitError } from "./errors.js";

const WILDCARD = "*.";
// What lies between a wildcard entry's scheme and its suffix: one or more DNS labels.
const SUBDOMAIN = /^[a-z0-9-]+(\.[a-z0-9-]+)*$/;
// An entry that is a host name, a wildcard host or an IP, with an optional port, but no scheme.
const HOST_ONLY = /^(\*\.)?([\w.-]+|\[[\da-f:.]+\])(:\d+)?$/i;

/** The entry as browsers would spell the origin, or INVALID_SETTING naming `field`. */
export function normaliseAllowedOrigin(value: string, field: string): string {
  if (value === "*") return value;
  const bad = (problem: string): never => {
    throw new PortraitError("INVALID_SETTING", `${field} ${problem}, got ${JSON.stringify(value)}`, field);
  };
  if (value === "null" || value.startsWith("file:")) {
    bad("cannot allow the origin null (file pages, sandboxed frames): any page can claim it");
  }
  // A host (and port) without its scheme: `shop.example` is no URL, and `localhost:9261` reads as the scheme
  // `localhost:` with the path `9261`, which the path check below would report as "localhost://".
  const noScheme = (): never =>
    bad(
      HOST_ONLY.test(value)
        ? `has no scheme: it must be an origin with its scheme, such as https://${value}`
        : "must be an origin such as https://shop.example",
    );
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return noScheme();
  }
  const special = url.protocol === "http:" || url.protocol === "https:";
  // Every origin a browser sends is scheme://host; for http(s) the parser adds the slashes itself.
  if (!special && !value.slice(url.protocol.length).startsWith("//")) noScheme();
  if (url.username !== "" || url.password !== "" || /[?#]/.test(value)) {
    bad("must be an origin only (scheme, host and port), with no credentials, query or fragment");
  }
  if (url.pathname !== "/" && url.pathname !== "") {
    bad(`must be an origin only (scheme, host and port), with no path: ${url.protocol}//${url.host}`);
  }
  if (url.host === "") bad("must name a host");
  const host = url.host.startsWith(WILDCARD) ? url.host.slice(WILDCARD.length) : url.host;
  if (host.includes("*")) bad("may use * only as a whole first label, as in https://*.shop.example");
  // `https://*.com` allows every .com site: nearly `*`, while looking like a restriction. Two labels after `*.` keep
  // a wildcard off a top-level domain; that is not a public-suffix list, so `*.co.uk` passes (docs/sdk.md).
  const under = url.hostname.startsWith(WILDCARD) ? url.hostname.slice(WILDCARD.length) : null;
  if (under !== null && under.split(".").filter((label) => label !== "").length < 2) {
    bad(
      `must name at least two labels after "*." (https://*.shop.example): a wildcard over a top-level domain allows ` +
        "every site under it",
    );
  }
  // http(s) origins are spelled by the URL parser itself; other schemes (capacitor://localhost) have an opaque
  // origin there, and browsers send them as scheme://host.
  return special ? url.origin : `${url.protocol}//${url.host}`;
}

/** Whether a page of `origin` may use the SDK endpoints under the (normalised) `allowed` entries. */
export function originAllowed(allowed: readonly string[], origin: string): boolean {
  for (const entry of allowed) {
    if (entry === "*" || entry === origin) return true;
    const star = entry.indexOf(`//${WILDCARD}`);
    if (star < 0) continue;
    const prefix = entry.slice(0, star + 2);
    const suffix = entry.slice(star + 2 + WILDCARD.length - 1);
    if (origin.length > prefix.length + suffix.length && origin.startsWith(prefix) && origin.endsWith(suffix)) {
      if (SUBDOMAIN.test(origin.slice(prefix.length, origin.length - suffix.length))) return true;
    }
  }
  return false;
}
