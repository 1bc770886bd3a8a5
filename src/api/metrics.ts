/**
 * Prometheus metrics at /metrics (prom-client): request latency by route, ingest outcomes, how far writes are behind,
 * imports (rows, ends, and what is queued or running in the store), and PostgreSQL's connection pool.
 */
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { ImportObserver } from "../imports/runner.js";
import { file } from "./openapi/responses.js";

type Observer = ReturnType<Metrics["requestSeconds"]["labels"]>;

export interface Metrics {
  registry: Registry;
  requestSeconds: Histogram<"method" | "route" | "status">;
  records: Counter<"outcome">;
  /** Counts the import runner's rows and ends. */
  imports: ImportObserver;
}

/** What the gauges read at each scrape. */
export interface MetricSources {
  /** Ingest records waiting for their group's transaction in this process. */
  waitingRecords(): number;
  /** Imports not finished, by status, as the store holds them (every process's). */
  unfinishedImports(): Promise<Array<{ status: string }>>;
  /** The store's connection pool (PostgreSQL). */
  connections?(): { open: number; idle: number; waiting: number; max: number };
}

export function createMetrics(sources?: MetricSources): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const importRows = new Counter({
    name: "portrait_import_rows_total",
    help: "Import rows applied (processed) or refused (failed), by import kind",
    labelNames: ["kind", "outcome"],
    registers: [registry],
  });
  const importsFinished = new Counter({
    name: "portrait_imports_finished_total",
    help: "Imports this process finished, by kind and status (failed: the file itself could not be read)",
    labelNames: ["kind", "status"],
    registers: [registry],
  });
  if (sources) gauges(registry, sources);
  return {
    registry,
    imports: {
      rows(kind, processed, failed) {
        if (processed > 0) importRows.inc({ kind, outcome: "processed" }, processed);
        if (failed > 0) importRows.inc({ kind, outcome: "failed" }, failed);
      },
      finished(kind, status) {
        importsFinished.inc({ kind, status });
      },
    },
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

/** How long a scrape waits for the store's unfinished imports before it leaves their gauge out. */
const IMPORTS_READ_MS = 1000;

/** `promise`, or null once `ms` have passed (the read goes on and its result is dropped). */
function withinMs<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

function gauges(registry: Registry, sources: MetricSources): void {
  new Gauge({
    name: "portrait_ingest_waiting_records",
    help: "Ingest records waiting for their group's transaction in this process (growing: writes fall behind)",
    registers: [registry],
    collect() {
      this.set(sources.waitingRecords());
    },
  });
  // First: gauges collect side by side, and the imports gauge's own query would count as waiting for a connection.
  const connections = sources.connections;
  if (connections) {
    new Gauge({
      name: "portrait_store_connections",
      help: "PostgreSQL pool connections: open, idle, max, and requests waiting for one",
      labelNames: ["state"],
      registers: [registry],
      collect() {
        const c = connections();
        for (const state of ["open", "idle", "waiting", "max"] as const) this.set({ state }, c[state]);
      },
    });
  }
  new Gauge({
    name: "portrait_imports",
    help: "Imports queued or running, as the store holds them (every process's); absent while the store is out of reach",
    labelNames: ["status"],
    registers: [registry],
    async collect() {
      this.reset();
      // A scrape must answer while the store is out of reach or slow (Prometheus gives up after 10 s by default):
      // that is when the other metrics matter most.
      const rows = await withinMs(sources.unfinishedImports(), IMPORTS_READ_MS).catch(() => null);
      if (rows === null) return;
      const by = { queued: 0, running: 0 } as Record<string, number>;
      for (const r of rows) by[r.status] = (by[r.status] ?? 0) + 1;
      for (const [status, n] of Object.entries(by)) this.set({ status }, n);
    },
  });
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
          summary:
            "Prometheus metrics: request latency, ingest records, waiting writes, imports, connections (no auth)",
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
