/**
 * API.md Imports: `POST /v1/imports?kind=…` (CSV or NDJSON body, or multipart field `file`) → 202 once the file is
 * stored; `GET /v1/imports/{id}`; `GET /v1/imports/{id}/failures.csv`.
 *
 * Bodies here are never parsed or buffered by fastify: this plugin's content-type parsers hand the request stream
 * to the import service, which writes it to disk up to PORTRAIT_IMPORT_MAX_BYTES (the 5 MB limit is for JSON).
 */
import type { Readable } from "node:stream";
import multipart from "@fastify/multipart";
import type { FastifyInstance } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { assertStorableText } from "../../engine/text.js";
import { charsetOf, charsetParam } from "../../imports/charset.js";
import { importView } from "../../imports/runner.js";
import { formatFor, type ImportService, parseKind, tooLargeImport } from "../../imports/service.js";
import type { AppDeps } from "../app.js";
import { file, json, pageQuery, refusals } from "../openapi/responses.js";

/** The multipart limits of an import body: its one `file` part, and a few fields beside it (ignored). */
const MULTIPART_FIELDS = 10;

function unreadableMultipart(e: unknown): unknown {
  if (e instanceof PortraitError) return e;
  const code = (e as { code?: string }).code;
  if (code === "FST_FILES_LIMIT") {
    return new PortraitError(
      "INVALID_BODY",
      'a multipart import takes one file, in the field "file": this body has more than one file part',
      "file",
    );
  }
  if (code === "FST_FIELDS_LIMIT" || code === "FST_PARTS_LIMIT") {
    return new PortraitError(
      "PAYLOAD_TOO_LARGE",
      `a multipart import takes its "file" part and at most ${MULTIPART_FIELDS} other fields: this body has more parts`,
      "file",
    );
  }
  if ((e as { statusCode?: number }).statusCode === 413) return e;
  const reason = e instanceof Error ? e.message : String(e);
  return new PortraitError("INVALID_BODY", `the multipart body could not be read: ${reason}`, "file");
}

/** A multipart part's format: its content type, else its file name's extension (curl sends octet-stream). */
function partContentType(mimetype: string, filename: string): string {
  if (mimetype === "text/csv" || mimetype.includes("ndjson")) return mimetype;
  if (/\.csv$/i.test(filename)) return "text/csv";
  if (/\.(ndjson|jsonl)$/i.test(filename)) return "application/x-ndjson";
  return mimetype;
}

