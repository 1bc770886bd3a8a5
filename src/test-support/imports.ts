/** Helpers for import tests: upload a file to a test server and wait for its import to finish; import rows. */
import type { ImportRow } from "../store/import-store.js";
import { SECRET, type TestServer } from "./server.js";

// biome-ignore lint/suspicious/noExplicitAny: tests read response bodies of every shape
type AnyBody = any;

export async function upload(
  ts: TestServer,
  kind: string,
  body: string | Buffer,
  contentType = "text/csv",
): Promise<{ status: number; body: AnyBody }> {
  const res = await fetch(`${ts.url}/v1/imports?kind=${encodeURIComponent(kind)}`, {
    method: "POST",
    headers: { authorization: `Bearer ${SECRET}`, "content-type": contentType },
    body: typeof body === "string" ? body : new Uint8Array(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed };
}

/** Polls GET /v1/imports/{id} until the import is done or failed. */
export async function waitForImport(ts: TestServer, id: string, timeoutMs = 60_000): Promise<AnyBody> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await ts.api("GET", `/v1/imports/${id}`);
    if (res.status !== 200) throw new Error(`GET /v1/imports/${id} → ${res.status} ${JSON.stringify(res.body)}`);
    if (res.body.status === "done" || res.body.status === "failed") return res.body;
    if (Date.now() > deadline) throw new Error(`import ${id} still ${res.body.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Uploads and waits; fails the test when the upload is refused. */
export async function runImport(ts: TestServer, kind: string, body: string | Buffer, contentType = "text/csv") {
  const res = await upload(ts, kind, body, contentType);
  if (res.status !== 202) throw new Error(`upload refused: ${res.status} ${JSON.stringify(res.body)}`);
  return waitForImport(ts, res.body.id);
}

export async function failuresCsv(ts: TestServer, id: string): Promise<string> {
  const res = await fetch(`${ts.url}/v1/imports/${id}/failures.csv`, {
    headers: { authorization: `Bearer ${SECRET}` },
  });
  if (res.status !== 200) throw new Error(`failures.csv → ${res.status}`);
  return res.text();
}

/** A queued import row as the service inserts one, for tests below the service; `over` sets what a test is about. */
export function queuedImportRow(accountId: string, id: string, over: Partial<ImportRow> = {}): ImportRow {
  return {
    accountId,
    id,
    kind: "profiles",
    format: "csv",
    status: "queued",
    source: "api",
    fileName: "people.csv",
    filePath: `imports/${id}`,
    sha256: "0".repeat(64),
    bytes: 10,
    options: {},
    header: null,
    rows: 0,
    processed: 0,
    failed: 0,
    bytesRead: 0,
    lastRow: 0,
    error: null,
    createdAt: Date.now(),
    startedAt: null,
    finishedAt: null,
    claimedBy: null,
    heartbeatAt: null,
    ...over,
  };
}
