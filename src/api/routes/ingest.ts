/** API.md Ingest: POST /v1/ingest, up to 1000 records, 200 even when some records fail. */
import type { FastifyInstance } from "fastify";
import { type AppDeps, JSON_BODY_LIMIT } from "../app.js";
import { acceptBatchJson } from "../batch-json.js";
import { countOutcomes } from "./sdk.js";

export function ingestRoutes({ portrait, metrics }: AppDeps) {
  return async (app: FastifyInstance) => {
    acceptBatchJson(app, "application/json", JSON_BODY_LIMIT);
    app.post(
      "/v1/ingest",
      {
        schema: {
          tags: ["ingest"],
          summary: "Apply login, profile, event and token records in order; each record is atomic",
          body: {
            type: "object",
            required: ["records"],
            properties: { records: { type: "array", maxItems: 1000, items: { type: "object" } } },
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