export function importRoutes({ imports }: AppDeps & { imports: ImportService }, maxBytes: number) {
  return async (app: FastifyInstance) => {
    app.removeAllContentTypeParsers();
    await app.register(multipart, {
      limits: { fileSize: maxBytes, files: 1, fields: MULTIPART_FIELDS, parts: MULTIPART_FIELDS + 1 },
    });
    const passStream = (_req: unknown, payload: unknown, done: (err: Error | null, body?: unknown) => void) =>
      done(null, payload);
    app.addContentTypeParser(["text/csv", "application/x-ndjson", "application/ndjson"], passStream);
    // Any other type reaches the handler unread, which answers 415 naming what it takes.
    app.addContentTypeParser("*", passStream);

    app.post<{ Querystring: { kind?: string; charset?: string; fileName?: string } }>(
      "/v1/imports",
      {
        config: { longBody: true },
        schema: {
          tags: ["imports"],
          operationId: "createImport",
          summary: "Upload a profiles/events CSV or NDJSON, or a documents NDJSON; the import runs in the background",
          querystring: {
            type: "object",
            required: ["kind"],
            properties: {
              kind: { type: "string", enum: ["profiles", "events", "documents"] },
              charset: {
                type: "string",
                description:
                  "The file's charset when it is not UTF-8 (windows-1252, iso-8859-1, utf-16le…); a Content-Type charset parameter says the same",
              },
              fileName: {
                type: "string",
                maxLength: 255,
                description: "The file's name, shown in GET /v1/imports (a multipart part's own name wins)",
              },
            },
          },
          body: {
            content: {
              "text/csv": { schema: { type: "string", description: "A header row, then one row per record" } },
              "application/x-ndjson": { schema: { type: "string", description: "One JSON object per line" } },
              "multipart/form-data": {
                schema: {
                  type: "object",
                  required: ["file"],
                  properties: {
                    file: {
                      type: "string",
                      contentMediaType: "application/octet-stream",
                      description: "The file: its part's type, else its name's extension (.csv, .ndjson, .jsonl)",
                    },
                  },
                },
              },
            },
          },
          response: {
            202: json("Stored; the import runs in the background", "ImportQueued"),
            ...refusals({
              400: ["INVALID_VALUE", "INVALID_BODY"],
              413: ["PAYLOAD_TOO_LARGE"],
              415: ["UNSUPPORTED_MEDIA_TYPE"],
            }),
          },
        },
      },
      async (request, reply) => {
        const kind = parseKind(request.query.kind);
        const declaredCharset = givenOnce(request.query.charset, "charset");
        let body: Readable;
        let contentType: string | undefined;
        let fileName: string | null = null;
        let complete: (() => Promise<void>) | undefined;
        // A multipart body that breaks off or has no boundary is the client's fault: 400, not 500.
        let multipart = false;
        if (request.isMultipart()) {
          multipart = true;
          const files = request.files();
          let part: Awaited<ReturnType<typeof files.next>>["value"];
          try {
            part = (await files.next()).value;
          } catch (e) {
            throw unreadableMultipart(e);
          }
          if (part?.fieldname !== "file") {
            throw new PortraitError(
              "INVALID_BODY",
              'a multipart import needs the file in a field named "file"',
              "file",
            );
          }
          const file = part;
          body = file.file;
          // Before its type: a name past the part's 80 KB header limit is cut there, and its Content-Type with it.
          fileName = partName(file.filename);
          contentType = partContentType(file.mimetype, file.filename);
          // Once the file is stored, and before the import is recorded: the rest of the body is read to its end,
          // so that a second file part (which the import would silently leave out) is refused, naming `file`.
          complete = async () => {
            if (file.file.truncated) throw tooLargeImport(maxBytes);
            try {
              const next = await files.next();
              if (!next.done) throw unreadableMultipart({ code: "FST_FILES_LIMIT" });
            } catch (e) {
              throw unreadableMultipart(e);
            }
          };
        } else {
          body = request.body as Readable;
          contentType = request.headers["content-type"];
          fileName = uploadName(request.query.fileName);
        }
        let row: Awaited<ReturnType<ImportService["create"]>>;
        try {
          const format = formatFor(kind, contentType);
          const charset = charsetOf(charsetParam(contentType) ?? declaredCharset);
          const options = charset === null ? {} : { charset };
          row = await imports.create(
            request.account,
            body,
            { kind, format, source: "api", fileName, options },
            complete,
          );
        } catch (e) {
          // The rest of a refused upload is not read: the connection closes after the answer instead.
          reply.header("connection", "close");
          // The part's stream may have failed before anyone listened: its `errored` says so either way.
          throw multipart && body.errored ? unreadableMultipart(body.errored) : e;
        }
        reply.status(202);
        return { id: row.id, status: row.status };
      },
    );

    app.get<{ Querystring: { cursor?: string; limit?: string } }>(
      "/v1/imports",
      {
        schema: {
          operationId: "listImports",
          tags: ["imports"],
          summary: "The account's imports, newest first, with their status and counts (API, CLI and SFTP alike)",
          querystring: pageQuery,
          response: { 200: json("A page of imports", "ImportList"), ...refusals({ 400: ["INVALID_VALUE"] }) },
        },
      },
      async (request) => {
        const page = await imports.list(request.account, request.query);
        return { imports: page.imports.map(importView), nextCursor: page.nextCursor };
      },
    );

    app.get<{ Params: { id: string } }>(
      "/v1/imports/:id",
      {
        schema: {
          operationId: "getImport",
          tags: ["imports"],
          summary: "An import's status and counts",
          response: { 200: json("The import", "Import"), ...refusals({ 404: ["UNKNOWN_IMPORT"] }) },
        },
      },
      async (request) => importView(await imports.get(request.account, request.params.id)),
    );

    app.get<{ Params: { id: string } }>(
      "/v1/imports/:id/failures.csv",
      {
        schema: {
          operationId: "getImportFailures",
          tags: ["imports"],
          summary: "The refused rows, each with a last column Failure Description",
          response: {
            200: file("The refused rows as CSV, with a last column Failure Description", ["text/csv"]),
            ...refusals({ 404: ["UNKNOWN_IMPORT"] }),
          },
        },
      },
      async (request, reply) => {
        const report = await imports.failures(request.account, request.params.id);
        reply.type("text/csv; charset=utf-8");
        reply.header("content-disposition", `attachment; filename="import-${request.params.id}-failures.csv"`);
        return reply.send(report);
      },
    );
  };
}

/** A query parameter that may be given at most once (`?charset=a&charset=b` is refused, naming it). */
function givenOnce(raw: unknown, name: string): string | undefined {
  if (raw === undefined || typeof raw === "string") return raw;
  throw new PortraitError("INVALID_VALUE", `${name} must be given once`, name);
}

/** The longest file name an import keeps: what file systems allow, so no real file is refused. */
const MAX_FILE_NAME = 255;

/** `?fileName=` of a raw upload: a name to show, 1-255 characters of storable text, else refused naming it. */
function uploadName(raw: unknown): string | null {
  if (raw === undefined || raw === "") return null;
  if (typeof raw !== "string" || raw.length > MAX_FILE_NAME) {
    throw new PortraitError(
      "INVALID_VALUE",
      `fileName must be given once, at most ${MAX_FILE_NAME} characters`,
      "fileName",
    );
  }
  assertStorableText({ fileName: raw });
  return raw;
}

/**
 * A multipart file part's own `filename`, under the rule of `?fileName=`, and refused naming `file`: it was stored as
 * sent, so a NUL in it was a 500 on PostgreSQL (text cannot hold one) and a name of 80 KB was listed with every import.
 */
function partName(raw: string | undefined): string | null {
  if (!raw) return null;
  if (raw.length > MAX_FILE_NAME) {
    throw new PortraitError(
      "INVALID_VALUE",
      `the file part's filename must be at most ${MAX_FILE_NAME} characters: it has ${raw.length}`,
      "file",
    );
  }
  if (raw.includes("\0")) {
    throw new PortraitError("INVALID_VALUE", "the file part's filename must not contain NUL characters", "file");
  }
  return raw;
}
