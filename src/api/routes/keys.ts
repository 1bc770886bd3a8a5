/** API.md Keys: list, create (shown once), revoke. */
import type { FastifyInstance } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { isPlainObject } from "../../engine/parse-record.js";
import { assertStorableText } from "../../engine/text.js";
import { apiKeyView } from "../../pipeline/accounts.js";
import { pageByCreation } from "../../pipeline/list-page.js";
import type { AppDeps } from "../app.js";
import { json, pageQuery, refusals } from "../openapi/responses.js";
import { ref } from "../openapi/schemas.js";

export function keyRoutes({ accounts, portrait }: AppDeps) {
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: { cursor?: string; limit?: string } }>(
      "/v1/keys",
      {
        schema: {
          operationId: "listKeys",
          tags: ["keys"],
          summary: "The account's API keys, oldest first (secrets are never shown again)",
          querystring: pageQuery,
          response: {
            200: json("A page of keys, revoked ones included", "KeyList"),
            ...refusals({ 400: ["INVALID_VALUE"] }),
          },
        },
      },
      async (request) => {
        const keys = await portrait.store.listApiKeys(request.account.id);
        const page = pageByCreation(keys, request.query, "keys");
        return { keys: page.items.map(apiKeyView), nextCursor: page.nextCursor };
      },
    );
    app.post(
      "/v1/keys",
      {
        schema: {
          operationId: "createKey",
          tags: ["keys"],
          summary: "Create a key; the response shows it once",
          body: ref("KeyCreate"),
          response: {
            201: json("The new key, with the key itself", "NewKey"),
            ...refusals({ 400: ["INVALID_VALUE", "INVALID_BODY"] }),
          },
        },
      },
      async (request, reply) => {
        const body = request.body;
        if (!isPlainObject(body)) throw new PortraitError("INVALID_BODY", 'the body must be {"kind", "name"}');
        assertStorableText(body);
        const created = await accounts.createKey(
          request.account.id,
          body.kind as never,
          (body.name ?? "unnamed") as string,
        );
        reply.status(201);
        return { ...apiKeyView(created.row), key: created.key };
      },
    );
    app.delete<{ Params: { id: string } }>(
      "/v1/keys/:id",
      {
        schema: {
          operationId: "revokeKey",
          tags: ["keys"],
          summary: "Revoke a key",
          response: { 200: json("Revoked", "Revoked"), ...refusals({ 404: ["UNKNOWN_KEY"] }) },
        },
      },
      async (request) => {
        if (!(await accounts.revokeKey(request.account.id, request.params.id))) {
          throw new PortraitError("UNKNOWN_KEY", `key ${request.params.id} does not exist`, "id");
        }
        return { revoked: true };
      },
    );
  };
}
