/**
 * `Expect: 100-continue`: a client that asks before sending a body learns of a refusal its headers already earn
 * (an import larger than PORTRAIT_IMPORT_MAX_BYTES, by its Content-Length) before it sends a byte. Without this node
 * says "continue" to everyone; the refusal then came mid-upload, and the client, still writing, often lost the answer
 * to a broken pipe (`portrait import` showed "write EPIPE" instead of PAYLOAD_TOO_LARGE). curl asks too, for bodies
 * over 1 MB.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { FastifyInstance } from "fastify";
import type { PortraitError } from "../engine/errors.js";
import { errorBody, NOSNIFF, statusOf } from "./errors.js";

export function answerExpectContinue(
  app: FastifyInstance,
  refusalOf: (request: IncomingMessage) => PortraitError | null,
): void {
  app.server.on("checkContinue", (request: IncomingMessage, response: ServerResponse) => {
    const refusal = refusalOf(request);
    if (refusal === null) {
      response.writeContinue();
      app.server.emit("request", request, response);
      return;
    }
    response.writeHead(statusOf(refusal.code), {
      "content-type": "application/json; charset=utf-8",
      [NOSNIFF[0]]: NOSNIFF[1],
      connection: "close",
    });
    response.end(JSON.stringify(errorBody(refusal)));
  });
}
