import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "./logger.js";

describe("the server's logger", () => {
  it("never writes an Authorization header, even at trace where multipart logs its headers", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const logger = createLogger("trace", sink);
    const authorization = "Bearer sk_secret_0123456789abcdef";
    logger.trace({ busboyOptions: { headers: { authorization, "content-type": "multipart/form-data" } } }, "busboy");
    logger.info({ headers: { authorization } }, "headers");
    logger.info({ req: { headers: { authorization } } }, "request");
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(line).not.toContain("sk_secret");
    expect(JSON.parse(lines[0]!).busboyOptions.headers).toEqual({
      authorization: "[redacted]",
      "content-type": "multipart/form-data",
    });
  });
});
