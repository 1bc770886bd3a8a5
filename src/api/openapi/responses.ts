/**
 * Building blocks of the operations' `response` maps: a success body (a registered schema), a file or text body, and
 * the refusals, each `{"error": {"code", "message", "field"?}}` (schemas.ts Error) with the codes of its status.
 */
import { ref, type SchemaId } from "./schemas.js";

type Status = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 500 | 503;

export interface ResponseObject {
  description: string;
  content?: Record<string, { schema: Record<string, unknown> }>;
  headers?: Record<string, { type: string; description: string }>;
}

/** The query string of every paged list (API.md Conventions: an opaque `cursor`, answered `nextCursor`). */
export const pageQuery = {
  type: "object",
  properties: {
    cursor: { type: "string", description: "The nextCursor of the previous page" },
    limit: { type: "integer", minimum: 1, maximum: 1000, default: 50 },
  },
};

/** A JSON body of the registered schema `id`. */
export function json(description: string, id: SchemaId): ResponseObject {
  return { description, content: { "application/json": { schema: ref(id) } } };
}

/** A body that is not JSON (CSV, JavaScript, HTML, metrics text). */
export function file(description: string, mediaTypes: string[]): ResponseObject {
  const content: ResponseObject["content"] = {};
  for (const type of mediaTypes) content[type] = { schema: { type: "string" } };
  return { description, content };
}

/**
 * A refusal with these codes. Under 400 the code is left open (the ingest codes alone are dozens, API.md Ingest);
 * under any other status a code outside the list is a documentation bug the contract test catches.
 */
export function refusal(status: Status, codes: string[], why?: string): ResponseObject {
  const description = `${why ? `${why}: ` : ""}${codes.join(", ")}`;
  const schema =
    status === 400
      ? ref("Error")
      : { allOf: [ref("Error")], properties: { error: { properties: { code: { enum: codes } } } } };
  return { description, content: { "application/json": { schema } } };
}

/** `refusal` for several statuses at once: `refusals({404: ["UNKNOWN_PROFILE"], 409: ["…"]})`. */
export function refusals(byStatus: Partial<Record<Status, string[]>>): Partial<Record<Status, ResponseObject>> {
  const out: Partial<Record<Status, ResponseObject>> = {};
  for (const [status, codes] of Object.entries(byStatus)) {
    out[Number(status) as Status] = refusal(Number(status) as Status, codes as string[]);
  }
  return out;
}
