/**
 * JSON bodies of the batch routes (/v1/ingest, /v1/sdk/batch). Fastify's guard refuses a whole body with a
 * `__proto__` key anywhere in it, but API.md fails a bad record alone: one record with such a key in its properties
 * must not cost the other 999. JSON.parse keeps `__proto__` as an own key, which is inert until code copies keys by
 * assignment, and the engine's edge walk (engine/text.ts) refuses it per record as `INVALID_KEY` before any such code
 * runs. The envelope itself is not a record, so a `__proto__` key there is still the whole body's fault.
 */
import type { FastifyInstance, FastifyRequest } from "fastify";
import { PortraitError } from "../engine/errors.js";
import { emptyJsonBody, invalidJsonBody } from "./errors.js";
import { decodeJsonBody } from "./json-body.js";

export function parseBatchJson(text: string): unknown {
  if (text === "") throw emptyJsonBody();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw invalidJsonBody((e as Error).message);
  }
  if (typeof body === "object" && body !== null && Object.hasOwn(body, "__proto__")) {
    throw new PortraitError("INVALID_JSON", "the body must not have a __proto__ key", "__proto__");
  }
  return body;
}

/** Registers `type` as read by `parseBatchJson` in this plugin's routes only (fastify encapsulation). */
export function acceptBatchJson(app: FastifyInstance, type: string, bodyLimit: number): void {
  if (app.hasContentTypeParser(type)) app.removeContentTypeParser(type);
  app.addContentTypeParser(
    type,
    { parseAs: "buffer", bodyLimit },
    (request: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void) => {
      try {
        done(null, parseBatchJson(decodeJsonBody(request, body as Buffer)));
      } catch (e) {
        done(e as Error);
      }
    },
  );
}
