/** API.md Account: the caller's account and its settings. */
import type { FastifyInstance } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { assertStorableText } from "../../engine/text.js";
import type { Account } from "../../engine/types.js";
import type { AppDeps } from "../app.js";
import { json, refusals } from "../openapi/responses.js";
import { ref } from "../openapi/schemas.js";

export function accountView(a: Account) {
  return { id: a.id, name: a.name, settings: a.settings };
}

export function accountRoutes({ accounts, portrait }: AppDeps) {
  return async (app: FastifyInstance) => {
    app.get(
      "/v1/account",
      {
        schema: {
          operationId: "getAccount",
          tags: ["account"],
          summary: "The caller's account and settings",
          response: { 200: json("The account", "Account") },
        },
      },
      async (request) => {
        const account = await accounts.get(request.account.id);
        if (!account) throw new PortraitError("UNAUTHORIZED", "the key's account no longer exists");
        return accountView(account);
      },
    );
    app.patch(
      "/v1/account/settings",
      {
        schema: {
          tags: ["account"],
          operationId: "updateAccountSettings",
          summary: "Change identityKeys, identityLimits, mergePolicy, timezone, allowedOrigins or publicProperties",
          body: ref("SettingsPatch"),
          response: {
            200: json("The account with its new settings", "Account"),
            ...refusals({
              400: ["INVALID_SETTING"],
              409: ["IDENTITY_KEY_CONFLICT"],
            }),
          },
        },
      },
      async (request) => {
        const account = await accounts.get(request.account.id);
        if (!account) throw new PortraitError("UNAUTHORIZED", "the key's account no longer exists");
        assertStorableText(request.body);
        return accountView(await portrait.updateSettings(accounts, account, request.body));
      },
    );
  };
}
