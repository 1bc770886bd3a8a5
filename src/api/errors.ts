/** The one place a PortraitError becomes an HTTP status (API.md Conventions: Errors). */
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { type ErrorCode, PortraitError } from "../engine/errors.js";

const STATUS: Partial<Record<ErrorCode, number>> = {
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  UNKNOWN_PROFILE: 404,
  UNKNOWN_SEGMENT: 404,
  UNKNOWN_IMPORT: 404,
  UNKNOWN_MERGE: 404,
  UNKNOWN_KEY: 404,
  UNKNOWN_DOCUMENT: 404,
  PAYLOAD_TOO_LARGE: 413,
  HEADERS_TOO_LARGE: 431,
  DOCUMENT_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  MERGE_NOT_UNDOABLE: 409,
  ALREADY_UNDONE: 409,
  CONTROL_GROUP_EXCLUSION_LIMIT: 409,
  IDENTITY_KEY_CONFLICT: 409,
  SEGMENT_IN_USE: 409,
  IDENTITY_CONFLICT: 409,
  UNAVAILABLE: 503,
};

/**
 * Store errors that say "not now" rather than "not this": SQLite's write lock held past the busy timeout by another
 * process, PostgreSQL out of connections, starting up, shutting down or out of reach, or a write transaction that
 * lost to concurrent ones every time `write()` ran it (a deadlock or a serialization failure, MAX_ATTEMPTS times). The
 * request was not applied and the same request may succeed in a moment, which is what 503 and Retry-After tell a client
 * (SDKs and load balancers retry on them; a 500 means retrying will not help).
 */
