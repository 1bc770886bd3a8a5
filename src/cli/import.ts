/**
 * `portrait import FILE --kind …` — a client of a running server (SEMANTICS §11 Imports): streams the file to
 * `POST /v1/imports`, says `import <id> queued` as soon as the server took it, then polls the import and draws a
 * progress bar on stderr (rows, rows/s, ETA; plain lines when stderr is not a terminal), and ends with a summary.
 * Exit code 1 when the import failed (the file could not be read). Once queued the import is the server's: Ctrl-C
 * (exit 130) or a lost connection (exit 1) stop only the watching, and say how to follow the import.
 *
 * `portrait sftp-keys add|list|remove` manage the SFTP drop point's keys in the store, like `portrait keys`.
 */
import { accessSync, constants, existsSync, readFileSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import type { Command } from "commander";
import { PortraitError } from "../engine/errors.js";
import type { Account } from "../engine/types.js";
import { IMPORT_KINDS } from "../store/import-store.js";
import type { Store } from "../store/store.js";
import { CliError } from "./cli-error.js";

interface ImportStatus {
  id: string;
  status: "queued" | "running" | "done" | "failed";
  rows: number;
  processed: number;
  failed: number;
  startedAt: string | null;
  finishedAt: string | null;
  error?: string;
  bytes: number;
  bytesRead: number;
}

const number = (n: number) => Math.round(n).toLocaleString("en-US");
const rows = (n: number) => `${number(n)} ${Math.round(n) === 1 ? "row" : "rows"}`;

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return `${Math.ceil(seconds)}s`;
  const m = Math.floor(seconds / 60);
  return `${m}m${String(Math.ceil(seconds % 60)).padStart(2, "0")}s`;
}

/** Draws progress on stderr: a bar redrawn in place on a terminal, else a line every few seconds. */
export class Progress {
  private lastLine = 0;
  private readonly tty: boolean;
  /** A bar is drawn on the current line: the next output must start a line of its own. */
  private drawn = false;

  constructor(private readonly out: { isTTY?: boolean; write(text: string): unknown } = process.stderr) {
    this.tty = out.isTTY === true;
  }

  show(label: string, fraction: number, detail: string): void {
    const pct = `${Math.floor(Math.min(1, Math.max(0, fraction)) * 100)}%`.padStart(4);
    if (this.tty) {
      const width = 24;
      const filled = Math.round(Math.min(1, fraction) * width);
      const bar = `${"#".repeat(filled)}${"·".repeat(width - filled)}`;
      this.out.write(`\r\x1b[2K${label} [${bar}] ${pct}  ${detail}`);
      this.drawn = true;
    } else if (Date.now() - this.lastLine >= 2000) {
      this.lastLine = Date.now();
      this.out.write(`${label} ${pct}  ${detail}\n`);
    }
  }

  /** On a terminal, the bar's last frame at 100%: it stays above the summary, so it must not say 99%. */
  finish(label: string, detail: string): void {
    if (this.drawn) this.show(label, 1, detail);
    this.done();
  }

  done(): void {
    if (this.drawn) this.out.write("\n");
    this.drawn = false;
  }
}

/**
 * Rows/s and bytes/s over the last WINDOW_MS of samples: the rate since the import started misleads at first (the
 * first sample's span includes the server's start-up of the import) and later lags behind changes in speed.
 */
export class MovingRate {
  private static readonly WINDOW_MS = 10_000;
  private readonly samples: Array<{ at: number; rows: number; bytes: number }> = [];

  add(rows: number, bytes: number, at = Date.now()): void {
    this.samples.push({ at, rows, bytes });
    // Keep one sample older than the window, so that the rate always spans the whole window once it can.
    while (this.samples.length > 2 && (this.samples[1] as { at: number }).at <= at - MovingRate.WINDOW_MS) {
      this.samples.shift();
    }
  }

