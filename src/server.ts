/**
 * `portrait serve`: opens the store, creates the first account on an empty store (printing its keys once),
 * serves the API, and on SIGTERM/SIGINT stops taking requests, finishes in-flight batches, then closes the store.
 */
import { randomBytes } from "node:crypto";
import type { FastifyInstance } from "fastify";
import { buildApp } from "./api/app.js";
import { createMetrics } from "./api/metrics.js";
import type { Config } from "./config.js";
import { createImports, type Imports } from "./imports/index.js";
import { createLogger } from "./logger.js";
import { Accounts, checkGivenKey, hashKey } from "./pipeline/accounts.js";
import { Portrait } from "./pipeline/portrait.js";
import { openStore, sharedDataWarning } from "./store/open.js";
import type { Store } from "./store/store.js";

export interface FirstRun {
  accountId: string;
  secretKey: string;
  publicKey: string;
  dashboardUser: string;
  dashboardPassword: string;
}

/** API.md Starting and first run: an empty store gets the account `default`, its keys and a dashboard admin. */
export async function bootstrap(
  store: Store,
  accounts: Accounts,
  config: Pick<Config, "bootstrapSecretKey" | "bootstrapPublicKey">,
): Promise<FirstRun | null> {
  if ((await store.listAccounts()).length > 0) return null;
  for (const [variable, kind, key] of [
    ["PORTRAIT_BOOTSTRAP_SECRET_KEY", "secret", config.bootstrapSecretKey],
    ["PORTRAIT_BOOTSTRAP_PUBLIC_KEY", "public", config.bootstrapPublicKey],
  ] as const) {
    try {
      if (key !== null) checkGivenKey(kind, key);
    } catch (e) {
      // Said before anything is made, so that the next start, with the variable fixed, is still a first start.
      throw new Error(`${variable}: ${(e as Error).message}; nothing was created`);
    }
  }
  let created: Awaited<ReturnType<Accounts["create"]>>;
  try {
    created = await accounts.create(
      "default",
      {
        ...(config.bootstrapSecretKey && { secretKey: config.bootstrapSecretKey }),
        ...(config.bootstrapPublicKey && { publicKey: config.bootstrapPublicKey }),
      },
      "default",
    );
  } catch (error) {
    // Several nodes starting at once on an empty PostgreSQL: the account's primary key lets one of them win.
    if ((await store.getAccount("default")) !== null) return null;
    throw error;
  }
  const dashboardPassword = randomBytes(12).toString("base64url");
  await accounts.createDashboardUser(created.account.id, "admin", dashboardPassword);
  return {
    accountId: created.account.id,
    secretKey: created.secretKey,
    publicKey: created.publicKey,
    dashboardUser: "admin",
    dashboardPassword,
  };
}

/**
 * A PORTRAIT_BOOTSTRAP_* key set on a start that is not the first: it is used on the first start only. When it is not
 * a live key of this store (a script pointed at an existing store, expecting its key to work), a warning says so,
 * once per start; a key the store has (the same environment as the first start) is not worth a word.
 */
export async function unusedBootstrapKeys(
  store: Store,
  config: Pick<Config, "bootstrapSecretKey" | "bootstrapPublicKey">,
): Promise<string[]> {
  const warnings: string[] = [];
  for (const [variable, key] of [
    ["PORTRAIT_BOOTSTRAP_SECRET_KEY", config.bootstrapSecretKey],
    ["PORTRAIT_BOOTSTRAP_PUBLIC_KEY", config.bootstrapPublicKey],
  ] as const) {
    if (key === null) continue;
    const found = await store.findApiKeyByHash(hashKey(key));
    if (found && found.revokedAt === null) continue;
    warnings.push(
      `${variable} is set, but this store has its accounts already and that key is not one of its keys ` +
        `(${found ? "it was revoked" : "unknown here"}): the variable is read on the first start only; make a key ` +
        "with `portrait keys create`",
    );
  }
  return warnings;
}

export interface RunningServer {
  app: FastifyInstance;
  store: Store;
  portrait: Portrait;
  url: string;
  firstRun: FirstRun | null;
  /** Bulk imports: the upload service, the runner, and the SFTP drop point when PORTRAIT_SFTP_PORT is set. */
  imports: Imports;
  close(): Promise<void>;
}

/** How long a shutdown waits for requests in flight before it cuts their connections (README: Configuration). */
const SHUTDOWN_GRACE_MS = 10_000;

/** One turn of the event loop through its poll phase (timers, then poll, where sockets are accepted and read). */
async function turn(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 0));
  await new Promise((resolve) => setImmediate(resolve));
}

/** How long a shutdown keeps taking connections already waiting to be accepted, at most (see `close`). */
const BACKLOG_DRAIN_MS = 2_000;

