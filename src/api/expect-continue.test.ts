/**
 * Expect: 100-continue on the wire: an import whose Content-Length is over PORTRAIT_IMPORT_MAX_BYTES is refused
 * before its body is sent; any other request is told to go on, and is served as usual.
 */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SECRET, startTestServer, type TestServer } from "../test-support/server.js";

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer({ PORTRAIT_IMPORT_MAX_BYTES: "1000" });
}, 30_000);

afterAll(async () => {
  await t?.close();
});

/** Sends the head of a request, waits for the server's first answer, then sends `body` if told to go on. */
async function ask(path: string, length: number, body: string): Promise<string> {
  const { port } = new URL(t.url);
  const socket = net.connect(Number(port), "127.0.0.1");
  let text = "";
  socket.setEncoding("utf8");
  let sent = false;
  socket.on("data", (chunk: string) => {
    text += chunk;
    if (!sent && text.startsWith("HTTP/1.1 100 Continue\r\n\r\n")) {
      sent = true;
      socket.write(body); // not end(): a half-closed connection is one node's server may close unanswered
    }
  });
  socket.write(
    `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRET}\r\nContent-Type: text/csv\r\n` +
      `Content-Length: ${length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
  );
  await new Promise((resolve) => socket.on("close", resolve));
  return text;
}

describe("Expect: 100-continue", () => {
  it("refuses an import over the limit by its Content-Length, before the body, in the contract's shape", async () => {
    const answer = await ask("/v1/imports?kind=profiles", 5_000_000, "");
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).not.toContain("100 Continue");
    expect(answer).toContain(
      '{"error":{"code":"PAYLOAD_TOO_LARGE","message":"an import file is at most 1000 bytes (PORTRAIT_IMPORT_MAX_BYTES)"}}',
    );
  });

  it("tells a request within the limit to go on, and serves it", async () => {
    const csv = "Email,Name\ncontinue@x.io,Go\n";
    const answer = await ask("/v1/imports?kind=profiles", Buffer.byteLength(csv), csv);
    expect(answer).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 202 /);
    expect(answer).toMatch(/"status":"queued"/);
  });
});
