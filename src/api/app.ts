/** The fastify app factory: body limits, auth, the error shape, and one plugin per route group. */
import swagger from "@fastify/swagger";
import Fastify, { type FastifyInstance, type FastifyReply, LogController, type RouteOptions } from "fastify";
import type { Logger } from "pino";
import { PortraitError } from "../engine/errors.js";
import { assertStorableText } from "../engine/text.js";
import { type ImportService, tooLargeImport } from "../imports/service.js";
import type { Accounts } from "../pipeline/accounts.js";
import type { Portrait } from "../pipeline/portrait.js";
import { authHook } from "./auth.js";
import { errorBody, errorHandler, NOSNIFF, statusOf, tooLongIdError } from "./errors.js";
import { answerExpectContinue } from "./expect-continue.js";
import { contentEncodingRefusal, decodeJsonBody } from "./json-body.js";
import { type Metrics, metricsPlugin } from "./metrics.js";
import { documentRoute, swaggerOptions } from "./openapi/document.js";
import { json } from "./openapi/responses.js";
import { addSharedSchemas } from "./openapi/schemas.js";
import { requestLog } from "./request-log.js";
import { accountRoutes } from "./routes/account.js";
import { documentRoutes } from "./routes/documents.js";
import { healthRoutes } from "./routes/health.js";
import { importRoutes } from "./routes/imports.js";
import { ingestRoutes } from "./routes/ingest.js";
import { keyRoutes } from "./routes/keys.js";
import { mergeRoutes } from "./routes/merges.js";
import { profileRoutes } from "./routes/profiles.js";
import { sdkRoutes } from "./routes/sdk.js";
import { sdkBundleRoutes } from "./routes/sdk-bundle.js";
import { segmentRoutes } from "./routes/segments.js";
import { sftpKeyRoutes } from "./routes/sftp-keys.js";
import { limitBodyTime } from "./slow-bodies.js";

/** API.md: JSON bodies over 5 MB → 413 (imports stream and have their own limit). */
export const JSON_BODY_LIMIT = 5 * 1024 * 1024;

/**
 * The longest path segment routed: compartment and user account ids, path parameters of the documents routes, are up
 * to 256 characters.
 */
const MAX_PARAM_LENGTH = 300;

/** Every route an app built here registered, HEAD and OPTIONS included: the OpenAPI contract test compares. */
const ROUTES = new WeakMap<FastifyInstance, Array<{ method: string; url: string }>>();

export function registeredRoutes(app: FastifyInstance): ReadonlyArray<{ method: string; url: string }> {
  return ROUTES.get(app) ?? [];
}

/**
 * Route schemas document the API (OpenAPI, openapi/) and do nothing else; a route plugin registered on its own (a
 * test) needs this too, for the shared schemas its routes reference.
 */
export function schemasAsDocumentation(app: FastifyInstance): void {
  // The engine validates, so every refusal carries our codes.
  app.setValidatorCompiler(() => () => true);
  // Nor do schemas shape replies: fastify would compile each response schema into a fast-json-stringify serialiser,
  // which drops properties the schema does not list and coerces types, so a documentation slip would change (or
  // silently lose) data. Replies are written as the handlers build them; the contract test checks the schemas.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));
  addSharedSchemas(app);
}

export interface AppDeps {
  portrait: Portrait;
  accounts: Accounts;
  metrics: Metrics;
  logger?: Logger | boolean;
  /** Bulk imports (routes registered only when given) and their upload limit. */
  imports?: ImportService;
  importMaxBytes?: number;
  /** How long a JSON body may take to arrive (slow-bodies.ts); default 60 s: 5 MB at about 100 KB/s. */
  jsonBodyTimeoutMs?: number;
  /**
   * How long a connection may take to send a request's headers, counted from its opening (or from its previous
   * request's end); default 30 s. A connection that sends nothing, or trickles its headers, is cut after it.
   */
  headersTimeoutMs?: number;
  /** Requests slower than this are logged at info (request-log.ts; default 1 s). */
  slowRequestMs?: number;
  /** False while the server is still starting (the first run's account and keys not yet made); default: ready. */
  ready?: () => boolean;
  /**
   * True once a shutdown refuses new requests: they answer 503 UNAVAILABLE in the error shape, with Retry-After
   * (fastify's own 503 while closing has another body, so it is off). Default: never.
   */
  stopping?: () => boolean;
}