  /** Per second, or NaN until two samples some time apart. */
  get(): { rows: number; bytes: number } {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at - first.at < 100) return { rows: Number.NaN, bytes: Number.NaN };
    const seconds = (last.at - first.at) / 1000;
    return { rows: (last.rows - first.rows) / seconds, bytes: (last.bytes - first.bytes) / seconds };
  }
}

/**
 * The file's format: --format, else its extension as the server reads a multipart upload's file name (.csv; .ndjson,
 * .jsonl). A `.json` file is most often one JSON document, not one per line, so it is not guessed.
 */
function formatFor(file: string, given: string | undefined): "csv" | "ndjson" {
  if (given === "csv" || given === "ndjson") return given;
  if (given !== undefined) throw new PortraitError("INVALID_VALUE", `--format must be csv or ndjson, got ${given}`);
  if (/\.csv$/i.test(file)) return "csv";
  if (/\.(ndjson|jsonl)$/i.test(file)) return "ndjson";
  throw new PortraitError(
    "INVALID_VALUE",
    `cannot tell the format of ${file} from its name (.csv, .ndjson, .jsonl): give --format csv or --format ndjson`,
  );
}

/**
 * The server `portrait import` talks to without --url: $PORTRAIT_URL, else this machine on $PORTRAIT_PORT (the
 * variable `serve` listens on), else 8080, so that a server started with another port is found as it was started.
 */
export function defaultServerUrl(env: NodeJS.ProcessEnv): string {
  if (env.PORTRAIT_URL) return env.PORTRAIT_URL;
  return `http://localhost:${env.PORTRAIT_PORT || "8080"}`;
}

/** --url as an http(s) URL without its trailing slashes; else a one-line error naming --url. */
function serverUrl(raw: string, from = "--url"): string {
  let url: URL | null = null;
  try {
    url = new URL(raw);
  } catch {
    // reported below
  }
  if (url === null || (url.protocol !== "http:" && url.protocol !== "https:") || url.hostname === "") {
    const what = from === "PORTRAIT_PORT" ? "PORTRAIT_PORT must be a port number, making" : `${from} must be`;
    throw new PortraitError("INVALID_VALUE", `${what} an http:// or https:// URL, got ${JSON.stringify(raw)}`);
  }
  return raw.replace(/\/+$/, "");
}

/** What an answer says as JSON; a page that is not JSON (a proxy's, another server's) is named as such, not shown. */
function jsonOf<T>(res: { status: number; text: string }, url: string): T {
  try {
    return JSON.parse(res.text) as T;
  } catch {
    throw new CliError("NOT_PORTRAIT", `${url} did not answer as a Portrait server (HTTP ${res.status})`);
  }
}

function apiError(res: { status: number; text: string }, url: string): Error {
  const body = jsonOf<{ error?: { code?: string; message?: string } } | null>(res, url);
  if (typeof body?.error?.code === "string") {
    return new CliError(body.error.code, body.error.message ?? `HTTP ${res.status}`);
  }
  return new CliError("NOT_PORTRAIT", `${url} did not answer as a Portrait server (HTTP ${res.status})`);
}

/** A connection that failed or broke: refused, unknown host, reset. */
function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return (
    typeof code === "string" &&
    [
      "ECONNREFUSED",
      "ENOTFOUND",
      "EAI_AGAIN",
      "ECONNRESET",
      "EHOSTUNREACH",
      "ENETUNREACH",
      "ETIMEDOUT",
      "EPIPE",
    ].includes(code)
  );
}

/** An error's message, or its code when it has none (an AggregateError of refused addresses). */
function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message || String((error as { code?: unknown }).code ?? "unknown error");
}

/**
 * POSTs a file with node:http through one reused 64 KB buffer, each chunk handed to the socket before the next is
 * read: the CLI's memory stays flat whatever the file's size (a piped read stream allocated a buffer per chunk, and
 * ≈ 40 MB of them waited for the garbage collector on an 86 MB upload). An early answer (401, 415, 413) ends the
 * upload and is returned as the response.
 */
