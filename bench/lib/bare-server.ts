/**
 * The B3 baseline (PERFORMANCE.md): a bare fastify 5 route that parses a one-record JSON batch and answers
 * {ok:true}. No auth, no validation, no store. Run as a child process on PORTRAIT_PORT / PORTRAIT_HOST.
 */
import Fastify from "fastify";

const app = Fastify({ logger: false, bodyLimit: 5 * 1024 * 1024 });
app.get("/healthz", async () => ({ ok: true }));
app.post("/v1/ingest", async (request, reply) => {
  const body = request.body as { records?: unknown } | null;
  if (!body || !Array.isArray(body.records)) return reply.code(400).send({ ok: false });
  return { ok: true };
});

const port = Number(process.env.PORTRAIT_PORT ?? 0);
const host = process.env.PORTRAIT_HOST ?? "127.0.0.1";
await app.listen({ port, host });
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    app.close().then(() => process.exit(0));
  });
}