export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const headersTimeout = deps.headersTimeoutMs ?? 30_000;
  const app = Fastify({
    // Node's own deadline for request headers, which also cuts a connection that sends nothing at all (F4 of the
    // hostile-input audit: 20k idle sockets used up the file descriptors). fastify sets node's `requestTimeout` to 0
    // (bodies: slow-bodies.ts, imports stream for hours), and node then derives `headersTimeout` as 0 too, unless it
    // is given here. Connections are checked every quarter of it (30 s at most), so one is cut within 1.25× of it.
    http: {
      headersTimeout,
      connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(headersTimeout / 4))),
    },
    loggerInstance: typeof deps.logger === "object" ? deps.logger : undefined,
    logger: typeof deps.logger === "boolean" ? deps.logger : undefined,
    bodyLimit: JSON_BODY_LIMIT,
    // Request logs would cost more than the requests at ingest rates; metrics carry latency instead.
    logController: new LogController({ disableRequestLogging: true }),
    // Requests that come while closing answer 503 through `stopping` below, in the contract's error shape.
    return503OnClosing: false,
    // Requests node's HTTP parser refuses (headers or URL over 16 KB, broken framing) answer in the contract's error
    // shape too, not fastify's: a client reading `error.code` finds one.
    clientErrorHandler: answerClientError,
    forceCloseConnections: "idle",
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    // A URL the router cannot read answers in the contract's error shape, not fastify's.
    frameworkErrors: (error: { code?: string }, request: { url: string }, reply: FastifyReply) => {
      // A segment longer than any id names nothing that exists: the unknown-id answer of the route it was meant for.
      const e =
        error.code === "FST_ERR_MAX_PARAM_LENGTH"
          ? tooLongIdError(request.url, MAX_PARAM_LENGTH)
          : new PortraitError("INVALID_VALUE", "the path is not a valid URL (a broken %-escape?)");
      // Answered before any hook runs.
      reply.header(NOSNIFF[0], NOSNIFF[1]);
      reply.status(statusOf(e.code)).send(errorBody(e));
    },
  } as never) as unknown as FastifyInstance;

  schemasAsDocumentation(app);
  // Every answer says its Content-Type is meant (SDK audit F8): JSON that echoes what clients stored, CSV exports and
  // the SDK bundle are never to be sniffed into HTML or script. The first hook, so that refusals and 404s have it too;
  // callback style, so that it costs no promise per request.
  app.addHook("onRequest", (_request, reply, done) => {
    reply.header(NOSNIFF[0], NOSNIFF[1]);
    done();
  });
  app.setErrorHandler(errorHandler);
  app.setNotFoundHandler((request, reply) => {
    reply
      .status(404)
      .send(errorBody(new PortraitError("NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}`)));
  });

  // fastify reads text/plain as a string by default; only the SDK routes take it (routes/sdk.ts), elsewhere it is 415.
  app.removeContentTypeParser("text/plain");
  // JSON bodies are UTF-8 (json-body.ts): read as bytes and decoded strictly, then parsed by fastify's own parser
  // (its __proto__ and constructor.prototype guard included).
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "buffer" }, (request, body, done) => {
    let text: string;
    try {
      text = decodeJsonBody(request, body as Buffer);
    } catch (e) {
      done(e as Error, undefined);
      return;
    }
    parseJson(request, text, done);
  });

  const routes: Array<{ method: string; url: string }> = [];
  ROUTES.set(app, routes);
  app.addHook("onRoute", (route: RouteOptions) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url });
    documentRoute(route);
  });
  await app.register(swagger, swaggerOptions);
  // Many HTTP clients send `Content-Type: application/json` on every request, an empty DELETE or undo included; a
  // route that takes no body must not refuse that as an empty JSON document.
  app.addHook("onRequest", async (request) => {
    const bodyless = request.method === "DELETE" || request.routeOptions.config.bodyless === true;
    const { headers } = request;
    if (bodyless && headers["transfer-encoding"] === undefined && (headers["content-length"] ?? "0") === "0") {
      delete headers["content-type"];
    }
  });
  // Listening comes before the first run's keys exist (a start that fails for its port must not make keys nobody
  // saw). Until they do, every request, /healthz included, is "not yet": a client that waits for /healthz and then
  // uses PORTRAIT_BOOTSTRAP_SECRET_KEY got 401 for a key about to exist.
  const ready = deps.ready;
  const stopping = deps.stopping;
  if (ready || stopping) {
    app.addHook("onRequest", async () => {
      if (stopping?.()) {
        throw new PortraitError("UNAVAILABLE", "the server is shutting down; nothing was applied: retry shortly");
      }
      if (ready && !ready()) throw new PortraitError("UNAVAILABLE", "the server is starting; retry shortly");
    });
  }
  limitBodyTime(app, deps.jsonBodyTimeoutMs ?? 60_000);
  app.addHook("onRequest", authHook(deps.accounts));
  // A compressed request body is not decoded here: refused before anything reads it (json-body.ts). Callback style,
  // as the nosniff hook: every request passes here, and an async hook costs a promise each.
  app.addHook("onRequest", (request, _reply, done) => {
    const refusal = contentEncodingRefusal(request);
    if (refusal !== null) done(refusal);
    else done();
  });
  // Path parameters are ids and names the stores keep or look up: PostgreSQL refuses NUL and broken UTF-16 in text.
  app.addHook("preValidation", async (request) => {
    assertStorableText(request.params);
    // `/v1/profiles/` fits `/v1/profiles/:id` with an empty id: no resource is named, so no route is either.
    const params = request.params as Record<string, string> | undefined;
    if (params && Object.values(params).some((v) => v === "")) {
      throw new PortraitError("NOT_FOUND", `no route ${request.method} ${request.url.split("?")[0]}`);
    }
  });
  await app.register(metricsPlugin(deps.metrics));
  await app.register(requestLog(deps.slowRequestMs));
  await app.register(healthRoutes);
  await app.register(accountRoutes(deps));
  await app.register(keyRoutes(deps));
  await app.register(ingestRoutes(deps));
  await app.register(sdkRoutes(deps));
  await app.register(sdkBundleRoutes());
  await app.register(profileRoutes(deps));
  await app.register(documentRoutes(deps));
  await app.register(mergeRoutes(deps));
  await app.register(segmentRoutes(deps));
  await app.register(sftpKeyRoutes(deps));
  if (deps.imports)
    await app.register(importRoutes({ ...deps, imports: deps.imports }, deps.importMaxBytes ?? Infinity));
  const importMaxBytes = deps.importMaxBytes ?? Infinity;
  answerExpectContinue(app, (request) => {
    const told = Number(request.headers["content-length"]);
    const importing = request.method === "POST" && request.url?.split("?")[0] === "/v1/imports";
    return importing && told > importMaxBytes ? tooLargeImport(importMaxBytes) : null;
  });
  app.get(
    "/v1/openapi.json",
    {
      config: { access: "none" },
      schema: {
        operationId: "getOpenApi",
        tags: ["meta"],
        summary: "This document: the API as OpenAPI 3.1",
        response: { 200: json("The OpenAPI document", "OpenApiDocument") },
      },
    },
    async () => app.swagger(),
  );
  return app;
}