async function postFile(
  url: string,
  headers: Record<string, string>,
  file: string,
  onSent: (bytes: number) => void,
): Promise<{ status: number; text: string }> {
  const target = new URL(url);
  const request = (target.protocol === "https:" ? https : http).request(target, { method: "POST", headers });
  let answered = false;
  // Ends the wait for a chunk's write when the server answers early or the request fails: then it never calls back.
  let stopWaiting: (() => void) | null = null;
  request.once("response", () => {
    answered = true;
    stopWaiting?.();
  });
  request.once("error", () => stopWaiting?.());
  const response = answerOf(request);
  // A connection refused fails the answer while the loop below still waits on a chunk: it is awaited at the end.
  response.catch(() => undefined);
  // Expect: 100-continue: the server refuses a file its Content-Length already rules out before a byte is sent (an
  // answer that comes mid-upload is often lost to a broken pipe). A server that does not answer the question within
  // a second is sent the file all the same, as curl does.
  request.setHeader("expect", "100-continue");
  request.flushHeaders();
  await new Promise<void>((resolve) => {
    const go = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(go, 1000);
    request.once("continue", go);
    request.once("response", go);
    request.once("error", go);
  });
  const handle = await open(file, "r");
  try {
    const buffer = Buffer.allocUnsafe(64 * 1024);
    let sent = 0;
    while (!answered) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      // Not a Promise.race with the response: each race left its handlers on the pending response until the end,
      // ≈ 14 MB of the CLI's memory over a 360 MB upload.
      await new Promise<void>((resolve, reject) => {
        stopWaiting = resolve;
        request.write(buffer.subarray(0, bytesRead), (err) => (err ? reject(err) : resolve()));
      });
      stopWaiting = null;
      sent += bytesRead;
      onSent(sent);
    }
  } catch (error) {
    // The server answered early and closed (a 413 for a file over its limit), or refused the connection: either way
    // the pending write fails (EPIPE, ECONNRESET, "stream destroyed") just before the answer or the request's own
    // error arrives. The answer is what the user needs to see.
    const timeout = new Promise<null>((resolve) => setTimeout(() => resolve(null), 1000).unref());
    const outcome = await Promise.race([
      response.then(
        (answer) => ({ answer }),
        (reason: unknown) => ({ reason }),
      ),
      timeout,
    ]);
    if (outcome !== null && "answer" in outcome) return outcome.answer;
    request.destroy();
    throw outcome?.reason ?? error;
  } finally {
    await handle.close();
  }
  if (!answered) request.end();
  else request.destroy();
  return response;
}

/**
 * GET with node:http: polling through fetch loaded undici, ≈ 15 MB of the CLI's memory for a few small requests.
 */
function getJson(url: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  const target = new URL(url);
  return answerOf((target.protocol === "https:" ? https : http).get(target, { headers }));
}

/** The answer to `request`, read whole (the server's answers here are small JSON documents). */
function answerOf(request: http.ClientRequest): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    request.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
      res.on("error", reject);
    });
    request.on("error", reject);
  });
}

export async function runImportCommand(
  file: string,
  opts: { kind: string; url: string; urlFrom?: string; key?: string; format?: string; interval?: string },
): Promise<number> {
  const progress = new Progress();
  try {
    return await importWithProgress(file, opts, progress);
  } catch (error) {
    progress.done();
    if (isConnectionError(error)) {
      throw new Error(
        `cannot reach the server at ${opts.url} (${reasonOf(error)}); is it running? (${opts.urlFrom ?? "--url"})`,
      );
    }
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EPROTO" || (typeof code === "string" && code.startsWith("ERR_SSL"))) {
      // OpenSSL's own text (`…:ssl3_get_record:wrong version number:../deps/openssl/…`) says nothing to an operator.
      throw new CliError(
        "TLS_FAILED",
        `no TLS conversation with ${opts.url}: a plain-HTTP server (use http://), or not the server meant ` +
          `(${opts.urlFrom ?? "--url"})`,
      );
    }
    throw error;
  }
}

