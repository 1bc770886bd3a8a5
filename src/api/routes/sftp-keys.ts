/** API.md Account: SFTP public keys of the account (the SFTP user name is the account id). */
import type { FastifyInstance } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { isPlainObject } from "../../engine/parse-record.js";
import { assertStorableText } from "../../engine/text.js";
import { addSftpKey, removeSftpKey, sftpKeyView } from "../../imports/sftp/keys.js";
import type { AppDeps } from "../app.js";

export function sftpKeyRoutes({ portrait }: AppDeps) {
  const store = portrait.store.imports;
  return async (app: FastifyInstance) => {
    app.post(
      "/v1/sftp/keys",
      {
        schema: {
          tags: ["sftp"],
          summary: "Register an SSH public key for the SFTP drop point",
          body: { type: "object" },
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
    app.get("/v1/sftp/keys", { schema: { tags: ["sftp"], summary: "The account's SFTP keys" } }, async (request) => ({
      keys: (await store.listSftpKeys(request.account.id)).map(sftpKeyView),
    }));
    app.delete<{ Params: { id: string } }>(
      "/v1/sftp/keys/:id",
      { schema: { tags: ["sftp"], summary: "Remove an SFTP key" } },
      async (request) => {
        await removeSftpKey(store, request.account.id, request.params.id);
        return { deleted: true };
      },
    );
  };
}
