/** API.md Segments: ad-hoc queries, saved segments, their members and CSV export (SEMANTICS §6). */
import { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { Segments } from "../../pipeline/segments.js";
import type { AppDeps } from "../app.js";
import { file, json, pageQuery, refusals } from "../openapi/responses.js";
import { ref } from "../openapi/schemas.js";

type IdParams = { Params: { id: string } };
type PageQuery = { Querystring: { cursor?: string; limit?: string } };

const unknownSegment = refusals({ 404: ["UNKNOWN_SEGMENT"] });

export function segmentRoutes({ portrait }: AppDeps) {
  const segments = new Segments(portrait);
  return async (app: FastifyInstance) => {
    app.post(
      "/v1/segments/query",
      {
        schema: {
          tags: ["segments"],
          operationId: "querySegment",
          summary: "Find People by criteria: the exact count and a page of profiles (id order)",
          body: ref("SegmentQuery"),
          response: {
            200: json("The count and a page of members", "MembersPage"),
            ...refusals({ 400: ["INVALID_SEGMENT", "INVALID_VALUE"] }),
          },
        },
      },
      async (request) => segments.query(request.account, request.body),
    );
    app.post(
      "/v1/segments",
      {
        schema: {
          tags: ["segments"],
          operationId: "createSegment",
          summary: "Save a segment (its condition is evaluated fresh on every read)",
          body: ref("SegmentCreate"),
          response: {
            201: json("The saved segment", "Segment"),
            ...refusals({ 400: ["INVALID_SEGMENT", "INVALID_VALUE"] }),
          },
        },
      },
      async (request, reply) => {
        const saved = await segments.create(request.account, request.body);
        reply.status(201);
        return saved;
      },
    );
    app.get<PageQuery>(
      "/v1/segments",
      {
        schema: {
          operationId: "listSegments",
          tags: ["segments"],
          summary: "Saved segments, oldest first",
          querystring: pageQuery,
          response: { 200: json("A page of segments", "SegmentList"), ...refusals({ 400: ["INVALID_VALUE"] }) },
        },
      },
      async (request) => segments.list(request.account, request.query),
    );
    app.get<IdParams>(
      "/v1/segments/:id",
      {
        schema: {
          operationId: "getSegment",
          tags: ["segments"],
          summary: "A saved segment",
          response: { 200: json("The segment", "Segment"), ...unknownSegment },
        },
      },
      async (request) => segments.get(request.account, request.params.id),
    );
    app.delete<IdParams>(
      "/v1/segments/:id",
      {
        schema: {
          operationId: "deleteSegment",
          tags: ["segments"],
          summary: "Delete a saved segment (409 SEGMENT_IN_USE while another uses it)",
          response: {
            200: json("Deleted", "Deleted"),
            ...refusals({ 404: ["UNKNOWN_SEGMENT"], 409: ["SEGMENT_IN_USE"] }),
          },
        },
      },
      async (request) => segments.delete(request.account, request.params.id),
    );
    app.get<IdParams & PageQuery>(
      "/v1/segments/:id/profiles",
      {
        schema: {
          operationId: "listSegmentProfiles",
          tags: ["segments"],
          summary: "A saved segment's members, evaluated now, a page at a time",
          querystring: pageQuery,
          response: {
            200: json("The count and a page of members", "MembersPage"),
            ...refusals({ 400: ["INVALID_VALUE", "INVALID_SEGMENT"], 404: ["UNKNOWN_SEGMENT"] }),
          },
        },
      },
      async (request) => segments.profiles(request.account, request.params.id, request.query),
    );
    app.get<IdParams>(
      "/v1/segments/:id/export.csv",
      {
        schema: {
          tags: ["segments"],
          operationId: "exportSegmentCsv",
          summary: "A saved segment's members as CSV (id, type, identity keys, registered properties), streamed",
          response: {
            200: file("Header `id,type,<identity keys>,<properties A-Z>`, then one line per member", ["text/csv"]),
            ...refusals({ 400: ["INVALID_SEGMENT"], 404: ["UNKNOWN_SEGMENT"] }),
          },
        },
      },
      async (request, reply) => {
        const lines = await segments.export(request.account, request.params.id);
        reply
          .type("text/csv; charset=utf-8")
          .header("content-disposition", `attachment; filename="${request.params.id.replace(/[^\w.-]/g, "_")}.csv"`);
        return reply.send(Readable.from(lines));
      },
    );
  };
}