async function importWithProgress(
  file: string,
  opts: { kind: string; url: string; urlFrom?: string; key?: string; format?: string; interval?: string },
  progress: Progress,
): Promise<number> {
  const base = serverUrl(opts.url, opts.urlFrom);
  if (!existsSync(file)) throw new PortraitError("INVALID_VALUE", `no file ${file}`);
  if (!statSync(file).isFile()) throw new PortraitError("INVALID_VALUE", `${file} is not a file`);
  const format = formatFor(file, opts.format);
  // What the server would refuse with 415 or 400, refused before the whole file travels to it.
  if (!(IMPORT_KINDS as readonly string[]).includes(opts.kind)) {
    throw new PortraitError("INVALID_VALUE", `--kind must be one of ${IMPORT_KINDS.join(", ")}, got ${opts.kind}`);
  }
  if (opts.kind === "documents" && format === "csv") {
    throw new PortraitError(
      "UNSUPPORTED_MEDIA_TYPE",
      "a documents import takes NDJSON (one mediarithmics document per line), not CSV",
    );
  }
  const key = opts.key ?? process.env.PORTRAIT_KEY;
  if (!key) throw new PortraitError("UNAUTHORIZED", "give the secret key with --key sk_… (or $PORTRAIT_KEY)");
  // A key is printable ASCII: anything else (a newline pasted with it) cannot travel in a header.
  if (!/^[\x21-\x7e]+$/.test(key)) {
    const from = opts.key !== undefined ? "--key" : "PORTRAIT_KEY";
    throw new PortraitError(
      "INVALID_VALUE",
      `${from} holds a character a key never has (a space, a control character such as a newline, or non-ASCII)`,
    );
  }
  try {
    accessSync(file, constants.R_OK);
  } catch (e) {
    throw new PortraitError(
      "INVALID_VALUE",
      `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? reasonOf(e)}): check its permissions`,
    );
  }
  const size = statSync(file).size;
  const headers = { authorization: `Bearer ${key}` };
  const name = path.basename(file);

  // Upload, streamed: the file is never held in memory. Stopped before the server has it whole, nothing is imported
  // (the server removes the part it received).
  const abandoned = (signal: NodeJS.Signals) => () => {
    progress.done();
    process.stderr.write(`portrait: upload of ${name} abandoned (${signal}); nothing was imported\n`);
    process.exit(signal === "SIGINT" ? 130 : 143);
  };
  const abandonedByInt = abandoned("SIGINT");
  const abandonedByTerm = abandoned("SIGTERM");
  process.once("SIGINT", abandonedByInt);
  process.once("SIGTERM", abandonedByTerm);
  const started = Date.now();
  const res = await postFile(
    `${base}/v1/imports?kind=${encodeURIComponent(opts.kind)}&fileName=${encodeURIComponent(name)}`,
    {
      ...headers,
      "content-type": format === "csv" ? "text/csv" : "application/x-ndjson",
      "content-length": String(size),
    },
    file,
    (sent) => {
      const seconds = (Date.now() - started) / 1000;
      const rate = sent / Math.max(seconds, 0.001);
      progress.show(
        `uploading ${name}`,
        size ? sent / size : 1,
        `${(sent / 1e6).toFixed(1)} MB  ETA ${duration((size - sent) / rate)}`,
      );
    },
  );
  process.removeListener("SIGINT", abandonedByInt);
  process.removeListener("SIGTERM", abandonedByTerm);
  progress.done();
  if (res.status !== 202) throw apiError(res, base);
  const { id } = jsonOf<{ id: string }>(res, base);
  if (typeof id !== "string") throw new CliError("NOT_PORTRAIT", `${base} did not answer as a Portrait server`);
  process.stderr.write(`import ${id} queued\n`);

  // From here on the import is the server's: stopping the CLI, or losing the server, stops only the watching.
  const follow = `GET ${base}/v1/imports/${id}`;
  const stopWatching = (code: number) => () => {
    progress.done();
    process.stderr.write(`portrait: stopped watching; import ${id} continues on the server (${follow})\n`);
    process.exit(code);
  };
  const interrupted = stopWatching(130);
  const terminated = stopWatching(143);
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", terminated);
  try {
    return await watchImport(base, id, name, headers, Number(opts.interval ?? 500), progress);
  } catch (error) {
    if (!isConnectionError(error)) throw error;
    progress.done();
    throw new Error(
      `lost the connection to ${base} (${reasonOf(error)}); import ${id} continues on the server, ` +
        `or resumes when it restarts (${follow})`,
    );
  } finally {
    process.removeListener("SIGINT", interrupted);
    process.removeListener("SIGTERM", terminated);
  }
}

