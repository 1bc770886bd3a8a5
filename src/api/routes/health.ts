import type { FastifyInstance } from "fastify";

export async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get(
    "/healthz",
    { config: { access: "none" }, schema: { tags: ["health"], summary: "Liveness, without auth" } },
    async () => ({
      ok: true,
    }),
  );
}
