/** API.md Account: SFTP public keys of the account (the SFTP user name is the account id). */
import type { FastifyInstance } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { isPlainObject } from "../../engine/parse-record.js";
import { assertStorableText } from "../../engine/text.js";
import { addSftpKey, removeSftpKey, sftpKeyView } from "../../imports/sftp/keys.js";
import { pageByCreation } from "../../pipeline/list-page.js";
import type { AppDeps } from "../app.js";
import { json, pageQuery, refusals } from "../openapi/responses.js";
import { ref } from "../openapi/schemas.js";

export function sftpKeyRoutes({ portrait }: AppDeps) {
  const store = portrait.store.imports;
  return async (app: FastifyInstance) => {
    app.post(
      "/v1/sftp/keys",
      {
        schema: {
          tags: ["sftp"],
          operationId: "createSftpKey",
          summary: "Register an SSH public key for the SFTP drop point",
          body: ref("SftpKeyCreate"),
          response: {
            201: json("Registered", "NewSftpKey"),
            ...refusals({ 400: ["INVALID_VALUE", "INVALID_BODY"] }),
          },
        },
      },
      async (request, reply) => {
        const body = request.body;
        if (!isPlainObject(body)) throw new PortraitError("INVALID_BODY", 'the body must be {"name", "publicKey"}');
        assertStorableText(body);
        const row = await addSftpKey(store, request.account.id, body.name, body.publicKey);
        reply.status(201);
        return { id: row.id, name: row.name, fingerprint: row.fingerprint };
      },
    );
    app.get<{ Querystring: { cursor?: string; limit?: string } }>(
      "/v1/sftp/keys",
      {
        schema: {
          operationId: "listSftpKeys",
          tags: ["sftp"],
          summary: "The account's SFTP keys, oldest first",
          querystring: pageQuery,
          response: { 200: json("A page of keys", "SftpKeyList"), ...refusals({ 400: ["INVALID_VALUE"] }) },
        },
      },
      async (request) => {
        const keys = await store.listSftpKeys(request.account.id);
        const page = pageByCreation(keys, request.query, "sftp-keys");
        return { keys: page.items.map(sftpKeyView), nextCursor: page.nextCursor };
      },
    );
    app.delete<{ Params: { id: string } }>(
      "/v1/sftp/keys/:id",
      {
        schema: {
          operationId: "deleteSftpKey",
          tags: ["sftp"],
          summary: "Remove an SFTP key",
          response: { 200: json("Removed", "Deleted"), ...refusals({ 404: ["UNKNOWN_KEY"] }) },
        },
      },
      async (request) => {
        await removeSftpKey(store, request.account.id, request.params.id);
        return { deleted: true };
      },
    );
  };
}