/** Polls the import until it is done or failed, drawing its progress, then prints the summary. */
async function watchImport(
  base: string,
  id: string,
  name: string,
  headers: Record<string, string>,
  interval: number,
  progress: Progress,
): Promise<number> {
  const rate = new MovingRate();
  let status: ImportStatus;
  for (;;) {
    const poll = await getJson(`${base}/v1/imports/${id}`, headers);
    if (poll.status !== 200) throw apiError(poll, base);
    status = jsonOf<ImportStatus>(poll, base);
    if (status.status === "done" || status.status === "failed") break;
    if (status.status === "running") rate.add(status.rows, status.bytesRead);
    const now = rate.get();
    const eta = now.bytes > 0 ? (status.bytes - status.bytesRead) / now.bytes : Number.NaN;
    progress.show(
      `importing ${name}`,
      status.bytes ? status.bytesRead / status.bytes : 0,
      status.status === "queued"
        ? "queued"
        : `${rows(status.rows)}  ${Number.isNaN(now.rows) ? "?" : number(now.rows)} rows/s  ETA ${duration(eta)}`,
    );
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
  progress.finish(`importing ${name}`, rows(status.rows));

  const seconds =
    status.startedAt && status.finishedAt ? (Date.parse(status.finishedAt) - Date.parse(status.startedAt)) / 1000 : 0;
  const overall = seconds > 0 ? ` (${number(status.rows / seconds)} rows/s)` : "";
  process.stdout.write(
    `import ${id} ${status.status} in ${seconds.toFixed(1)} s: ${rows(status.rows)}, ${number(status.processed)} processed, ${number(status.failed)} failed${overall}\n`,
  );
  // The import's own failure, in the one-line form of every CLI error (README: `portrait: CODE: message`).
  if (status.error) process.stderr.write(`portrait: IMPORT_FAILED: ${status.error}\n`);
  if (status.failed > 0) process.stdout.write(`failed rows: ${base}/v1/imports/${id}/failures.csv\n`);
  return status.status === "failed" ? 1 : 0;
}

/** An OpenSSH private key, or PuTTY's: never to be echoed, and never what the SFTP drop point wants. */
const PRIVATE_KEY = /-----BEGIN [A-Z ]*PRIVATE KEY-----|^PuTTY-User-Key-File-/m;

/**
 * `sftp-keys add`'s key argument: a key line as given, or the key line of the file it names. Nothing read from a
 * file is ever shown in a message (it may be a private key, or anything else that was named by mistake).
 */
async function publicKeyLine(given: string, parse: (line: string) => Promise<unknown>): Promise<string> {
  // A key line is "<algorithm> <base64> [comment]": it has a space, which a path rarely has, and it is not a file.
  if (!existsSync(given)) {
    if (/^\S+\s+\S/.test(given.trim()) || PRIVATE_KEY.test(given)) return given;
    throw new PortraitError("INVALID_VALUE", `no file ${given} (give a .pub file or a public key line)`, "publicKey");
  }
  if (statSync(given).isDirectory()) {
    throw new PortraitError("INVALID_VALUE", `${given} is a directory; give a .pub file`, "publicKey");
  }
  const text = readFileSync(given, "utf8");
  if (PRIVATE_KEY.test(text)) {
    throw new PortraitError("INVALID_VALUE", `${given} is a private key; give its .pub file`, "publicKey");
  }
  const line = text.trim();
  try {
    await parse(line);
  } catch (error) {
    // parsePublicKey's refusal of a malformed line shows the line's start: named here by the file only. Only the RSA
    // length refusal, which shows nothing of the key, is kept as it is.
    if (error instanceof PortraitError && !/^publicKey is a \d+-bit RSA key/.test(error.message)) {
      throw new PortraitError(
        "INVALID_VALUE",
        `${given} does not hold an OpenSSH public key line (such as "ssh-ed25519 AAAA… comment")`,
        "publicKey",
      );
    }
    throw error;
  }
  return line;
}

/** `portrait import` and `portrait sftp-keys`, added to the program. */
export function addImportCommands(
  program: Command,
  withStore: <T>(opts: { dataDir?: string; databaseUrl?: string }, fn: (store: Store) => Promise<T>) => Promise<T>,
  account: (store: Store, id: string | undefined) => Promise<Account>,
): void {
  program
    .command("import <file>")
    .description("import a CSV or NDJSON file through a running server (POST /v1/imports), with progress")
    .requiredOption("--kind <kind>", "profiles, events or documents")
    .option("--url <url>", "the server (default: $PORTRAIT_URL, else http://localhost:$PORTRAIT_PORT, port 8080)")
    .option("--key <key>", "a secret key of the account (default: $PORTRAIT_KEY)")
    .option("--format <format>", "csv or ndjson (default: from the file name)")
    .action(async (file: string, opts: { kind: string; url?: string; key?: string; format?: string }) => {
      const env = process.env;
      const urlFrom = opts.url
        ? "--url"
        : env.PORTRAIT_URL
          ? "PORTRAIT_URL"
          : env.PORTRAIT_PORT
            ? "PORTRAIT_PORT"
            : "--url";
      process.exitCode = await runImportCommand(file, { ...opts, url: opts.url ?? defaultServerUrl(env), urlFrom });
    });

  const storeOptions = (cmd: Command) =>
    cmd
      .option("--account <id>", "account id, or its name", "default")
      .option("--data-dir <dir>", "SQLite data directory (default: $PORTRAIT_DATA_DIR or ./data)")
      .option("--database-url <url>", "PostgreSQL URL (default: $PORTRAIT_DATABASE_URL)")
      .option("--json", "print JSON");
  type StoreOpts = { account: string; dataDir?: string; databaseUrl?: string; json?: boolean };
  const print = (value: unknown, json: boolean | undefined, text: string) =>
    process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);

  const keys = program.command("sftp-keys").description("SSH public keys that may log in to the SFTP drop point");
  storeOptions(
    keys.command("add <name> <publicKey>").description("register a key: the key line, or a .pub file"),
  ).action(async (name: string, publicKey: string, opts: StoreOpts) => {
    const { addSftpKey, parsePublicKey } = await import("../imports/sftp/keys.js");
    const line = await publicKeyLine(publicKey, parsePublicKey);
    await withStore(opts, async (store) => {
      const a = await account(store, opts.account);
      const row = await addSftpKey(store.imports, a.id, name, line);
      const out = { id: row.id, name: row.name, fingerprint: row.fingerprint };
      print(out, opts.json, `sftp key ${out.id} ${out.name} ${out.fingerprint} (log in as user ${a.id})`);
    });
  });
  storeOptions(keys.command("list").description("list the account's SFTP keys")).action(async (opts: StoreOpts) => {
    const { sftpKeyView } = await import("../imports/sftp/keys.js");
    await withStore(opts, async (store) => {
      const a = await account(store, opts.account);
      const list = (await store.imports.listSftpKeys(a.id)).map(sftpKeyView);
      print(list, opts.json, list.map((k) => `${k.id}\t${k.name}\t${k.fingerprint}`).join("\n"));
    });
  });
  storeOptions(keys.command("remove <id>").description("remove an SFTP key")).action(
    async (id: string, opts: StoreOpts) => {
      const { removeSftpKey } = await import("../imports/sftp/keys.js");
      await withStore(opts, async (store) => {
        const a = await account(store, opts.account);
        await removeSftpKey(store.imports, a.id, id);
        print({ removed: id }, opts.json, `removed ${id}`);
      });
    },
  );
}