const STORE_UNAVAILABLE_CODES = new Set([
  "SQLITE_BUSY",
  "SQLITE_BUSY_SNAPSHOT",
  "SQLITE_BUSY_RECOVERY",
  "SQLITE_BUSY_TIMEOUT",
  "40P01", // deadlock_detected: rolled back, lost again each time write() ran it again
  "40001", // serialization_failure: the same (PostgresTx.refuseForRerun raises it too)
  "53300", // too_many_connections
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "3D000", // invalid_catalog_name: the database is gone (being restored, renamed): out of reach, nothing applied
  "08000", // connection_exception
  "08001",
  "08003",
  "08004",
  "08006",
  // Not ECONNRESET: a client hanging up raises it too; a PostgreSQL connection lost mid-query is "Connection terminated".
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/** Whether an error from a store is a temporary one (STORE_UNAVAILABLE_CODES, or node-postgres' lost connection). */
export function storeUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" && STORE_UNAVAILABLE_CODES.has(code)) return true;
  const message = err instanceof Error ? err.message : "";
  return /^(Connection terminated|timeout exceeded when trying to connect)/.test(message);
}

const RETRY_AFTER_SECONDS = "1";

/** On every answer, raw ones included (expect-continue.ts, app.ts answerClientError): no content sniffing. */
export const NOSNIFF = ["x-content-type-options", "nosniff"] as const;

export function statusOf(code: ErrorCode): number {
  return STATUS[code] ?? 400;
}

export function errorBody(e: PortraitError): { error: { code: string; message: string; field?: string } } {
  return { error: { code: e.code, message: e.message, ...(e.field !== undefined && { field: e.field }) } };
}

/** A JSON body that is empty, or not JSON: the same answer from fastify's parser and from the batch routes' own. */
export const emptyJsonBody = () => new PortraitError("INVALID_JSON", "the body is empty; send a JSON document");
export const invalidJsonBody = (reason: string) =>
  new PortraitError("INVALID_JSON", `the body is not valid JSON: ${reason}`);

/**
 * Fastify's own errors (body parsing, limits) mapped to the fixed codes; anything unexpected is a bare 500. `accepts`
 * are the body types of the route (its schema's `consumes`; JSON when it says none), for the 415's message.
 */
export function toPortraitError(err: FastifyError, accepts?: readonly string[]): PortraitError | null {
  if (err instanceof PortraitError) return err;
  switch (err.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new PortraitError("PAYLOAD_TOO_LARGE", "the request body is larger than this endpoint accepts");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new PortraitError(
        "UNSUPPORTED_MEDIA_TYPE",
        `this endpoint takes ${(accepts?.length ? accepts : ["application/json"]).join(" or ")}`,
      );
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return emptyJsonBody();
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return new PortraitError("INVALID_JSON", "the Content-Length header does not match the body");
  }
  // A client that went away mid-upload: its body stream fails with node's "aborted". Nobody reads the answer, but it
  // is the client's doing, not a server fault to log with a stack trace.
  if ((err as { code?: string }).code === "ECONNRESET" && err.message === "aborted") {
    return new PortraitError("INVALID_BODY", "the request body broke off before its end");
  }
  if (storeUnavailable(err)) {
    return new PortraitError("UNAVAILABLE", "the store is busy or out of reach; nothing was applied: retry shortly");
  }
  if (err.statusCode === 400 && err instanceof SyntaxError) {
    return invalidJsonBody(err.message);
  }
  if (err.statusCode === 413) return new PortraitError("PAYLOAD_TOO_LARGE", "the request body is too large");
  if (err.statusCode === 415) return new PortraitError("UNSUPPORTED_MEDIA_TYPE", "unsupported content type");
  if (err.statusCode === 400 && err.validation === undefined) return new PortraitError("INVALID_JSON", err.message);
  return null;
}

export function errorHandler(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const mapped = toPortraitError(err, (request.routeOptions.schema as { consumes?: string[] } | undefined)?.consumes);
  if (mapped) {
    if (mapped.code === "UNAVAILABLE") {
      request.log.warn({ err }, "the store could not take the request");
      reply.header("retry-after", RETRY_AFTER_SECONDS);
    }
    reply.status(statusOf(mapped.code));
    if (mapped.code === "PAYLOAD_TOO_LARGE" && !request.raw.complete) {
      answerAfterBody(request, () => reply.send(errorBody(mapped)));
      return;
    }
    reply.send(errorBody(mapped));
    return;
  }
  request.log.error({ err }, "unhandled error");
  reply.status(500).send({ error: { code: "INTERNAL", message: "internal error; the request was not applied" } });
}

/** Which id a path segment is, by its position under each resource: its unknown-id code and the parameter's name. */
const ID_SEGMENTS: Array<{ prefix: string[]; position: number; code: ErrorCode; field: string }> = [
  { prefix: ["v1", "profiles"], position: 2, code: "UNKNOWN_PROFILE", field: "id" },
  { prefix: ["v1", "profiles"], position: 4, code: "UNKNOWN_DOCUMENT", field: "compartmentId" },
  { prefix: ["v1", "profiles"], position: 5, code: "UNKNOWN_DOCUMENT", field: "userAccountId" },
  { prefix: ["v1", "segments"], position: 2, code: "UNKNOWN_SEGMENT", field: "id" },
  { prefix: ["v1", "imports"], position: 2, code: "UNKNOWN_IMPORT", field: "id" },
  { prefix: ["v1", "merges"], position: 2, code: "UNKNOWN_MERGE", field: "mergeId" },
  { prefix: ["v1", "keys"], position: 2, code: "UNKNOWN_KEY", field: "id" },
  { prefix: ["v1", "sftp", "keys"], position: 3, code: "UNKNOWN_KEY", field: "id" },
];

/** A path with a segment over `max` characters: no id is that long, so the id it names is unknown (API.md). */
export function tooLongIdError(url: string, max: number): PortraitError {
  const segments = (url.split("?")[0] ?? "").split("/").slice(1);
  const position = segments.findIndex((s) => s.length > max);
  const match = ID_SEGMENTS.find(
    (r) => r.position === position && r.prefix.every((p, i) => segments[i] === p) && position >= r.prefix.length,
  );
  const message = `nothing has an id that long (a path segment is over ${max} characters)`;
  return match ? new PortraitError(match.code, message, match.field) : new PortraitError("NOT_FOUND", message);
}

/** How much of a refused body is read and thrown away so that its sender can read the refusal, and for how long. */
const DISCARD_BYTES = 64 * 1024 * 1024;
const DISCARD_MS = 10_000;

/**
 * Refused for its size before it was read, a body is still on its way: answered at once, the connection closed under
 * a client still writing, which then lost the answer to a reset (fetch: EPIPE; the SDK could not tell 413 from a
 * network fault). The rest is read and discarded, up to DISCARD_BYTES or DISCARD_MS, then answered; past those the
 * answer goes at once and the connection is closed.
 */
function answerAfterBody(request: FastifyRequest, answer: () => void): void {
  const body = request.raw;
  let read = 0;
  let answered = false;
  const done = () => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    body.off("data", count);
    body.off("end", done);
    answer();
  };
  const count = (chunk: Buffer) => {
    read += chunk.length;
    if (read > DISCARD_BYTES) done();
  };
  if (body.destroyed) {
    answer();
    return;
  }
  const timer = setTimeout(done, DISCARD_MS);
  body.on("data", count);
  body.once("end", done);
  body.once("close", done);
  body.once("error", done);
  body.resume();
}
