/** API.md Segments: ad-hoc queries, saved segments, their members and CSV export (SEMANTICS §6). */
import { Readable } from "node:stream";
import type { FastifyInstance } from "fastify";
import { Segments } from "../../pipeline/segments.js";
import type { AppDeps } from "../app.js";

type IdParams = { Params: { id: string } };
type PageQuery = { Querystring: { cursor?: string; limit?: string } };

const condition = { description: "A segment condition (API.md Segments, the grammar)", type: "object" };

export function segmentRoutes({ portrait }: AppDeps) {
  const segments = new Segments(portrait);
  return async (app: FastifyInstance) => {
    app.post(
      "/v1/segments/query",
      {
        schema: {
          tags: ["segments"],
          summary: "Find People by criteria: the exact count and a page of profiles (id order)",
          body: {
            type: "object",
            required: ["where"],
            properties: {
              where: condition,
              limit: { type: "integer", minimum: 1, maximum: 1000, default: 50 },
              cursor: { type: ["string", "null"] },
            },
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
          summary: "Save a segment (its condition is evaluated fresh on every read)",
          body: {
            type: "object",
            required: ["name", "where"],
            properties: { name: { type: "string" }, where: condition },
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
      { schema: { tags: ["segments"], summary: "Saved segments, oldest first" } },
      async (request) => segments.list(request.account, request.query),
    );
    app.get<IdParams>(
      "/v1/segments/:id",
      { schema: { tags: ["segments"], summary: "A saved segment" } },
      async (request) => segments.get(request.account, request.params.id),
    );
    app.delete<IdParams>(
      "/v1/segments/:id",
      { schema: { tags: ["segments"], summary: "Delete a saved segment (409 SEGMENT_IN_USE while another uses it)" } },
      async (request) => segments.delete(request.account, request.params.id),
    );
    app.get<IdParams & PageQuery>(
      "/v1/segments/:id/profiles",
      { schema: { tags: ["segments"], summary: "A saved segment's members, evaluated now, a page at a time" } },
      async (request) => segments.profiles(request.account, request.params.id, request.query),
    );
    app.get<IdParams>(
      "/v1/segments/:id/export.csv",
      {
        schema: {
          tags: ["segments"],
          summary: "A saved segment's members as CSV (id, type, identity keys, registered properties), streamed",
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
