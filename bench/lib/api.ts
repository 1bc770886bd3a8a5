/** Plain requests to a Portrait server for scenario set-up (not measured). Any failure throws. */
import { SECRET_KEY } from "./processes.js";

export interface IngestResponse {
  status: string;
  processed: number;
  unprocessed: Array<{ index: number; code: string; error: string }>;
  results: Array<{ index: number; profileId: string; outcome: string }>;
}

export async function request<T>(baseUrl: string, method: string, path: string, body?: string): Promise<T> {
  const res = await fetch(baseUrl + path, {
    method,
    headers: {
      authorization: `Bearer ${SECRET_KEY}`,
      ...(body !== undefined && { "content-type": "application/json" }),
    },
    body,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${text.slice(0, 500)}`);
  return JSON.parse(text) as T;
}

/** POSTs one serialised batch to /v1/ingest; throws unless every record was processed. */
export async function ingest(baseUrl: string, body: string): Promise<IngestResponse> {
  const result = await request<IngestResponse>(baseUrl, "POST", "/v1/ingest", body);
  if (result.unprocessed.length > 0) {
    const first = result.unprocessed[0]!;
    throw new Error(
      `set-up ingest: ${result.unprocessed.length} records refused, first #${first.index} ${first.code}: ${first.error}`,
    );
  }
  return result;
}

/** Ingests serialised batches, `parallel` at a time (set-up only). */
export async function ingestAll(baseUrl: string, batches: Iterable<string>, parallel = 2): Promise<number> {
  const iterator = batches[Symbol.iterator]();
  let records = 0;
  const worker = async () => {
    for (let next = iterator.next(); !next.done; next = iterator.next()) {
      records += (await ingest(baseUrl, next.value)).processed;
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return records;
}
