/**
 * The SFTP drop point (SEMANTICS §11 SFTP): started only when PORTRAIT_SFTP_PORT is set. The user name is the account
 * id; only public-key login with a key the account registered is accepted (passwords are refused). Each account sees
 * one folder, `<data dir>/sftp/<account id>`, as `/`: paths are resolved inside it and a path that climbs above it is
 * refused, so no account can reach another's files.
 *
 * Upload a data file, then a manifest (`*.manifest` or `*.manifest.json`, see manifest.ts): when the manifest is
 * closed, its import is queued. An account's manifests are handled one at a time in the order they finish
 * uploading, so imports are created, and run, in that order; one whose data file is still being uploaded waits for
 * it (uploads.ts). The runner writes `<file>.result.json` back; `<file>.failures.csv` is read from the store when
 * opened (reports.ts); a refused manifest gets `<manifest>.result.json`.
 */
import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { type FileHandle, mkdir, open, readdir, rename, rm, rmdir, stat, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import path from "node:path";
import type { Logger } from "pino";
import ssh2 from "ssh2";
import { PortraitError } from "../../engine/errors.js";
import type { Store } from "../../store/store.js";
import type { ImportService } from "../service.js";
import { columnsMismatch } from "./header.js";
import { isManifestName, type Manifest, type ManifestOutcome, readManifest } from "./manifest.js";
import { resolveInside } from "./paths.js";
import { type PendingManifest, PendingManifests } from "./pending-manifests.js";
import { FailureReports, type FileInfo, isReportName } from "./reports.js";
import { Uploads } from "./uploads.js";

const { STATUS_CODE } = ssh2.utils.sftp;
const HOST_KEY_META = "sftp.hostKey";
const ACCOUNT_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** The host key, generated on first use and kept in the store (so clients see the same key after a restart). */
export async function hostKey(store: Store, logger?: Logger): Promise<string> {
  const existing = await store.getMeta(HOST_KEY_META);
  if (existing && readableKey(existing)) return existing;
  if (existing) {
    // Made by an earlier version, which stored what it generated unchecked: no start could ever read it again.
    logger?.warn("SFTP: the stored host key cannot be read; a new one is made, so clients will see a changed host key");
  }
  await store.setMeta(HOST_KEY_META, newHostKey());
  // Two processes starting at once on PostgreSQL: both generate, the last write wins, and both use the stored one.
  return (await store.getMeta(HOST_KEY_META)) as string;
}

/**
 * An Ed25519 private key ssh2 can read back: about 1 in 400 of those ssh2 generates it cannot parse ("Malformed
 * OpenSSH private key"), and a stored one would stop every start of the drop point. So each is read back first.
 */
export function newHostKey(generate = () => ssh2.utils.generateKeyPairSync("ed25519").private): string {
  for (let attempt = 0; attempt < 100; attempt++) {
    const key = generate();
    if (readableKey(key)) return key;
  }
  throw new Error("SFTP: could not generate a host key that ssh2 can read");
}

function readableKey(key: string): boolean {
  return !(ssh2.utils.parseKey(key) instanceof Error);
}

type Handle =
  | { kind: "file"; file: FileHandle; virtual: string; writing: boolean; overLimit?: boolean }
  | { kind: "dir"; virtual: string; entries: Promise<ssh2.FileEntry[]> | null; sent: number };

/**
 * Names per SSH_FXP_NAME answer to READDIR (then the next READDIR gets the next ones, and EOF after the last): one
 * answer of a folder's every entry was over OpenSSH's 256 KB packet limit past about 2,200 files ("Received message
 * too long"), and the folder could no longer be listed. 200 names with their long names stay far under it.
 */
export const READDIR_CHUNK = 200;

function attrsOf(s: FileInfo) {
  return {
    mode: s.mode,
    uid: 0,
    gid: 0,
    size: s.size,
    atime: Math.floor(s.atimeMs / 1000),
    mtime: Math.floor(s.mtimeMs / 1000),
  };
}

export function longname(name: string, s: FileInfo): string {
  // A folder can be entered: `ls -l` shows it as a directory one may cd into, as OpenSSH's server does.
  const mode = s.isDirectory() ? "drwxr-xr-x" : "-rw-r--r--";
  const date = new Date(s.mtimeMs).toISOString().slice(0, 16).replace("T", " ");
  return `${mode}    1 portrait portrait ${String(s.size).padStart(10)} ${date} ${name}`;
}

export interface SftpServerOptions {
  store: Store;
  imports: ImportService;
  dataDir: string;
  port: number;
  host: string;
  logger?: Logger;
  /**
   * How often a quiet connection is asked whether it is still there (SSH keepalive); after 3 unanswered asks it is
   * dropped. Default 15 s. A client whose network went away mid-upload (a laptop closed, a VPN cut) sends no FIN:
   * without this its open write handle would hold its account's manifest queue until the kernel gave up on the
   * socket, hours later. Dropped, its upload is abandoned (INCOMPLETE_FILE) and the queue moves on.
   */
  keepaliveMs?: number;
  /**
   * How long a connection may take from its opening to a successful login (OpenSSH's LoginGraceTime, 120 s there);
   * default 30 s, plenty for a key login. A connection that sends nothing, only its banner, or keeps failing to log
   * in is dropped after it: each holds a socket and ssh2's buffers, and before login nobody is known to own it.
   */
  loginGraceMs?: number;
}

/** SSH keepalives left unanswered before a connection is dropped. */
const KEEPALIVE_COUNT_MAX = 3;

export class SftpDropPoint {
  /** The TCP listener: it starts each connection's login grace timer, then hands the socket to ssh2. */
  private server: Server | null = null;
  /** Each connection's login grace timer, cleared once it logged in. */
  private readonly graceTimers = new WeakMap<Socket, NodeJS.Timeout>();
  /** Per account, its manifests in the order they finished uploading (SEMANTICS §11 SFTP). */
  private readonly manifests = new Map<string, Promise<void>>();
  private readonly clients = new Set<ssh2.Connection>();
  private readonly uploads: Uploads;
  private readonly pending: PendingManifests;
  private readonly reports: FailureReports;
  port = 0;

  constructor(private readonly opts: SftpServerOptions) {
    this.uploads = new Uploads(path.join(opts.dataDir, "sftp", ".uploads"));
    this.pending = new PendingManifests(path.join(opts.dataDir, "sftp", ".manifests"));
    this.reports = new FailureReports(opts.store.imports, opts.store, path.join(opts.dataDir, "sftp", ".reports"));
  }

  async start(): Promise<number> {
    const key = await hostKey(this.opts.store, this.opts.logger);
    const server = new ssh2.Server(
      {
        hostKeys: [key],
        keepaliveInterval: this.opts.keepaliveMs ?? 15_000,
        keepaliveCountMax: KEEPALIVE_COUNT_MAX,
      } as ssh2.ServerConfig,
      (client) => this.onClient(client),
    );
    // ssh2 sees a connection only once the client's banner arrived: a socket that sends nothing would never reach
    // onClient. The grace time runs from the accept.
    const listener = createServer((socket) => {
      const grace = setTimeout(() => socket.destroy(), this.opts.loginGraceMs ?? 30_000);
      grace.unref();
      this.graceTimers.set(socket, grace);
      socket.once("close", () => clearTimeout(grace));
      server.injectSocket(socket);
    });
    this.server = listener;
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(this.opts.port, this.opts.host, () => resolve());
    });
    const address = listener.address();
    this.port = typeof address === "object" && address ? address.port : this.opts.port;
    // Manifests an earlier process received and never handled (it was killed): handled now, in their order.
    for (const left of await this.pending.left()) this.enqueueManifest(left.accountId, left.virtual, left);
    void this.reports.removeStaticCopies(path.join(this.opts.dataDir, "sftp")).then(
      (removed) => removed > 0 && this.opts.logger?.info({ removed }, "SFTP: removed failure report copies"),
      (err) => this.opts.logger?.error({ err }, "SFTP: could not remove failure report copies"),
    );
    return this.port;
  }

  async stop(): Promise<void> {
    for (const c of this.clients) c.end();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    // The connections' write handles are closed as abandoned, so no manifest is left waiting for an upload.
    while (this.manifests.size > 0) await Promise.allSettled([...this.manifests.values()]);
  }

  private root(accountId: string): string {
    return path.join(this.opts.dataDir, "sftp", accountId);
  }

  private onClient(client: ssh2.Connection): void {
    this.clients.add(client);
    let accountId: string | null = null;
    const sock = () => (client as unknown as { _sock?: Socket })._sock;
    client.on("error", (err: Error & { level?: string }) => {
      // ssh2 answers unanswered keepalives with end(): a FIN to a peer that is gone, so the socket (and with it the
      // connection's open write handles) would stay until the kernel gave up. Nobody is there to finish politely.
      if (err.level === "client-timeout") sock()?.destroy();
    });
    client.on("close", () => this.clients.delete(client));
    client.on("authentication", (ctx) => {
      if (ctx.method !== "publickey" || !ACCOUNT_ID.test(ctx.username)) {
        ctx.reject(["publickey"]);
        return;
      }
      void this.checkKey(ctx).then(
        async (ok) => {
          if (!ok) return ctx.reject(["publickey"]);
          accountId = ctx.username;
          await mkdir(this.root(accountId), { recursive: true });
          ctx.accept();
        },
        () => ctx.reject(["publickey"]),
      );
    });
    client.on("ready", () => {
      const socket = sock();
      if (socket) clearTimeout(this.graceTimers.get(socket as Socket));
      client.on("session", (acceptSession) => {
        const session = acceptSession();
        session.on("sftp", (acceptSftp) => {
          this.serve(acceptSftp(), accountId as string);
        });
        // Only SFTP: no shell, no exec.
        session.on("shell", (_accept, reject) => reject());
        session.on("exec", (_accept, reject) => reject());
      });
    });
  }

  /** A key the account registered; with a signature, proof that the client holds its private half. */
  private async checkKey(ctx: ssh2.PublicKeyAuthContext): Promise<boolean> {
    const account = await this.opts.store.getAccount(ctx.username);
    if (!account) return false;
    const keys = await this.opts.store.imports.listSftpKeys(account.id);
    const match = keys.find((k) => Buffer.from(k.publicKey, "base64").equals(ctx.key.data));
    if (!match) return false;
    if (!ctx.signature || !ctx.blob) return true;
    const parsed = ssh2.utils.parseKey(`${match.algorithm} ${match.publicKey}`);
    if (parsed instanceof Error) return false;
    return parsed.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true;
  }

  private serve(sftp: ssh2.SFTPWrapper, accountId: string): void {
    const root = this.root(accountId);
    const handles = new Map<string, Handle>();
    const real = (virtual: string) => path.join(root, virtual);
    const newHandle = (h: Handle) => {
      const id = randomBytes(8);
      handles.set(id.toString("hex"), h);
      return id;
    };
    const fail = (reqId: number, e: unknown) => {
      const code = (e as NodeJS.ErrnoException)?.code;
      sftp.status(
        reqId,
        code === "ENOENT"
          ? STATUS_CODE.NO_SUCH_FILE
          : code === "EACCES"
            ? STATUS_CODE.PERMISSION_DENIED
            : STATUS_CODE.FAILURE,
        code === "ENOENT" ? "No such file" : "Failure",
      );
    };
    /** Resolves a path or answers PERMISSION_DENIED (traversal above the folder). */
    const inside = (reqId: number, p: string): string | null => {
      const v = resolveInside(p);
      if (v === null) sftp.status(reqId, STATUS_CODE.PERMISSION_DENIED, "Path outside your folder");
      return v;
    };
    const run = (reqId: number, work: () => Promise<void>) => {
      work().catch((e) => fail(reqId, e));
    };
    /** The import whose failure report `v` is (served from the store, see reports.ts), or null. */
    const reportOf = (v: string) =>
      isReportName(path.posix.basename(v)) ? this.reports.importOf(accountId, real(v)) : Promise.resolve(null);
    const reportRefused = (reqId: number) =>
      sftp.status(
        reqId,
        STATUS_CODE.PERMISSION_DENIED,
        "This is an import's failure report, read from Portrait: it cannot be written or renamed",
      );

    sftp.on("REALPATH", (reqId, p) => {
      const v = inside(reqId, p);
      if (v !== null) sftp.name(reqId, [{ filename: v, longname: v, attrs: {} as ssh2.Attributes }]);
    });
    const statPath = (reqId: number, p: string) => {
      const v = inside(reqId, p);
      if (v === null) return;
      run(reqId, async () => {
        const report = await reportOf(v);
        sftp.attrs(reqId, attrsOf(report ? await this.reports.info(report) : await stat(real(v))));
      });
    };
    sftp.on("STAT", statPath);
    sftp.on("LSTAT", statPath);
    sftp.on("OPEN", (reqId, filename, flags) => {
      const v = inside(reqId, filename);
      if (v === null) return;
      const writing = (flags & ssh2.utils.sftp.OPEN_MODE.WRITE) !== 0;
      run(reqId, async () => {
        const report = await reportOf(v);
        if (report && writing) return reportRefused(reqId);
        if (report) {
          const file = await this.reports.open(report);
          sftp.handle(reqId, newHandle({ kind: "file", file, virtual: v, writing: false }));
          return;
        }
        const file = await open(real(v), ssh2.utils.sftp.flagsToString(flags) ?? "r");
        if (writing) {
          try {
            await this.uploads.opened(accountId, v);
          } catch (e) {
            await file.close();
            await this.uploads.closed(accountId, v, false);
            throw e;
          }
        }
        sftp.handle(reqId, newHandle({ kind: "file", file, virtual: v, writing }));
      });
    });
    sftp.on("READ", (reqId, id, offset, length) => {
      const h = handles.get(id.toString("hex"));
      if (h?.kind !== "file") return sftp.status(reqId, STATUS_CODE.FAILURE, "Bad handle");
      run(reqId, async () => {
        const buffer = Buffer.alloc(Math.min(length, 256 * 1024));
        const { bytesRead } = await h.file.read(buffer, 0, buffer.length, offset);
        if (bytesRead === 0) sftp.status(reqId, STATUS_CODE.EOF);
        else sftp.data(reqId, buffer.subarray(0, bytesRead));
      });
    });
    sftp.on("WRITE", (reqId, id, offset, data) => {
      const h = handles.get(id.toString("hex"));
      if (h?.kind !== "file") return sftp.status(reqId, STATUS_CODE.FAILURE, "Bad handle");
      run(reqId, async () => {
        // No file over PORTRAIT_IMPORT_MAX_BYTES is taken (an import refuses it anyway): the write that passes the
        // limit is refused, and the file left one byte over it, so that a manifest naming it is refused for its size
        // (PAYLOAD_TOO_LARGE) instead of importing the part received.
        const max = this.opts.imports.maxBytes;
        if (h.writing && (h.overLimit || offset + data.length > max)) {
          if (!h.overLimit) await h.file.truncate(max + 1);
          h.overLimit = true;
          sftp.status(reqId, STATUS_CODE.FAILURE, tooLargeMessage(max));
          return;
        }
        await h.file.write(data, 0, data.length, offset);
        sftp.status(reqId, STATUS_CODE.OK);
      });
    });
    sftp.on("FSTAT", (reqId, id) => {
      const h = handles.get(id.toString("hex"));
      if (h?.kind !== "file") return sftp.status(reqId, STATUS_CODE.FAILURE, "Bad handle");
      run(reqId, async () => sftp.attrs(reqId, attrsOf(await h.file.stat())));
    });
    // Times and modes are not kept; accepting the request lets `put -p` and friends succeed.
    sftp.on("FSETSTAT", (reqId) => sftp.status(reqId, STATUS_CODE.OK));
    sftp.on("SETSTAT", (reqId, p) => {
      if (inside(reqId, p) !== null) sftp.status(reqId, STATUS_CODE.OK);
    });
    sftp.on("CLOSE", (reqId, id) => {
      const key = id.toString("hex");
      const h = handles.get(key);
      handles.delete(key);
      if (!h) return sftp.status(reqId, STATUS_CODE.FAILURE, "Bad handle");
      if (h.kind === "dir") return sftp.status(reqId, STATUS_CODE.OK);
      run(reqId, async () => {
        await h.file.close();
        if (h.writing) await this.uploads.closed(accountId, h.virtual, true);
        sftp.status(reqId, STATUS_CODE.OK);
        if (h.writing && isManifestName(path.posix.basename(h.virtual))) this.enqueueManifest(accountId, h.virtual);
      });
    });
    sftp.on("OPENDIR", (reqId, p) => {
      const v = inside(reqId, p);
      if (v === null) return;
      run(reqId, async () => {
        if (!(await stat(real(v))).isDirectory())
          throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
        sftp.handle(reqId, newHandle({ kind: "dir", virtual: v, entries: null, sent: 0 }));
      });
    });
    sftp.on("READDIR", (reqId, id) => {
      const h = handles.get(id.toString("hex"));
      if (h?.kind !== "dir") return sftp.status(reqId, STATUS_CODE.FAILURE, "Bad handle");
      // The folder is read at the first READDIR, and handed out READDIR_CHUNK names at a time.
      h.entries ??= (async () => {
        const names = await readdir(real(h.virtual));
        const infos = new Map<string, FileInfo>();
        for (const name of names) {
          if (name.startsWith(".") && name.endsWith(".part")) continue;
          const s = await stat(path.join(real(h.virtual), name)).catch(() => null);
          if (s) infos.set(name, s);
        }
        // Each import's result names its failure report, which is listed although no file holds it.
        for (const name of names) {
          if (!name.endsWith(".result.json")) continue;
          const reportName = `${name.slice(0, -".result.json".length)}.failures.csv`;
          const report = await reportOf(path.posix.join(h.virtual, reportName));
          if (report) infos.set(reportName, await this.reports.info(report));
        }
        return [...infos].map(([name, s]) => ({ filename: name, longname: longname(name, s), attrs: attrsOf(s) }));
      })();
      const entries = h.entries;
      run(reqId, async () => {
        const all = await entries;
        const chunk = all.slice(h.sent, h.sent + READDIR_CHUNK);
        h.sent += chunk.length;
        if (chunk.length === 0) sftp.status(reqId, STATUS_CODE.EOF);
        else sftp.name(reqId, chunk);
      });
    });
    sftp.on("REMOVE", (reqId, p) => {
      const v = inside(reqId, p);
      if (v !== null)
        run(reqId, async () => {
          // Removing a report: its result file stops naming it.
          if (await reportOf(v)) await this.reports.forget(real(v));
          else await rm(real(v));
          await this.uploads.removed(accountId, v);
          sftp.status(reqId, STATUS_CODE.OK);
        });
    });
    sftp.on("MKDIR", (reqId, p) => {
      const v = inside(reqId, p);
      if (v !== null)
        run(reqId, async () => {
          await mkdir(real(v));
          sftp.status(reqId, STATUS_CODE.OK);
        });
    });
    sftp.on("RMDIR", (reqId, p) => {
      const v = inside(reqId, p);
      if (v !== null)
        run(reqId, async () => {
          await rmdir(real(v));
          sftp.status(reqId, STATUS_CODE.OK);
        });
    });
    sftp.on("RENAME", (reqId, from, to) => {
      const a = inside(reqId, from);
      if (a === null) return;
      const b = inside(reqId, to);
      if (b !== null)
        run(reqId, async () => {
          if ((await reportOf(a)) || (await reportOf(b))) return reportRefused(reqId);
          await rename(real(a), real(b));
          await this.uploads.moved(accountId, a, b);
          sftp.status(reqId, STATUS_CODE.OK);
          if (isManifestName(path.posix.basename(b))) this.enqueueManifest(accountId, b);
        });
    });
    for (const op of ["READLINK", "SYMLINK"] as const) {
      sftp.on(op as "READLINK", (reqId: number) => sftp.status(reqId, STATUS_CODE.OP_UNSUPPORTED, "Not supported"));
    }
    // The client is done, or its connection dropped: close our side too (else the client waits for the channel to
    // close), and the files. A file still open for writing was not closed by the client: its upload is abandoned.
    const abandon = () => {
      for (const h of handles.values()) {
        if (h.kind !== "file") continue;
        void h.file
          .close()
          .catch(() => undefined)
          .then(() => (h.writing ? this.uploads.closed(accountId, h.virtual, false) : undefined))
          .catch((err) => this.opts.logger?.error({ err, accountId }, "SFTP: could not record an abandoned upload"));
      }
      handles.clear();
    };
    sftp.on("end", () => {
      sftp.end();
      abandon();
    });
    sftp.on("close", abandon);
  }

  /**
   * An account's manifests are handled strictly one after another, in the order they were closed; one waiting for
   * its data file's upload holds back the account's later manifests (upload order), not other accounts'.
   */
  private enqueueManifest(accountId: string, virtual: string, left?: PendingManifest): void {
    // Noted on disk first (in the queue's order), so that a process killed before it is handled handles it at start.
    const noted = left ? Promise.resolve(left) : this.pending.add(accountId, virtual);
    const tail = (this.manifests.get(accountId) ?? Promise.resolve())
      .then(async () => {
        const pending = await noted;
        await this.handleManifest(accountId, virtual);
        await this.pending.done(pending);
      })
      .catch((err) => this.opts.logger?.error({ err, accountId, manifest: virtual }, "SFTP manifest failed"));
    this.manifests.set(accountId, tail);
    void tail.then(() => {
      if (this.manifests.get(accountId) === tail) this.manifests.delete(accountId);
    });
  }

  /** Reads the manifest once its data file is no longer being written (SEMANTICS §11 SFTP: never half a file). */
  private async settledManifest(accountId: string, virtual: string): Promise<ManifestOutcome> {
    const root = this.root(accountId);
    const dir = path.posix.dirname(virtual);
    for (;;) {
      const outcome = await readManifest(path.join(root, virtual), dir, root);
      if (!outcome.ok) return outcome;
      const data = outcome.manifest.virtual;
      if (this.uploads.isWriting(accountId, data)) {
        await this.uploads.settled(accountId, data);
        continue; // read again: the upload may have renamed or removed the file
      }
      if (await this.uploads.incomplete(accountId, data)) {
        return {
          ok: false,
          code: "INCOMPLETE_FILE",
          message: `the upload of ${outcome.manifest.fileName} did not complete (its connection closed while writing): upload it again, then the manifest`,
          fileName: outcome.manifest.fileName,
        };
      }
      const max = this.opts.imports.maxBytes;
      const size = (await stat(outcome.manifest.dataPath).catch(() => null))?.size ?? 0;
      if (size > max) {
        return {
          ok: false,
          code: "PAYLOAD_TOO_LARGE",
          message: `${outcome.manifest.fileName} is ${size > max + 1 ? `${size} bytes` : "over the limit"}: ${tooLargeMessage(max)}`,
          fileName: outcome.manifest.fileName,
        };
      }
      // Only now: the header of a file still being written may not be there yet.
      const mismatch = await columnsMismatch(outcome.manifest);
      if (mismatch !== null) {
        return { ok: false, code: "INVALID_MANIFEST", message: mismatch, fileName: outcome.manifest.fileName };
      }
      return outcome;
    }
  }

  private async handleManifest(accountId: string, virtual: string): Promise<void> {
    const root = this.root(accountId);
    const dir = path.posix.dirname(virtual);
    const account = await this.opts.store.getAccount(accountId);
    if (!account) return;
    const outcome = await this.settledManifest(accountId, virtual);
    const manifestName = path.posix.basename(virtual);
    if (!outcome.ok) {
      // Next to the manifest, under its name: a result next to the data file would be replaced by the result of an
      // import of that file finishing later (one queued before this manifest, or sent after it), and lost.
      await writeResult(path.join(root, dir), manifestName, {
        status: "failed",
        manifest: manifestName,
        ...(outcome.fileName !== null && { fileName: outcome.fileName }),
        error: { code: outcome.code, message: outcome.message },
      });
      return;
    }
    // A refusal of an earlier manifest of this name no longer holds: its import's result will be the file's.
    await rm(path.join(root, dir, `${manifestName}.result.json`), { force: true });
    const m: Manifest = outcome.manifest;
    try {
      await this.opts.imports.create(account, createReadStream(m.dataPath), {
        kind: m.kind,
        format: m.format,
        source: "sftp",
        fileName: m.fileName,
        options: {
          ...(m.mapping && { mapping: m.mapping }),
          resultDir: path.dirname(m.dataPath),
          resultName: path.basename(m.dataPath),
        },
      });
    } catch (e) {
      // A refusal of the file (one grown past the limit since it was measured) is the manifest's result, as any
      // refusal: it used to vanish into a log line, and the manifest was tried again, silently, at every start.
      if (!(e instanceof PortraitError)) throw e;
      await writeResult(path.join(root, dir), manifestName, {
        status: "failed",
        manifest: manifestName,
        fileName: m.fileName,
        error: { code: e.code, message: e.message },
      });
    }
  }
}

function tooLargeMessage(max: number): string {
  return `an import file is at most ${max} bytes (PORTRAIT_IMPORT_MAX_BYTES)`;
}

/** Written aside and renamed into place, so that a client polling for it never reads half of it. */
async function writeResult(dir: string, name: string, body: Record<string, unknown>): Promise<void> {
  const tmp = path.join(dir, `.${name}.result.json.${randomBytes(4).toString("hex")}.part`);
  await writeFile(tmp, `${JSON.stringify(body, null, 2)}\n`);
  await rename(tmp, path.join(dir, `${name}.result.json`));
}