export async function startServer(config: Config): Promise<RunningServer> {
  const logger = createLogger(config.logLevel);
  const store = await openStore(config);
  const shared = config.databaseUrl ? null : sharedDataWarning(config.dataDir);
  if (shared) logger.warn(shared);
  for (const warning of (await store.settingsWarnings?.()) ?? []) logger.warn(warning);
  const accounts = new Accounts(store);
  // Keys revoked and settings changed through other processes reach this one's cache at once, not after its expiry.
  const stopWatching = (await store.watchAccounts?.((change) => accounts.changed(change))) ?? (async () => undefined);
  const portrait = new Portrait(store);
  const metrics = createMetrics({
    waitingRecords: () => portrait.waitingRecords(),
    unfinishedImports: () => store.imports.listUnfinished(),
    ...(store.connections && { connections: store.connections.bind(store) }),
  });
  const imports = createImports(portrait, config, logger, metrics.imports);
  let started = false;
  const app = await buildApp({
    portrait,
    accounts,
    metrics,
    logger,
    imports: imports.service,
    importMaxBytes: config.importMaxBytes,
    jsonBodyTimeoutMs: config.jsonBodyTimeoutMs,
    headersTimeoutMs: config.httpHeadersTimeoutMs,
    ready: () => started,
    stopping: () => refusing,
  });
  // Responses sent once closing began end their connection: a keep-alive connection whose request was in flight
  // when close() was called would otherwise hold the close open until the client's idle timeout.
  let closingDown = false;
  // Set once the connections waiting at the signal are taken in (below): requests after that answer 503.
  let refusing = false;
  app.addHook("onSend", async (_request, reply, payload) => {
    if (closingDown) reply.header("connection", "close");
    return payload;
  });
  let accepted = 0;
  app.server.on("connection", () => {
    accepted++;
  });
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      closingDown = true;
      // Requests in flight finish; a client that never finishes sending one (a stalled body) must not hold the
      // shutdown open: after SHUTDOWN_GRACE_MS the connections still open are cut.
      const cut = setTimeout(() => app.server.closeAllConnections(), SHUTDOWN_GRACE_MS);
      cut.unref();
      await imports.stop();
      // fastify's close stops listening and closes the connections with no request in progress, at once. While the
      // event loop is busy (a SQLite writer's transactions run on it), node accepts about one connection per turn,
      // and clients' connections wait in the listening socket's queue with their request sent whole: closing the
      // listening socket reset them, and so did closing a connection accepted but not yet read (idle to node), so a
      // batch the client had sent got no answer. First the loop turns until a turn accepts nothing more (at most
      // BACKLOG_DRAIN_MS), each accepted connection read in the turn after, so that what was sent is in progress and
      // answered (with `connection: close`); connections that come after are refused, or answered 503.
      const until = Date.now() + BACKLOG_DRAIN_MS;
      for (let seen = -1; seen !== accepted && Date.now() < until; ) {
        seen = accepted;
        await turn();
        await turn();
      }
      refusing = true;
      await app.close();
      clearTimeout(cut);
      await stopWatching();
      await store.close();
    })();
    return closing;
  };
  let address: string;
  try {
    try {
      address = await app.listen({ port: config.port, host: config.host });
    } catch (error) {
      throw listenError(error, "PORTRAIT_PORT", config.port, config.host);
    }
    try {
      await imports.start();
    } catch (error) {
      if (config.sftpPort === null) throw error;
      throw listenError(error, "PORTRAIT_SFTP_PORT", config.sftpPort, config.host);
    }
    if (imports.sftp)
      logger.info({ port: imports.sftp.port }, `SFTP drop point listening on port ${imports.sftp.port}`);
  } catch (error) {
    // The start's own error is the one to report, not one from closing what half started.
    await close().catch(() => undefined);
    throw error;
  }
  // Only once the ports are ours: a first start that failed (a port in use) must not create keys nobody was shown.
  const firstRun = await bootstrap(store, accounts, config);
  if (firstRun === null) {
    for (const warning of await unusedBootstrapKeys(store, config)) logger.warn(warning);
  }
  started = true;
  const url = address.replace("0.0.0.0", "localhost").replace("[::]", "localhost");
  return {
    app,
    store,
    portrait,
    url,
    firstRun,
    imports,
    close,
  };
}

/** Errors of a listen that name the address rather than the port: the host cannot be resolved or is not this machine's. */
const HOST_ERRORS = new Set(["ENOTFOUND", "EAI_AGAIN", "EAI_NONAME", "EAI_FAIL", "EADDRNOTAVAIL", "EINVAL"]);

/**
 * A failed listen as one line naming the variable to change: PORTRAIT_HOST for an address this machine cannot listen
 * on (a name that does not resolve, an address not its own), else the port's variable (`portVariable`; `--port` sets
 * PORTRAIT_PORT's value too). Other errors are returned as they are.
 */
export function listenError(error: unknown, portVariable: string, port: number, host: string): unknown {
  const { code, syscall } = (error ?? {}) as NodeJS.ErrnoException;
  if (typeof code !== "string" || (syscall !== "listen" && syscall !== "getaddrinfo")) return error;
  if (HOST_ERRORS.has(code)) {
    return new Error(
      `PORTRAIT_HOST: cannot listen on ${JSON.stringify(host)} (${code}): give an IP address of this machine, ` +
        "a name that resolves to one, or 0.0.0.0 for every interface",
    );
  }
  const why =
    code === "EADDRINUSE"
      ? "another process listens there"
      : code === "EACCES"
        ? "this user may not listen on it (ports below 1024 need privileges)"
        : (error as Error).message;
  return new Error(`${portVariable}: cannot listen on port ${port} of ${host} (${code}: ${why})`);
}

export function printFirstRun(first: FirstRun, url: string): void {
  const lines = [
    "",
    "Portrait is ready. This store is new, so here are its first keys (shown once; keep them safe):",
    `  account:            ${first.accountId}`,
    `  secret key:         ${first.secretKey}`,
    `  public key:         ${first.publicKey}`,
    `  dashboard login:    ${first.dashboardUser} / ${first.dashboardPassword}`,
    "",
    `  API:                ${url}/v1  (OpenAPI: ${url}/v1/openapi.json)`,
    `  try:                curl -H 'Authorization: Bearer ${first.secretKey}' ${url}/v1/account`,
    "",
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
