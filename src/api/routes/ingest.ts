/** API.md Ingest: POST /v1/ingest, up to 1000 records, 200 even when some records fail. */
import type { FastifyInstance } from "fastify";
import { type AppDeps, JSON_BODY_LIMIT } from "../app.js";
import { acceptBatchJson } from "../batch-json.js";
import { json, refusals } from "../openapi/responses.js";
import { ref } from "../openapi/schemas.js";
import { countOutcomes } from "./sdk.js";

export function ingestRoutes({ portrait, metrics }: AppDeps) {
  return async (app: FastifyInstance) => {
    acceptBatchJson(app, "application/json", JSON_BODY_LIMIT);
    app.post(
      "/v1/ingest",
      {
        schema: {
          tags: ["ingest"],
          operationId: "ingest",
          summary: "Apply login, profile, event and token records in order; each record is atomic",
          body: ref("IngestBatch"),
          response: {
            200: json("Applied, even when some records failed (each in unprocessed, with its code)", "BatchResult"),
            ...refusals({ 400: ["INVALID_BATCH", "BATCH_TOO_LARGE"] }),
          },
        },
      },
      async (request) => {
        const result = await portrait.ingest(request.account, request.body);
        countOutcomes(metrics, result);
        return result;
      },
    );
  };
}
