/**
 * Request bodies that arrive too slowly. Node's own request timeout is off under fastify, so a client sending one
 * byte every few seconds (anyone can: the SDK's public key is in every page) would hold a connection and its buffers
 * for as long as it likes. A body that has not fully arrived within `ms` has its connection cut. Import uploads
 * stream gigabytes and are exempt once their key was accepted (their route sets `config.longBody`).
 */
import type { FastifyInstance } from "fastify";

declare module "fastify" {
  interface FastifyContextConfig {
    /** The route streams a body that may take long to arrive (imports): no deadline for it once authenticated. */
    longBody?: boolean;
  }
}

export function limitBodyTime(app: FastifyInstance, ms: number): void {
  const deadlines = new WeakMap<object, NodeJS.Timeout>();
  app.addHook("onRequest", async (request) => {
    const raw = request.raw;
    if (raw.complete) return;
    const timer = setTimeout(() => {
      if (!raw.complete) raw.socket.destroy();
    }, ms);
    timer.unref();
    deadlines.set(raw, timer);
    raw.once("end", () => clearTimeout(timer));
    raw.once("close", () => clearTimeout(timer));
  });
  // An upload is exempt once its key was accepted: a refused one (401) that keeps trickling is cut like any other.
  // The connection is not closed at the refusal itself: a client still sending would then often get a reset instead
  // of the answer.
  app.addHook("preHandler", async (request) => {
    if (request.routeOptions.config.longBody === true) clearTimeout(deadlines.get(request.raw));
  });
}
