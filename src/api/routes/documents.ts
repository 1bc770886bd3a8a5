/** API.md Compartment documents: one per (compartmentId, userAccountId), at most 64 KB. */
import type { FastifyInstance } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { isPlainObject } from "../../engine/parse-record.js";
import { assertStorableText } from "../../engine/text.js";
import type { JsonValue } from "../../engine/types.js";
import { pageOfList } from "../../pipeline/list-page.js";
import { documentView } from "../../pipeline/portrait.js";
import type { AppDeps } from "../app.js";
import { json, pageQuery, refusals } from "../openapi/responses.js";
import { ref } from "../openapi/schemas.js";
import { profileId } from "./profiles.js";

type DocParams = { Params: { id: string; compartmentId: string; userAccountId: string } };

const unknownDocument = refusals({ 400: ["INVALID_VALUE"], 404: ["UNKNOWN_PROFILE", "UNKNOWN_DOCUMENT"] });

function docRef(params: DocParams["Params"]) {
  for (const field of ["compartmentId", "userAccountId"] as const) {
    const v = params[field];
    if (v.length === 0 || v.length > 256)
      throw new PortraitError("INVALID_VALUE", `${field} must be 1-256 characters`, field);
  }
  return { compartmentId: params.compartmentId, userAccountId: params.userAccountId };
}

export function documentRoutes({ portrait }: AppDeps) {
  return async (app: FastifyInstance) => {
    const path = "/v1/profiles/:id/documents/:compartmentId/:userAccountId";
    app.put<DocParams>(
      path,
      {
        schema: {
          tags: ["documents"],
          operationId: "putDocument",
          summary: "Store a profile document (replaces it; system fields kept)",
          body: ref("DocumentBody"),
          response: {
            200: json("The stored document", "Document"),
            ...refusals({
              400: ["INVALID_DOCUMENT", "INVALID_VALUE", "INVALID_KEY", "NESTING_TOO_DEEP"],
              404: ["UNKNOWN_PROFILE"],
              409: ["IDENTITY_CONFLICT"],
              413: ["DOCUMENT_TOO_LARGE", "PAYLOAD_TOO_LARGE"],
            }),
          },
        },
      },
      async (request) => {
        const body = request.body;
        if (!isPlainObject(body))
          throw new PortraitError("INVALID_DOCUMENT", "a document must be a JSON object", "body");
        assertStorableText(body);
        const id = profileId(request.params.id);
        const r = docRef(request.params);
        await portrait.applyAtPath(request.account, {
          type: "document",
          ts: portrait.clock.now(),
          handle: { kind: "profile", profileId: id },
          ...r,
          mode: "put",
          body: body as { [key: string]: JsonValue },
          bodyField: "body",
        });
        return portrait.getDocument(request.account, id, r);
      },
    );
    app.get<DocParams>(
      path,
      {
        schema: {
          operationId: "getDocument",
          tags: ["documents"],
          summary: "A profile document",
          response: { 200: json("The document", "Document"), ...unknownDocument },
        },
      },
      async (request) => portrait.getDocument(request.account, profileId(request.params.id), docRef(request.params)),
    );
    app.delete<DocParams>(
      path,
      {
        schema: {
          operationId: "deleteDocument",
          tags: ["documents"],
          summary: "Delete a profile document",
          response: { 200: json("Deleted", "Deleted"), ...unknownDocument },
        },
      },
      async (request) => {
        const id = profileId(request.params.id);
        const r = docRef(request.params);
        await portrait.getDocument(request.account, id, r);
        await portrait.applyAtPath(request.account, {
          type: "document",
          ts: portrait.clock.now(),
          handle: { kind: "profile", profileId: id },
          ...r,
          mode: "delete",
          body: {},
        });
        return { deleted: true };
      },
    );
    app.get<{ Params: { id: string }; Querystring: { cursor?: string; limit?: string } }>(
      "/v1/profiles/:id/documents",
      {
        schema: {
          operationId: "listDocuments",
          tags: ["documents"],
          summary: "All documents of a profile, a page at a time, by compartment id then user account id",
          querystring: pageQuery,
          response: {
            200: json("A page of documents", "DocumentList"),
            ...refusals({ 400: ["INVALID_VALUE"], 404: ["UNKNOWN_PROFILE"] }),
          },
        },
      },
      async (request) => {
        const documents = await portrait.listDocuments(request.account, profileId(request.params.id));
        // The list is the person's: a cursor of another person's documents is another list's.
        const list = `documents:${documents[0]?.profileId ?? request.params.id}`;
        const page = pageOfList(documents, (d) => [d.compartmentId, d.userAccountId], request.query, list);
        return { documents: page.items.map(documentView), nextCursor: page.nextCursor };
      },
    );
  };
}
