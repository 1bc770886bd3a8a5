/** Slow and unread request bodies: connections cut or closed, keep-alive kept for everything else. */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SECRET, startTestServer, type TestServer } from "../test-support/server.js";

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ PORTRAIT_JSON_BODY_TIMEOUT_MS: "400" });
});
afterAll(async () => {
  await s.close();
});

/** A raw connection to the server: what it received, and when it was closed. */
function connect(): { socket: net.Socket; received: () => string; closed: Promise<number> } {
  const u = new URL(s.url);
  const socket = net.connect(Number(u.port), u.hostname);
  let text = "";
  socket.on("data", (d) => {
    text += d.toString();
  });
  socket.on("error", () => undefined);
  const started = Date.now();
  const closed = new Promise<number>((resolve) => socket.on("close", () => resolve(Date.now() - started)));
  return { socket, received: () => text, closed };
}

describe("request bodies", () => {
  it("cuts a JSON body that trickles in past its deadline, and stores nothing of it", async () => {
    const c = connect();
    const body = JSON.stringify({ records: [{ type: "event", deviceId: "slow-1", name: "E" }] });
    c.socket.write(
      `POST /v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRET}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
    );
    const trickle = setInterval(() => c.socket.write(" "), 100);
    const after = await c.closed;
    clearInterval(trickle);
    expect(after).toBeLessThan(5000);
    expect((await s.api("GET", "/v1/profiles?deviceId=slow-1")).body.profiles).toEqual([]);
  });

  it("answers a refused upload at once, and cuts it at the deadline if it keeps trickling", async () => {
    const c = connect();
    c.socket.write(
      "POST /v1/imports?kind=profiles HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 100000\r\n\r\nE",
    );
    const trickle = setInterval(() => c.socket.write("x"), 100);
    const after = await c.closed;
    clearInterval(trickle);
    expect(c.received()).toMatch(/^HTTP\/1\.1 401/);
    expect(after).toBeLessThan(5000);
  });

  it("keeps ordinary requests' connections alive", async () => {
    const c = connect();
    c.socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    const body = JSON.stringify({ records: [] });
    c.socket.write(
      `POST /v1/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRET}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(c.received().match(/HTTP\/1\.1 200/g)).toHaveLength(2);
    expect(c.received().toLowerCase()).not.toContain("connection: close");
    expect(c.socket.destroyed).toBe(false);
    c.socket.destroy();
  });
});
