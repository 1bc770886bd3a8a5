/**
 * Request bodies that arrive too slowly. Node's own request timeout is off under fastify, so a client sending one
 * byte every few seconds (anyone can: the SDK's public key is in every page) would hold a connection and its buffers
 * for as long as it likes. A JSON body (at most 5 MB) that has not fully arrived within `ms` has its connection cut.
 * Import uploads stream gigabytes and are exempt (their route sets `config.longBody`).
 */
import type { FastifyInstance } from "fastify";

declare module "fastify" {
  interface FastifyContextConfig {
    /** The route streams a body that may take long to arrive (imports): no deadline for it. */
    longBody?: boolean;
  }
}

export function limitBodyTime(app: FastifyInstance, ms: number): void {
  app.addHook("onRequest", async (request) => {
    const raw = request.raw;
    if (raw.complete || request.routeOptions.config.longBody === true) return;
    const timer = setTimeout(() => {
      if (!raw.complete) raw.socket.destroy();
    }, ms);
    timer.unref();
    raw.once("end", () => clearTimeout(timer));
    raw.once("close", () => clearTimeout(timer));
  });
  // An answer sent before its request's body was read (a refused key, a 413) closes the connection: otherwise node
  // would go on reading whatever the client still trickles in, to keep the connection for another request.
  app.addHook("onSend", async (request, reply, payload) => {
    if (!request.raw.complete) reply.header("connection", "close");
    return payload;
  });
}