/** What node's HTTP parser refused, answered in the error shape (a raw response: there is no request to reply to). */
function answerClientError(error: NodeJS.ErrnoException, socket: import("node:net").Socket): void {
  if (!socket.writable) return;
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    // Headers not in by the deadline (buildApp's headersTimeout): a connection that sent nothing is closed without a
    // word, one that began a request is told why.
    if (socket.bytesRead === 0) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify(
      errorBody(
        new PortraitError(
          "INVALID_REQUEST",
          "the request's headers did not arrive in time: the connection is closed; send them at once",
        ),
      ),
    );
    socket.end(
      "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json; charset=utf-8\r\n" +
        `Content-Length: ${Buffer.byteLength(body)}\r\n${NOSNIFF[0]}: ${NOSNIFF[1]}\r\nConnection: close\r\n\r\n${body}`,
    );
    // The server's sockets stay half open until the client ends its side, which a hostile one never does.
    setTimeout(() => socket.destroy(), 2_000).unref();
    return;
  }
  const tooLarge = error.code === "HPE_HEADER_OVERFLOW";
  const status = tooLarge ? 431 : 400;
  const body = JSON.stringify(
    errorBody(
      new PortraitError(
        tooLarge ? "HEADERS_TOO_LARGE" : "INVALID_REQUEST",
        tooLarge
          ? "the request's headers and URL are over 16 KB together: send long values (cursors, conditions) in a body"
          : "the request could not be read as HTTP",
      ),
    ),
  );
  socket.end(
    `HTTP/1.1 ${status} ${tooLarge ? "Request Header Fields Too Large" : "Bad Request"}\r\n` +
      `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `${NOSNIFF[0]}: ${NOSNIFF[1]}\r\n` +
      `Connection: close\r\n\r\n${body}`,
  );
}
