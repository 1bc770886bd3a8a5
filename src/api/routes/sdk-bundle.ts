/**
 * API.md Browser SDK endpoints: `GET /sdk/portrait.js`, the browser SDK bundle (built by `npm run build:sdk` into
 * dist/sdk/), without auth; and `GET /sdk/examples/*`, the example and test pages of examples/, so that a page
 * using the SDK can be tried against this very server.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import type { FastifyInstance, FastifyReply } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { file, refusals } from "../openapi/responses.js";

export interface SdkBundleOptions {
  /** Default: dist/sdk/portrait.js of the package. */
  bundlePath?: string;
  /** Default: examples/ of the package. */
  examplesDir?: string;
}

/** The short max-age lets a new release reach browsers within minutes; the ETag keeps revalidation cheap. */
const BUNDLE_CACHE_CONTROL = "public, max-age=300";

const EXAMPLE_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "application/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".txt": "text/plain; charset=utf-8",
};

/** The package's root (the folder of package.json), found from this file in src/ (tests) as well as in dist/. */
function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, "package.json");
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name === "portrait") return dir;
      } catch {
        // not ours; keep climbing
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

interface CachedFile {
  mtimeMs: number;
  size: number;
  body: Buffer;
  /** Compressed once per build rather than per request (the bundle is about 22 KB, 8 KB gzipped). */
  gzipped: Buffer;
  etag: string;
}

const notFound = (what: string) => new PortraitError("NOT_FOUND", what);

/**
 * A path under /sdk/examples/, already percent-decoded by the router, mapped to a file inside `root`, or null.
 * Refuses anything that could leave the folder or reach hidden files: `..`/`.` segments, empty segments,
 * backslashes, NUL, absolute paths, dot-files; then checks the resolved and the real (symlink-free) path.
 */
export async function resolveExample(root: string, requested: string): Promise<string | null> {
  const wanted = requested === "" ? "index.html" : requested;
  if (wanted.includes("\0") || wanted.includes("\\") || wanted.startsWith("/")) return null;
  if (wanted.split("/").some((segment) => segment === "" || segment.startsWith("."))) return null;
  const resolved = path.resolve(root, wanted);
  if (!resolved.startsWith(root + path.sep)) return null;
  try {
    const [realRoot, realFile] = await Promise.all([realpath(root), realpath(resolved)]);
    if (!realFile.startsWith(realRoot + path.sep)) return null;
    return (await stat(realFile)).isFile() ? realFile : null;
  } catch {
    return null;
  }
}

export function sdkBundleRoutes(options: SdkBundleOptions = {}) {
  const root = packageRoot();
  const bundlePath = options.bundlePath ?? path.join(root, "dist", "sdk", "portrait.js");
  const examplesDir = path.resolve(options.examplesDir ?? path.join(root, "examples"));
  let cached: CachedFile | null = null;

  /** The bundle, re-read when the file changes (a rebuild while the server runs is picked up). */
  async function bundle(): Promise<CachedFile | null> {
    let info: Awaited<ReturnType<typeof stat>>;
    try {
      info = await stat(bundlePath);
    } catch {
      return null;
    }
    if (cached && cached.mtimeMs === info.mtimeMs && cached.size === info.size) return cached;
    const body = await readFile(bundlePath);
    const etag = `W/"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    cached = { mtimeMs: info.mtimeMs, size: info.size, body, gzipped: gzipSync(body, { level: 9 }), etag };
    return cached;
  }

  return async (app: FastifyInstance) => {
    app.get(
      "/sdk/portrait.js",
      {
        config: { access: "none" },
        schema: {
          operationId: "getSdkBundle",
          tags: ["sdk"],
          summary: "The browser SDK bundle (no auth; cacheable, with an ETag)",
          headers: {
            type: "object",
            properties: {
              "if-none-match": { type: "string", description: "The ETag of a cached copy: 304 when it is current" },
            },
          },
          response: {
            200: {
              ...file("The bundle (gzip when accepted)", ["application/javascript"]),
              headers: {
                etag: { type: "string", description: "A weak ETag of the bundle" },
                "cache-control": { type: "string", description: BUNDLE_CACHE_CONTROL },
              },
            },
            304: { description: "The cached copy named by If-None-Match is current", type: "null" },
            ...refusals({ 404: ["NOT_FOUND"] }),
          },
        },
      },
      async (request, reply: FastifyReply) => {
        const file = await bundle();
        if (!file) throw notFound("the browser SDK bundle is not built; run `npm run build`");
        reply
          .header("content-type", "application/javascript; charset=utf-8")
          .header("cache-control", BUNDLE_CACHE_CONTROL)
          .header("etag", file.etag)
          // Any site may embed the script, also with crossorigin="anonymous" or under COEP.
          .header("access-control-allow-origin", "*")
          .header("cross-origin-resource-policy", "cross-origin")
          .header("vary", "Accept-Encoding");
        if (request.headers["if-none-match"] === file.etag) return reply.status(304).send();
        if (/\bgzip\b/.test(String(request.headers["accept-encoding"] ?? ""))) {
          return reply.header("content-encoding", "gzip").send(file.gzipped);
        }
        return reply.send(file.body);
      },
    );

    app.get<{ Params: { "*": string } }>(
      "/sdk/examples/*",
      {
        config: { access: "none" },
        schema: {
          operationId: "getSdkExample",
          tags: ["sdk"],
          summary: "Example pages that load the SDK from this server (examples/)",
          response: {
            200: file("The file", [...new Set(Object.values(EXAMPLE_TYPES).map((t) => t.split(";")[0] as string))]),
            ...refusals({ 404: ["NOT_FOUND"] }),
          },
        },
      },
      async (request, reply) => {
        const file = await resolveExample(examplesDir, request.params["*"]);
        const type = file ? EXAMPLE_TYPES[path.extname(file).toLowerCase()] : undefined;
        if (!file || !type) throw notFound(`no example ${request.url.split("?")[0]}`);
        reply.header("content-type", type).header("cache-control", "no-cache");
        return reply.send(await readFile(file));
      },
    );
  };
}
