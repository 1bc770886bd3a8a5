/**
 * `portrait import` as an operator runs it (a child process): the format from the file name, --url checks, the import
 * id as soon as the server took the file, what Ctrl-C or a lost server say, and the progress bar's last frame. A real
 * server for the imports themselves; a few lines of node:http where the point is a server that is not Portrait, or
 * one that goes away.
 */
import { once } from "node:events";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleCli, type Cli } from "../test-support/cli.js";
import { SECRET, startTestServer, type TestServer } from "../test-support/server.js";
import { MovingRate, Progress } from "./import.js";

let cli: Cli;
let server: TestServer;
let dir: string;

beforeAll(async () => {
  [cli, server] = await Promise.all([bundleCli(), startTestServer()]);
  dir = mkdtempSync(path.join(tmpdir(), "portrait-cli-import-"));
}, 60_000);

afterAll(async () => {
  cli?.remove();
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function file(name: string, text: string): string {
  const at = path.join(dir, name);
  writeFileSync(at, text);
  return at;
}

const importing = (at: string, ...extra: string[]) =>
  cli.run(["import", at, "--kind", "profiles", "--url", server.url, "--key", SECRET, ...extra]);

/** A server that is not Portrait, or that plays one: `handle` answers every request. */
async function fakeServer(handle: http.RequestListener): Promise<{ url: string; server: http.Server }> {
  const fake = http.createServer(handle);
  fake.listen(0, "127.0.0.1");
  await once(fake, "listening");
  return { url: `http://127.0.0.1:${(fake.address() as AddressInfo).port}`, server: fake };
}

/** Answers POST /v1/imports with 202 and polls with a running import that never ends. */
const neverEnding: http.RequestListener = (req, res) => {
  req.resume();
  req.on("end", () => {
    res.setHeader("content-type", "application/json");
    if (req.method === "POST") {
      res.statusCode = 202;
      res.end(JSON.stringify({ id: "imp_fake", status: "queued" }));
      return;
    }
    res.end(
      JSON.stringify({
        id: "imp_fake",
        status: "running",
        rows: 10,
        processed: 10,
        failed: 0,
        startedAt: new Date().toISOString(),
        finishedAt: null,
        bytes: 1000,
        bytesRead: 100,
      }),
    );
  });
};

describe("portrait import: the format", () => {
  it("comes from .csv, .ndjson and .jsonl, else --format is asked for before anything is sent", async () => {
    const csv = "Email,Name\nfmt1@x.io,One\nfmt2@x.io,Two\n";
    const txt = await importing(file("people.txt", csv));
    expect(txt.code).toBe(1);
    expect(txt.stderr).toMatch(
      /^portrait: INVALID_VALUE: cannot tell the format of .*people\.txt from its name \(\.csv, \.ndjson, \.jsonl\): give --format csv or --format ndjson\n$/,
    );
    expect(txt.stderr).not.toMatch(/uploading/);
    const told = await importing(file("people2.txt", csv), "--format", "csv");
    expect(told.stdout).toMatch(/done in [\d.]+ s: 2 rows, 2 processed, 0 failed/);
    const line = '{"identity": {"Email": "nd@x.io"}, "properties": {"Plan": "pro"}}\n';
    for (const name of ["people.ndjson", "people.jsonl", "PEOPLE.JSONL"]) {
      const result = await importing(file(name, line));
      expect(result.stdout, result.stderr).toMatch(/done in [\d.]+ s: 1 row, 1 processed, 0 failed/);
    }
  }, 60_000);
});

describe("portrait import: refusals before and after the upload", () => {
  it("a kind the server does not take, or CSV for documents, is refused before anything is sent", async () => {
    let requests = 0;
    const fake = await fakeServer((_req, res) => {
      requests++;
      res.end();
    });
    try {
      const send = (name: string, kind: string) =>
        cli.run(["import", file(name, "Email\nk@x.io\n"), "--kind", kind, "--url", fake.url, "--key", SECRET]);
      const documents = await send("docs.csv", "documents");
      expect(documents.code).toBe(1);
      expect(documents.stderr).toBe(
        "portrait: UNSUPPORTED_MEDIA_TYPE: a documents import takes NDJSON (one mediarithmics document per line), not CSV\n",
      );
      const kind = await send("people.csv", "users");
      expect(kind.stderr).toBe(
        "portrait: INVALID_VALUE: --kind must be one of profiles, events, documents, got users\n",
      );
      expect(requests).toBe(0);
    } finally {
      fake.server.close();
    }
  });

  it("a file over the server's limit: the server's 413 in one line, not the broken upload's stream error", async () => {
    const small = await startTestServer({ PORTRAIT_IMPORT_MAX_BYTES: "1000" });
    try {
      const rows = Array.from({ length: 200_000 }, (_, i) => `big${i}@x.io,Name ${i}`).join("\n");
      const result = await cli.run([
        "import",
        file("big.csv", `Email,Name\n${rows}\n`),
        "--kind",
        "profiles",
        "--url",
        small.url,
        "--key",
        SECRET,
      ]);
      expect(result.code).toBe(1);
      // Refused on its Content-Length (Expect: 100-continue) before a byte of it was sent.
      expect(result.stderr).toMatch(/^portrait: PAYLOAD_TOO_LARGE: [^\n]*1000 bytes[^\n]*\n$/);
    } finally {
      await small.close();
    }
  }, 60_000);

  it("an import that fails as a whole says so on stderr in the one-line form, exit 1", async () => {
    const result = await importing(file("empty.csv", ""));
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/ failed in [\d.]+ s: 0 rows/);
    expect(result.stderr).toMatch(/^portrait: IMPORT_FAILED: [^\n]+$/m);
    expect(result.stdout).not.toMatch(/^error:/m);
  }, 60_000);
});

describe("portrait import: the server", () => {
  it("without --url finds the server at $PORTRAIT_URL, else on this machine's $PORTRAIT_PORT, as serve was started", async () => {
    const port = new URL(server.url).port;
    const csv = (n: number) => file(`env-${n}.csv`, `Email\nenv${n}@x.io\n`);
    const args = (at: string) => ["import", at, "--kind", "profiles", "--key", SECRET];
    const byPort = await cli.run(args(csv(1)), { PORTRAIT_PORT: port });
    expect(byPort.stderr).not.toMatch(/cannot reach/);
    expect(byPort.code).toBe(0);
    const byUrl = await cli.run(args(csv(2)), { PORTRAIT_URL: server.url, PORTRAIT_PORT: "1" });
    expect(byUrl.code).toBe(0);
    const found = await server.api("GET", "/v1/profiles?email=env2%40x.io");
    expect(found.body.profiles).toHaveLength(1);
    // The list names the file it came from.
    const listed = (await server.api("GET", "/v1/imports?limit=1")).body.imports[0];
    expect(listed).toMatchObject({ source: "api", fileName: "env-2.csv" });
    // A bad variable is named, not a --url nobody gave.
    const badUrl = await cli.run(args(csv(3)), { PORTRAIT_URL: "localhost:1" });
    expect(badUrl.stderr).toMatch(/^portrait: INVALID_VALUE: PORTRAIT_URL must be an http/);
    const badPort = await cli.run(args(csv(4)), { PORTRAIT_PORT: "abc" });
    expect(badPort.stderr).toMatch(/^portrait: INVALID_VALUE: PORTRAIT_PORT must be a port number/);
  });

  it("--url must be an http(s) URL", async () => {
    for (const url of ["notaurl", "localhost:18472", "ftp://example.com"]) {
      const result = await cli.run([
        "import",
        file("u.csv", "Email\na@x.io\n"),
        "--kind",
        "profiles",
        "--key",
        SECRET,
        "--url",
        url,
      ]);
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(
        `portrait: INVALID_VALUE: --url must be an http:// or https:// URL, got ${JSON.stringify(url)}\n`,
      );
    }
  });

  it("https:// at a plain-HTTP server, and a key that cannot be a key, are named in one line with a code", async () => {
    const tls = await cli.run([
      "import",
      file("t.csv", "Email\na@x.io\n"),
      "--kind",
      "profiles",
      "--key",
      SECRET,
      "--url",
      server.url.replace("http://", "https://"),
    ]);
    expect(tls.code).toBe(1);
    expect(tls.stderr).toMatch(
      /^portrait: TLS_FAILED: no TLS conversation with https:\/\/[^ ]+: a plain-HTTP server \(use http:\/\/\), or not the server meant \(--url\)\n$/,
    );
    for (const [bad, env] of [
      [`${SECRET}\nx`, {}],
      ["sk_bad key", {}],
    ] as const) {
      const result = await cli.run(
        ["import", file("k.csv", "Email\na@x.io\n"), "--kind", "profiles", "--key", bad, "--url", server.url],
        env,
      );
      expect(result.code).toBe(1);
      expect(result.stderr).toBe(
        "portrait: INVALID_VALUE: --key holds a character a key never has (a space, a control character such as a newline, or non-ASCII)\n",
      );
    }
    const fromEnv = await cli.run(
      ["import", file("k.csv", "Email\na@x.io\n"), "--kind", "profiles", "--url", server.url],
      {
        PORTRAIT_KEY: "sk_tab\there",
      },
    );
    expect(fromEnv.stderr).toMatch(/^portrait: INVALID_VALUE: PORTRAIT_KEY holds a character/);
  });

  it.runIf(process.getuid?.() === 0)("a file the user may not read is named, with a code (run as nobody)", async () => {
    const secret = file("secret.csv", "Email\na@x.io\n");
    chmodSync(path.dirname(secret), 0o755); // nobody may enter the folder, not read the file
    chmodSync(secret, 0o600);
    const child = cli.spawn(
      ["import", secret, "--kind", "profiles", "--key", SECRET, "--url", server.url],
      {},
      {
        uid: 65534,
        gid: 65534,
      },
    );
    let stderr = "";
    child.stderr?.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    const [code] = await once(child, "exit");
    expect(code).toBe(1);
    expect(stderr).toBe(`portrait: INVALID_VALUE: cannot read ${secret} (EACCES): check its permissions\n`);
  });

  it("a server that does not answer as Portrait is named in one line, its page not shown", async () => {
    const page = `<!DOCTYPE html><html><body>${"<p>Not Implemented</p>\n".repeat(200)}</body></html>`;
    const fake = await fakeServer((req, res) => {
      req.resume();
      res.writeHead(501, { "content-type": "text/html" }).end(page);
    });
    try {
      const result = await cli.run([
        "import",
        file("p.csv", "Email\na@x.io\n"),
        "--kind",
        "profiles",
        "--key",
        SECRET,
        "--url",
        fake.url,
      ]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(
        new RegExp(`portrait: NOT_PORTRAIT: ${fake.url} did not answer as a Portrait server \\(HTTP 501\\)\\n$`),
      );
      expect(result.stderr).not.toMatch(/html/i);
    } finally {
      fake.server.close();
    }
  });

  it("says the import id as soon as the server took the file, and the summary counts 1 row", async () => {
    const result = await importing(file("one.csv", "Email,Name\none@x.io,One\n"));
    expect(result.code).toBe(0);
    const queued = /import (\S+) queued\n/.exec(result.stderr);
    expect(queued).not.toBeNull();
    expect(result.stdout).toMatch(new RegExp(`^import ${queued?.[1]} done in [\\d.]+ s: 1 row, 1 processed, 0 failed`));
  }, 60_000);

  /** `portrait import FILE` against `url`, sent `signal` once its stderr shows `when`: its exit code and stderr. */
  async function signalled(
    csv: string,
    url: string,
    when: RegExp,
    signal: NodeJS.Signals,
  ): Promise<{ code: number | null; stderr: string }> {
    const child = cli.spawn(["import", csv, "--kind", "profiles", "--key", SECRET, "--url", url]);
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    await expect.poll(() => stderr, { timeout: 20_000 }).toMatch(when);
    child.kill(signal);
    const [code] = (await once(child, "exit")) as [number | null];
    return { code, stderr };
  }

  it("on Ctrl-C after the upload, says the import goes on and how to follow it, exit 130", async () => {
    const fake = await fakeServer(neverEnding);
    try {
      const { code, stderr } = await signalled(
        file("c.csv", "Email\nc@x.io\n"),
        fake.url,
        /import imp_fake queued\n/,
        "SIGINT",
      );
      expect(code).toBe(130);
      expect(stderr).toMatch(
        new RegExp(
          `portrait: stopped watching; import imp_fake continues on the server \\(GET ${fake.url}/v1/imports/imp_fake\\)\\n$`,
        ),
      );
    } finally {
      fake.server.close();
    }
  }, 30_000);

  it("SIGTERM while watching says the same as Ctrl-C, exit 143; a signal during the upload says nothing was imported", async () => {
    const fake = await fakeServer(neverEnding);
    // A server that takes the upload's first bytes and then stops reading: the upload never ends.
    const stalled = await fakeServer((req) => {
      req.once("data", () => req.pause());
    });
    const big = file("big.csv", `Email\n${"x".repeat(1000)}\n`.repeat(20_000));
    try {
      for (const [signal, expected] of [
        ["SIGTERM", 143],
        ["SIGINT", 130],
      ] as const) {
        const { code, stderr } = await signalled(big, stalled.url, /uploading big\.csv/, signal);
        expect(code).toBe(expected);
        expect(stderr).toMatch(
          new RegExp(`portrait: upload of big\\.csv abandoned \\(${signal}\\); nothing was imported\\n$`),
        );
      }
      const { code, stderr } = await signalled(
        file("t.csv", "Email\nt@x.io\n"),
        fake.url,
        /import imp_fake queued\n/,
        "SIGTERM",
      );
      expect(code).toBe(143);
      expect(stderr).toMatch(/portrait: stopped watching; import imp_fake continues on the server \(GET .*\)\n$/);
    } finally {
      fake.server.close();
      stalled.server.closeAllConnections();
      stalled.server.close();
    }
  }, 60_000);

  it("when the server goes away after the upload, says the import continues or resumes, exit 1", async () => {
    const fake = await fakeServer((req, res) => {
      neverEnding(req, res);
      // The first poll finds nobody: the server is gone once it answered the upload.
      if (req.method === "POST") {
        res.on("finish", () => {
          fake.server.close();
          fake.server.closeAllConnections();
        });
      }
    });
    const result = await cli.run([
      "import",
      file("l.csv", "Email\nl@x.io\n"),
      "--kind",
      "profiles",
      "--key",
      SECRET,
      "--url",
      fake.url,
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/import imp_fake queued\n/);
    // The reason is the OS's: refused, or a hang-up when the poll raced the closing of a kept-alive connection.
    expect(result.stderr).toMatch(
      new RegExp(
        `portrait: lost the connection to ${fake.url} \\((.*ECONNREFUSED.*|socket hang up)\\); import imp_fake continues on the server, or resumes when it restarts \\(GET ${fake.url}/v1/imports/imp_fake\\)\\n$`,
      ),
    );
  }, 30_000);
});

describe("import progress", () => {
  it("leaves a 100% frame on a terminal, not the last 99% one", () => {
    let written = "";
    const progress = new Progress({ isTTY: true, write: (text: string) => (written += text) });
    progress.show("importing x.csv", 0.99, "98,000 rows");
    progress.finish("importing x.csv", "99,000 rows");
    const frames = written.split("\r\x1b[2K");
    expect(frames[frames.length - 1]).toMatch(/^importing x\.csv \[#+\] 100% {2}99,000 rows\n$/);
  });

  it("draws nothing more when stderr is not a terminal", () => {
    let written = "";
    const progress = new Progress({ isTTY: false, write: (text: string) => (written += text) });
    progress.finish("importing x.csv", "1 row");
    expect(written).toBe("");
  });

  it("rates over the last seconds, not since the start", () => {
    const rate = new MovingRate();
    rate.add(0, 0, 0);
    expect(rate.get().rows).toBeNaN();
    // A slow start (the server's start of the import), then 10,000 rows/s.
    rate.add(1_000, 100, 5_000);
    rate.add(11_000, 1_100, 6_000);
    rate.add(21_000, 2_100, 7_000);
    rate.add(121_000, 12_100, 17_000);
    // The window holds the samples from 7 s on: (121,000 − 21,000) rows over 10 s.
    expect(rate.get()).toEqual({ rows: 10_000, bytes: 1_000 });
  });
});
