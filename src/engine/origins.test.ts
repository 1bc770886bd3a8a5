import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PortraitError } from "./errors.js";
import { normaliseAllowedOrigin, originAllowed } from "./origins.js";

function refusal(value: string): string {
  try {
    normaliseAllowedOrigin(value, "allowedOrigins[0]");
  } catch (e) {
    expect(e).toBeInstanceOf(PortraitError);
    expect((e as PortraitError).code).toBe("INVALID_SETTING");
    expect((e as PortraitError).field).toBe("allowedOrigins[0]");
    return (e as PortraitError).message;
  }
  throw new Error(`${value} was accepted`);
}

describe("allowedOrigins entries", () => {
  it.each([
    ["*", "*"],
    ["https://shop.example", "https://shop.example"],
    ["https://Shop.Example:443/", "https://shop.example"],
    ["HTTP://LOCALHOST:3000", "http://localhost:3000"],
    ["https://bücher.example", "https://xn--bcher-kva.example"],
    ["https://*.Shop.Example", "https://*.shop.example"],
    ["https://*.shop.example:8443", "https://*.shop.example:8443"],
    ["https://*.co.uk", "https://*.co.uk"], // two labels: a public suffix, which the rule does not know (docs/sdk.md)
    ["capacitor://localhost", "capacitor://localhost"],
    ["https://[::1]:8443", "https://[::1]:8443"],
  ])("keeps %s as browsers spell it: %s", (value, kept) => {
    expect(normaliseAllowedOrigin(value, "allowedOrigins[0]")).toBe(kept);
  });

  it.each([
    ["shop.example", /with its scheme, such as https:\/\/shop\.example/],
    ["shop.example.com", /has no scheme: .*such as https:\/\/shop\.example\.com,/],
    ["localhost:9261", /has no scheme: .*such as https:\/\/localhost:9261,/],
    ["shop.example:8443", /has no scheme: .*such as https:\/\/shop\.example:8443,/],
    ["*.shop.example", /has no scheme: .*such as https:\/\/\*\.shop\.example,/],
    ["[::1]:8443", /has no scheme: .*such as https:\/\/\[::1\]:8443,/],
    ["capacitor:localhost", /must be an origin such as https:\/\/shop\.example/],
    ["https://shop.example/checkout", /no path: https:\/\/shop\.example/],
    ["https://shop.example?x=1", /no credentials, query or fragment/],
    ["https://shop.example#", /no credentials, query or fragment/],
    ["https://user:pw@shop.example", /no credentials/],
    ["null", /origin null/],
    ["file:///home/me/page.html", /origin null/],
    ["https://shop.*.example", /\* only as a whole first label/],
    ["https://*", /\* only as a whole first label|must be an origin/],
    ["not an origin at all", /must be an origin such as/],
    ["https://*.com", /at least two labels after "\*\."/],
    ["https://*.COM:8443", /at least two labels after "\*\."/],
    ["https://*.com.", /at least two labels after "\*\."/],
    ["http://*.localhost", /at least two labels after "\*\."/],
    ["capacitor://*.app", /at least two labels after "\*\."/],
  ])("refuses %s, naming the entry", (value, message) => {
    expect(refusal(value)).toMatch(message);
  });

  it("keeps every origin a browser can send as it is, and allows it", () => {
    const origin = fc
      .tuple(
        fc.constantFrom("http", "https"),
        fc.domain(),
        fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }),
      )
      .map(([scheme, host, port]) => new URL(`${scheme}://${host}${port === undefined ? "" : `:${port}`}`).origin);
    fc.assert(
      fc.property(origin, (o) => {
        expect(normaliseAllowedOrigin(o, "f")).toBe(o);
        expect(originAllowed([o], o)).toBe(true);
      }),
    );
  });
});

describe("originAllowed", () => {
  const allowed = ["https://*.shop.example", "http://localhost:3000"];
  it.each([
    ["https://www.shop.example", true],
    ["https://a.b.shop.example", true],
    ["http://localhost:3000", true],
    ["https://shop.example", false],
    ["http://www.shop.example", false],
    ["https://www.shop.example:8443", false],
    ["https://evilshop.example", false],
    ["https://www.shop.example.evil", false],
    ["https://x/.shop.example", false],
    ["http://localhost:30000", false],
    ["null", false],
  ])("%s → %s", (origin, expected) => {
    expect(originAllowed(allowed, origin)).toBe(expected);
  });

  it("allows everything under *", () => {
    expect(originAllowed(["*"], "https://any.example")).toBe(true);
  });
});
