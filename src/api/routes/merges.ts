/** API.md: explicit merge and its undo (SEMANTICS §7). */
import type { FastifyInstance } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { isPlainObject } from "../../engine/parse-record.js";
import type { AppDeps } from "../app.js";
import { profileId } from "./profiles.js";

export function mergeRoutes({ portrait }: AppDeps) {
  return async (app: FastifyInstance) => {
    app.post(
      "/v1/profiles/merge",
      {
        schema: {
          tags: ["merges"],
          summary: "Merge sourceId into targetId (logged, undoable)",
          body: { type: "object" },
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
        schema: { tags: ["merges"], summary: "Undo a merge: both people restored, later records replayed" },
      },
      async (request) => portrait.undoMerge(request.account, request.params.mergeId),
    );
  };
}
