import type { FastifyInstance } from "fastify";
import { json } from "../openapi/responses.js";

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    "/healthz",
    {
      config: { access: "none" },
      schema: {
        operationId: "getHealth",
        tags: ["health"],
        summary: "Liveness, without auth",
        response: { 200: json("Alive", "Health") },
      },
    },
    async () => ({
      ok: true,
    }),
  );
}
