/**
 * API.md Browser SDK endpoints: the ingest batch for device handles only, with a public key, JSON also accepted as
 * text/plain; CORS for the account's allowed origins. The SDK never reads profiles except public properties.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { originAllowed } from "../../engine/origins.js";
import type { Account } from "../../engine/types.js";
import type { BatchResult } from "../../pipeline/portrait.js";
import { type AppDeps, JSON_BODY_LIMIT } from "../app.js";
import { acceptBatchJson } from "../batch-json.js";
import type { Metrics } from "../metrics.js";
import { json, refusals } from "../openapi/responses.js";
import { ref } from "../openapi/schemas.js";

/** One increment per outcome, not per record: labelled increments hash their labels, and a batch has 1,000 records. */
export function countOutcomes(metrics: Metrics, result: BatchResult): void {
  const tally = new Map<string, number>();
  for (const r of result.results) tally.set(r.outcome, (tally.get(r.outcome) ?? 0) + 1);
  for (const u of result.unprocessed) tally.set(u.code, (tally.get(u.code) ?? 0) + 1);
  for (const [outcome, n] of tally) metrics.records.inc({ outcome }, n);
}

function allowOrigin(account: Account | undefined, request: FastifyRequest, reply: FastifyReply): void {
  const origin = request.headers.origin;
  if (!origin) return;
  // A refused key or a refused origin (both 4xx with nothing done) is answered readably: the refusal reveals nothing,
  // and without CORS headers the SDK would see only a network error and retry forever instead of reporting it.
  const refusal = account ? reply.statusCode === 403 : reply.statusCode === 401;
  if (refusal || (account && originAllowed(account.settings.allowedOrigins, origin))) {
    reply.header("access-control-allow-origin", origin);
    reply.header("vary", "Origin");
  }
}

export function sdkRoutes({ portrait, metrics }: AppDeps) {
  return async (app: FastifyInstance) => {
    // The SDK posts JSON as text/plain so that sendBeacon and simple CORS requests work (API.md SDK endpoints). Only
    // here: registered in this plugin, the parser leaves the secret routes refusing text/plain with 415.
    acceptBatchJson(app, "text/plain", JSON_BODY_LIMIT);
    acceptBatchJson(app, "application/json", JSON_BODY_LIMIT);
    // A page of a site the account does not list is refused before anything is read or written. CORS headers alone
    // would not stop it: a text/plain POST (sendBeacon) is sent and processed whatever the answer's headers say.
    // Requests without an Origin (servers, apps) are not browsers' and pass.
    app.addHook("preHandler", async (request) => {
      const origin = request.headers.origin;
      if (origin === undefined || request.account === undefined) return;
      if (!originAllowed(request.account.settings.allowedOrigins, origin)) {
        throw new PortraitError(
          "FORBIDDEN",
          `pages of ${JSON.stringify(origin)} may not use this account's SDK endpoints: add the origin to the ` +
            "account's allowedOrigins",
          "origin",
        );
      }
    });
    // Errors too must carry CORS headers, or the browser hides them from the SDK.
    app.addHook("onSend", async (request, reply, payload) => {
      allowOrigin(request.account, request, reply);
      return payload;
    });
    app.options("/v1/sdk/*", { config: { access: "none" }, schema: { hide: true } }, async (request, reply) => {
      if (request.headers.origin) {
        reply.header("access-control-allow-origin", request.headers.origin);
        reply.header("access-control-allow-methods", "GET, POST, OPTIONS");
        reply.header("access-control-allow-headers", "content-type");
        reply.header("access-control-max-age", "600");
        reply.header("vary", "Origin");
      }
      // Returned, so that fastify does not send the async handler's undefined again ("headers already sent").
      return reply.status(204).send();
    });
    app.post(
      "/v1/sdk/batch",
      {
        config: { access: "public" },
        schema: {
          tags: ["sdk"],
          operationId: "sdkBatch",
          summary: "The ingest batch for browsers: device handles only, public key as ?key=pk_…",
          description:
            "The records of POST /v1/ingest with `deviceId` handles only (others fail alone, HANDLE_NOT_ALLOWED). " +
            "The JSON may also be sent as text/plain, so that sendBeacon and simple CORS requests work. With " +
            "`sentAt`, records' numeric ts are corrected for the sender's clock skew; a `sentAt` that is not epoch " +
            "seconds (a finite number, after 1970, up to year 9999) refuses the batch (INVALID_VALUE).",
          querystring: { type: "object", properties: { key: { type: "string" } } },
          body: ref("SdkBatch"),
          consumes: ["application/json", "text/plain"],
          response: {
            200: json("Applied, even when some records failed (each in unprocessed, with its code)", "BatchResult"),
            ...refusals({ 400: ["INVALID_BATCH", "BATCH_TOO_LARGE", "INVALID_VALUE"] }),
          },
        },
      },
      async (request) => {
        const result = await portrait.ingest(request.account, request.body, {
          deviceHandlesOnly: true,
          readsSentAt: true,
        });
        countOutcomes(metrics, result);
        return result;
      },
    );
    app.get<{ Querystring: { deviceId?: string | string[] } }>(
      "/v1/sdk/profile",
      {
        config: { access: "public" },
        schema: {
          operationId: "getSdkProfile",
          tags: ["sdk"],
          summary: "The account's publicProperties of a device's profile",
          querystring: {
            type: "object",
            required: ["deviceId"],
            properties: { key: { type: "string" }, deviceId: { type: "string", minLength: 1 } },
          },
          response: {
            200: json("The public properties the profile has (none when the device is unknown)", "SdkProfile"),
            ...refusals({ 400: ["MISSING_HANDLE", "MULTIPLE_HANDLES"] }),
          },
        },
      },
      async (request) => {
        const deviceId = request.query.deviceId;
        if (Array.isArray(deviceId)) {
          // Two handles in one request, as two in one record (SEMANTICS §11 Handles).
          throw new PortraitError(
            "MULTIPLE_HANDLES",
            `deviceId was given ${deviceId.length} times; name one device`,
            "deviceId",
          );
        }
        if (typeof deviceId !== "string" || deviceId.length === 0) {
          throw new PortraitError("MISSING_HANDLE", "deviceId is required", "deviceId");
        }
        const [view] = await portrait.findProfiles(request.account, { kind: "device", deviceId });
        const allowed = request.account.settings.publicProperties;
        const properties: Record<string, unknown> = {};
        for (const key of allowed)
          if (view && view.properties[key] !== undefined) properties[key] = view.properties[key];
        return { properties };
      },
    );
  };
}
