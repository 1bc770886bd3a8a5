/** API.md: explicit merge and its undo (SEMANTICS §7). */
import type { FastifyInstance } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { isPlainObject } from "../../engine/parse-record.js";
import type { AppDeps } from "../app.js";
import { json, refusals } from "../openapi/responses.js";
import { ref } from "../openapi/schemas.js";
import { profileId } from "./profiles.js";

export function mergeRoutes({ portrait }: AppDeps) {
  return async (app: FastifyInstance) => {
    app.post(
      "/v1/profiles/merge",
      {
        schema: {
          tags: ["merges"],
          operationId: "mergeProfiles",
          summary: "Merge sourceId into targetId (logged, undoable)",
          body: ref("MergeRequest"),
          response: {
            200: json("The merge id and the merged profile", "MergeResult"),
            ...refusals({ 400: ["INVALID_MERGE"], 404: ["UNKNOWN_PROFILE"] }),
          },
        },
      },
      async (request) => {
        const body = request.body;
        if (!isPlainObject(body) || typeof body.targetId !== "string" || typeof body.sourceId !== "string") {
          throw new PortraitError("INVALID_MERGE", 'the body must be {"targetId": "…", "sourceId": "…"}', "targetId");
        }
        return portrait.merge(
          request.account,
          profileId(body.targetId, "targetId"),
          profileId(body.sourceId, "sourceId"),
        );
      },
    );
    app.post<{ Params: { mergeId: string } }>(
      "/v1/merges/:mergeId/undo",
      {
        config: { bodyless: true },
        schema: {
          operationId: "undoMerge",
          tags: ["merges"],
          summary: "Undo a merge: both people restored, later records replayed",
          response: {
            200: json("Both profiles as restored", "UndoResult"),
            ...refusals({ 404: ["UNKNOWN_MERGE", "UNKNOWN_PROFILE"], 409: ["MERGE_NOT_UNDOABLE", "ALREADY_UNDONE"] }),
          },
        },
      },
      async (request) => portrait.undoMerge(request.account, request.params.mergeId),
    );
  };
}
