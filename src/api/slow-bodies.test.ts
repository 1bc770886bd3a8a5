/** Slow and unread request bodies: connections cut or closed, keep-alive kept for everything else. */
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SECRET, startTestServer, type TestServer } from "../test-support/server.js";

let s: TestServer;
beforeAll(async () => {
  s = await startTestServer({ PORTRAIT_JSON_BODY_TIMEOUT_MS: "400", PORTRAIT_HTTP_HEADERS_TIMEOUT_MS: "300" });
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
  socket.on("end", () => socket.destroy());
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

describe("connections before a request (audit F4: 20k idle sockets used up the file descriptors)", () => {
  it("closes a connection that sends nothing", async () => {
    const c = connect();
    await c.closed;
    expect(c.received()).toBe("");
  });

  it("closes a connection that trickles its headers and never ends them, telling it why", async () => {
    const c = connect();
    c.socket.write("POST /v1/ingest HTTP/1.1\r\nHost: x\r\n");
    let n = 0;
    const trickle = setInterval(() => c.socket.write(`X-A${n++}: b\r\n`), 50);
    await c.closed;
    clearInterval(trickle);
    expect(c.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(c.received()).toContain('"code":"INVALID_REQUEST"');
  });

  it("does not cut an authenticated import upload that takes longer than the headers' deadline", async () => {
    const c = connect();
    const rows = Array.from({ length: 20 }, (_, i) => `long${i}@x.io\n`);
    const body = `Email\n${rows.join("")}`;
    c.socket.write(
      `POST /v1/imports?kind=profiles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${SECRET}\r\n` +
        `Content-Type: text/csv\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\nEmail\n`,
    );
    // 20 rows, one every 100 ms: 2 s, several times the 300 ms headers deadline and the 400 ms JSON body one.
    for (const row of rows) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      c.socket.write(row);
    }
    for (let i = 0; i < 200 && !/\r\n\r\n/.test(c.received()); i++) await new Promise((r) => setTimeout(r, 20));
    expect(c.received()).toMatch(/^HTTP\/1\.1 202 /);
    c.socket.destroy();
  });
});
