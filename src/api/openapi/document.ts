/**
 * The OpenAPI 3.1 document served at GET /v1/openapi.json (API.md: what the contract leaves open is documented there).
 * Route files declare their operation (operationId, parameters, body, success and specific refusals); what follows
 * from a route's configuration is added here once for all: its security (config.access, auth.ts), the refusals every
 * keyed route can answer (401, 403), those of every JSON body (400 INVALID_JSON, 413, 415), of a path parameter the
 * stores cannot hold (400), and the bare 500.
 */
import type { SwaggerOptions } from "@fastify/swagger";
import type { RouteOptions } from "fastify";
import type { Access } from "../auth.js";
import { type ResponseObject, refusal } from "./responses.js";

export const swaggerOptions: SwaggerOptions = {
  openapi: {
    openapi: "3.1.0",
    info: {
      title: "Portrait API",
      version: "1.0.0",
      description:
        'Self-hostable user-profile engine (v1 contract). Every refusal is `{"error": {"code", "message", ' +
        '"field"?}}` with a 4xx status; lists are paged with an opaque `cursor` and answer `nextCursor` (null at the end).',
    },
    components: {
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description: "A secret key (sk_…); on the SDK routes also a public key",
        },
        publicKey: {
          type: "apiKey",
          in: "query",
          name: "key",
          description: "A public key (pk_…) in the URL, SDK routes only; a secret key here is refused (401, field key)",
        },
      },
    },
    security: [{ bearer: [] }],
  },
  // Components are named by their $id (schemas.ts), not def-0, def-1 …
  refResolver: {
    buildLocalReference: (json, _baseUri, _fragment, i) => (json.$id as string | undefined) ?? `def-${i}`,
  },
};

const SECURITY: Record<Access, Array<Record<string, string[]>> | undefined> = {
  secret: undefined, // the document's global requirement
  public: [{ bearer: [] }, { publicKey: [] }],
  none: [],
};

type Responses = Record<string, ResponseObject>;

/** Schemas already completed: fastify hands a GET's schema to its HEAD route as well. */
const done = new WeakSet<object>();

/** onRoute: completes a documented route's operation from its configuration (see the file comment). */
export function documentRoute(route: RouteOptions): void {
  const schema = route.schema as (Record<string, unknown> & { response?: Responses; hide?: boolean }) | undefined;
  if (!schema || schema.hide || done.has(schema)) return;
  done.add(schema);
  const access: Access = route.config?.access ?? "secret";
  const security = SECURITY[access];
  if (security !== undefined && schema.security === undefined) schema.security = security;
  const responses: Responses = { ...schema.response };
  const add = (status: number, response: ResponseObject) => {
    responses[status] ??= response;
  };
  const body = schema.body as { content?: Record<string, unknown> } | undefined;
  // A body given per media type is JSON only if application/json is one of them (imports take files).
  if (body !== undefined && (body.content === undefined || "application/json" in body.content)) {
    const own = responses[400];
    if (own) own.description = `${own.description}, INVALID_JSON`;
    add(400, refusal(400, ["INVALID_JSON"], "The body is not valid JSON"));
    add(413, refusal(413, ["PAYLOAD_TOO_LARGE"], "The body is over 5 MB"));
    const consumes = (schema as { consumes?: string[] }).consumes ?? ["application/json"];
    add(415, refusal(415, ["UNSUPPORTED_MEDIA_TYPE"], `The body is not ${consumes.join(" or ")}`));
  }
  if (route.url.includes(":") || route.url.includes("*")) {
    add(400, refusal(400, ["INVALID_VALUE"], "A path parameter no store can hold (NUL, broken UTF-16)"));
  }
  if (access !== "none") {
    add(401, refusal(401, ["UNAUTHORIZED"], "No key, or an unknown or revoked one"));
    add(
      403,
      access === "secret"
        ? refusal(403, ["FORBIDDEN"], "A public key on a secret-key route")
        : refusal(403, ["FORBIDDEN"], "A browser page whose Origin is not in the account's allowedOrigins"),
    );
  }
  add(500, refusal(500, ["INTERNAL"], "An unexpected fault; nothing was applied"));
  add(
    503,
    refusal(
      503,
      ["UNAVAILABLE"],
      "Starting, or the store is busy or out of reach; nothing was applied, retry after Retry-After",
    ),
  );
  schema.response = responses;
}
