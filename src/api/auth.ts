/**
 * API keys (API.md Conventions: Auth): a secret key as `Authorization: Bearer`, or a public key (`pk_…`) for
 * the SDK endpoints, also accepted as `?key=` so sendBeacon and simple CORS requests work. Only a public key may
 * travel in a URL: URLs are kept by proxies, access logs and browser history, where a secret key would leak.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import { PortraitError } from "../engine/errors.js";
import type { Account } from "../engine/types.js";
import type { Accounts } from "../pipeline/accounts.js";
import type { ApiKeyRow } from "../store/store.js";

/** Which key a route takes. */
export type Access = "none" | "secret" | "public";

declare module "fastify" {
  interface FastifyContextConfig {
    access?: Access;
    /** A POST that takes no body: an empty one is accepted whatever its Content-Type (app.ts). */
    bodyless?: boolean;
  }
  interface FastifyRequest {
    account: Account;
    apiKey: ApiKeyRow;
  }
}

function presentedKey(request: FastifyRequest): { key: string; inUrl: boolean } | null {
  const header = request.headers.authorization;
  if (typeof header === "string") {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m) return { key: m[1] as string, inUrl: false };
  }
  const key = (request.query as Record<string, unknown> | undefined)?.key;
  // `?key=a&key=b` reads as a list: a key was sent, but which one is meant is not for the server to guess.
  if (Array.isArray(key)) {
    throw new PortraitError(
      "UNAUTHORIZED",
      `the key was given more than once (?key= appears ${key.length} times): send one public key`,
      "key",
    );
  }
  return typeof key === "string" ? { key, inUrl: true } : null;
}

export function authHook(accounts: Accounts) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    // An unknown route is a 404 NOT_FOUND for everyone, key or not (API.md fixed codes).
    if (request.routeOptions.url === undefined) return;
    const access = request.routeOptions.config.access ?? "secret";
    if (access === "none") return;
    const presented = presentedKey(request);
    if (!presented) {
      throw new PortraitError(
        "UNAUTHORIZED",
        access === "public"
          ? "an API key is required: ?key=<public key> (pk_…)"
          : "an API key is required: Authorization: Bearer <secret key>",
      );
    }
    const auth = await accounts.authenticate(presented.key);
    if (!auth) throw new PortraitError("UNAUTHORIZED", "the API key is unknown or revoked");
    if (presented.inUrl && auth.key.kind === "secret") {
      throw new PortraitError(
        "UNAUTHORIZED",
        "a secret key must not be sent in the URL (?key= is for public keys): send it as Authorization: Bearer, " +
          "and replace this one, since the URL may have been logged on the way",
        "key",
      );
    }
    if (access === "secret" && auth.key.kind !== "secret") {
      throw new PortraitError(
        "FORBIDDEN",
        "this endpoint needs a secret key; a public key only reaches the SDK endpoints",
      );
    }
    request.account = auth.account;
    request.apiKey = auth.key;
  };
}
