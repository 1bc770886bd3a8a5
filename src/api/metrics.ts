/** Prometheus metrics at /metrics (prom-client): request latency by route and ingest outcomes. */
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";
import { file } from "./openapi/responses.js";

type Observer = ReturnType<Metrics["requestSeconds"]["labels"]>;

export interface Metrics {
  registry: Registry;
  requestSeconds: Histogram<"method" | "route" | "status">;
  records: Counter<"outcome">;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    requestSeconds: new Histogram({
      name: "portrait_http_request_duration_seconds",
      help: "HTTP request latency by route",
      labelNames: ["method", "route", "status"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    records: new Counter({
      name: "portrait_ingest_records_total",
      help: "Ingest records by outcome (stored, updated, duplicate, … or the error code)",
      labelNames: ["outcome"],
      registers: [registry],
    }),
  };
}

export function metricsPlugin(metrics: Metrics) {
  // The labelled child of each (method, route, status), so that a request does not hash its labels again.
  const series = new Map<string, Observer>();
  const seriesOf = (method: string, route: string, status: number): Observer => {
    const name = `${method} ${status} ${route}`;
    let child = series.get(name);
    if (child === undefined) {
      child = metrics.requestSeconds.labels({ method, route, status: String(status) });
      series.set(name, child);
    }
    return child;
  };
  return fp(async (app: FastifyInstance) => {
    app.addHook("onResponse", async (request, reply) => {
      seriesOf(request.method, request.routeOptions.url ?? "unmatched", reply.statusCode).observe(
        reply.elapsedTime / 1000,
      );
    });
    app.get(
      "/metrics",
      {
        config: { access: "none" },
        schema: {
          operationId: "getMetrics",
          tags: ["meta"],
          summary: "Prometheus metrics: request latency by route, ingest records by outcome (no auth)",
          response: { 200: file("Prometheus text exposition format 0.0.4", ["text/plain"]) },
        },
      },
      async (_request, reply) => {
        reply.header("content-type", metrics.registry.contentType);
        return metrics.registry.metrics();
      },
    );
  });
}
