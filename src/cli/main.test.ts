import { once } from "node:events";
/**
 * The operator commands as an operator runs them (a child process on a real SQLite data directory, and on PostgreSQL
 * where the point is PostgreSQL's): which store the flags and the environment choose, refusing a store that does not
 * exist (only `serve` creates one), one-line errors naming the flag or variable at fault, and the commands' output.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import net, { type AddressInfo, connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Accounts } from "../pipeline/accounts.js";
import { Portrait } from "../pipeline/portrait.js";
import { Segments } from "../pipeline/segments.js";
import { openStore } from "../store/open.js";
import { bundleCli, type Cli, type CliResult, ROOT } from "../test-support/cli.js";
import { createTestDatabase, storesUnderTest, type TestDatabase } from "../test-support/postgres.js";

const stores = await storesUnderTest();
let cli: Cli;
const temp: string[] = [];

beforeAll(async () => {
  cli = await bundleCli();
}, 60_000);

afterAll(() => {
  cli?.remove();
  for (const dir of temp) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "portrait-cli-main-"));
  temp.push(dir);
  return dir;
}

/** A SQLite store as a first `serve` leaves it: migrated, with the account `default`. */
async function sqliteStore(accountName = "SQLite"): Promise<string> {
  const dir = tempDir();
  const store = await openStore({ dataDir: dir, databaseUrl: null });
  try {
    await new Accounts(store).create(accountName, {}, "default");
  } finally {
    await store.close();
  }
  return dir;
}

/** An error as the CLI must report it: exit code 1, one line on stderr, nothing on stdout, no stack trace. */
function expectOneLineError(result: CliResult, pattern: RegExp): void {
  expect(result.code, result.stderr).toBe(1);
  expect(result.stdout).toBe("");
  expect(result.stderr).toMatch(/^portrait: [^\n]*\n$/);
  expect(result.stderr).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\bat .*\.(m?js|ts):\d+/);
}

const run = (...args: string[]) => cli.run(args);
/** An address where nothing listens. */
const NOBODY = "postgres://portrait:hunter2@127.0.0.1:1/portrait";

describe("portrait --version", () => {
  it("prints package.json's version", async () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
    expect(await run("--version")).toEqual({ code: 0, stdout: `${version}\n`, stderr: "" });
    expect((await run("-V")).stdout).toBe(`${version}\n`);
  });
});

describe("which store: flags win over the environment", () => {
  it("--data-dir wins over PORTRAIT_DATABASE_URL", async () => {
    const dir = await sqliteStore("From the flag");
    const listed = await cli.run(["accounts", "list", "--data-dir", dir, "--json"], { PORTRAIT_DATABASE_URL: NOBODY });
    expect(listed.stderr).toBe("");
    expect(JSON.parse(listed.stdout)).toEqual([{ id: "default", name: "From the flag" }]);
  });

  it("--database-url wins over PORTRAIT_DATA_DIR", async () => {
    const dir = await sqliteStore();
    const listed = await cli.run(["accounts", "list", "--database-url", NOBODY], { PORTRAIT_DATA_DIR: dir });
    expectOneLineError(
      listed,
      /cannot reach PostgreSQL at 127\.0\.0\.1:1\/portrait \(.*ECONNREFUSED.*--database-url\)/,
    );
    expect(listed.stderr).not.toContain("hunter2");
  });

  it("refuses both flags at once", async () => {
    const dir = await sqliteStore();
    const both = await run("accounts", "list", "--data-dir", dir, "--database-url", NOBODY);
    expectOneLineError(both, /give --data-dir \(SQLite\) or --database-url \(PostgreSQL\), not both/);
  });

  it("accepts only postgres:// and postgresql:// URLs, naming the flag or variable, never the password", async () => {
    for (const url of ["mysql://root:hunter2@db/portrait", "not a url", "localhost:5432"]) {
      const flag = await run("accounts", "list", "--database-url", url);
      expectOneLineError(flag, /^portrait: --database-url must be a postgres:\/\/ or postgresql:\/\/ URL, got /);
      expect(flag.stderr).not.toContain("hunter2");
      const env = await cli.run(["accounts", "list"], { PORTRAIT_DATABASE_URL: url });
      expectOneLineError(env, /^portrait: PORTRAIT_DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/);
      expect(env.stderr).not.toContain("hunter2");
    }
    const serve = await cli.run(["serve"], { PORTRAIT_DATABASE_URL: "mysql://x@y/z", PORTRAIT_PORT: "0" });
    expectOneLineError(serve, /PORTRAIT_DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/);
  });

  it("says PostgreSQL cannot be reached, with host and port but not the password, for serve too", async () => {
    const serve = await cli.run(["serve"], { PORTRAIT_DATABASE_URL: NOBODY, PORTRAIT_PORT: "0" });
    expectOneLineError(serve, /cannot reach PostgreSQL at 127\.0\.0\.1:1\/portrait \(.*PORTRAIT_DATABASE_URL\)/);
    expect(serve.stderr).not.toContain("hunter2");
  });

  it("gives up on a PostgreSQL host that takes the connection and never answers, after 10 s, for serve too", async () => {
    const silent = net.createServer(() => undefined); // accepts, then says nothing (a stuck proxy or server)
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const { port } = silent.address() as net.AddressInfo;
    const url = `postgres://portrait:hunter2@127.0.0.1:${port}/portrait`;
    try {
      const [list, serve] = await Promise.all([
        run("accounts", "list", "--database-url", url),
        cli.run(["serve"], { PORTRAIT_DATABASE_URL: url, PORTRAIT_PORT: "0" }),
      ]);
      const reason = `cannot reach PostgreSQL at 127\\.0\\.0\\.1:${port}/portrait \\(no answer within 10 s;`;
      expectOneLineError(list, new RegExp(`${reason} --database-url\\)`));
      expectOneLineError(serve, new RegExp(`${reason} PORTRAIT_DATABASE_URL\\)`));
      expect(list.stderr + serve.stderr).not.toContain("hunter2");
    } finally {
      silent.close();
    }
  }, 40_000);
});

describe("operator commands refuse a store that does not exist", () => {
  it("on SQLite: no portrait.db → an error, and nothing is created", async () => {
    const missing = path.join(tempDir(), "typo", "data");
    for (const args of [
      ["accounts", "list"],
      ["accounts", "create", "acme"],
      ["keys", "list"],
      ["find", "--email", "a@b.co"],
      ["segment", "count", "--where", '{"type": "identified"}'],
    ]) {
      const result = await run(...args, "--data-dir", missing);
      expectOneLineError(
        result,
        new RegExp(
          `no Portrait store at ${path.join(missing, "portrait.db")} \\(start \`portrait serve\` once to create it, or pass --data-dir\\)`,
        ),
      );
    }
    expect(existsSync(path.dirname(missing))).toBe(false);
    // From the environment, the message says which variable chose it.
    const env = await cli.run(["accounts", "list"], { PORTRAIT_DATA_DIR: missing });
    expectOneLineError(env, /no Portrait store at .*\(PORTRAIT_DATA_DIR; start `portrait serve` once/);
  });

  it("`accounts create` before the first serve leaves the first run to serve (account default, its keys)", async () => {
    const dir = path.join(tempDir(), "data");
    expectOneLineError(await run("accounts", "create", "acme", "--data-dir", dir), /no Portrait store at/);
    const server = cli.spawn(["serve"], { PORTRAIT_DATA_DIR: dir, PORTRAIT_PORT: "0", PORTRAIT_HOST: "127.0.0.1" });
    let out = "";
    server.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    try {
      await expect
        .poll(() => out, { timeout: 30_000, interval: 100 })
        .toMatch(/This store is new[\s\S]*dashboard login: +admin \/ /);
    } finally {
      server.kill("SIGTERM");
      await new Promise((resolve) => server.once("exit", resolve));
    }
    const listed = await run("accounts", "list", "--data-dir", dir, "--json");
    expect(JSON.parse(listed.stdout)).toEqual([{ id: "default", name: "default" }]);
  }, 60_000);

  it("`accounts create` on a store whose first start never finished (no account) waits for serve", async () => {
    const dir = tempDir();
    await (await openStore({ dataDir: dir, databaseUrl: null })).close();
    expectOneLineError(
      await run("accounts", "create", "acme", "--data-dir", dir),
      /NO_ACCOUNT_YET: this store has no account yet: start `portrait serve` once/,
    );
    // Listing it prints no line at all (it printed one empty line), and `--json` an empty list.
    expect(await run("accounts", "list", "--data-dir", dir)).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(JSON.parse((await run("accounts", "list", "--data-dir", dir, "--json")).stdout)).toEqual([]);
  });
});

describe.each(stores)("a missing store on %s", (kind) => {
  let database: TestDatabase | null = null;
  afterAll(async () => {
    await database?.drop();
  });

  it("is refused, and left as it was", async () => {
    if (kind === "sqlite") {
      const dir = tempDir();
      expectOneLineError(await run("keys", "list", "--data-dir", dir), /no Portrait store at/);
      expect(existsSync(path.join(dir, "portrait.db"))).toBe(false);
      return;
    }
    database = await createTestDatabase();
    const url = database!.url;
    const result = await run("keys", "list", "--database-url", url);
    expectOneLineError(
      result,
      /no Portrait store in the PostgreSQL database [^ ]+:\d+\/portrait_test_\w+: it has no Portrait schema \(--database-url; start `portrait serve` once to create it, or pass --database-url\)/,
    );
    const env = await cli.run(["accounts", "create", "acme"], { PORTRAIT_DATABASE_URL: url });
    expectOneLineError(env, /no Portrait store in the PostgreSQL database .*\(PORTRAIT_DATABASE_URL; /);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query("SELECT to_regclass('schema_migrations') AS t, to_regclass('accounts') AS a");
      expect(rows[0]).toEqual({ t: null, a: null });
    } finally {
      await client.end();
    }
    // A database that is not there is named, as the server's answer says.
    const gone = new URL(url);
    gone.pathname = "/portrait_test_no_such_database";
    expectOneLineError(
      await run("accounts", "list", "--database-url", gone.toString()),
      /PostgreSQL at .*\/portrait_test_no_such_database refused the connection \(.*does not exist; --database-url\)/,
    );
  }, 60_000);
});

describe.each(stores.filter((k) => k === "postgres"))("a read-only database on %s", () => {
  it("stops serve and the operator commands at start, naming the database and why", async () => {
    const database = (await createTestDatabase())!;
    try {
      await (await openStore({ dataDir: tempDir(), databaseUrl: database.url })).close(); // migrated once
      const name = new URL(database.url).pathname.slice(1);
      const admin = new pg.Client({ connectionString: database.url });
      await admin.connect();
      await admin.query(`ALTER DATABASE ${name} SET default_transaction_read_only = on`); // as on a standby
      await admin.end();
      const why =
        /PostgreSQL at [^ ]+:\d+\/portrait_test_\w+ is read-only \(a standby, or default_transaction_read_only is on\): Portrait needs a database it can write/;
      expectOneLineError(await run("accounts", "list", "--database-url", database.url), why);
      const serve = await cli.run(["serve"], { PORTRAIT_DATABASE_URL: database.url, PORTRAIT_PORT: "0" });
      expectOneLineError(serve, why);
    } finally {
      await database.drop();
    }
  }, 60_000);
});

describe("unusable data directories and ports", () => {
  it("names the path and the flag or variable, for operator commands and serve", async () => {
    const dir = tempDir();
    const file = path.join(dir, "a-file");
    writeFileSync(file, "not a directory");
    expectOneLineError(
      await run("accounts", "list", "--data-dir", file),
      /^portrait: .*a-file is not a directory \(--data-dir\)$/m,
    );
    const env = { PORTRAIT_PORT: "0", PORTRAIT_HOST: "127.0.0.1" };
    expectOneLineError(
      await cli.run(["serve"], { ...env, PORTRAIT_DATA_DIR: file }),
      /a-file is not a directory \(PORTRAIT_DATA_DIR\)/,
    );
    expectOneLineError(
      await cli.run(["serve"], { ...env, PORTRAIT_DATA_DIR: path.join(file, "data") }),
      /cannot create the data directory .*a-file\/data \(ENOTDIR.*; PORTRAIT_DATA_DIR\)/,
    );
    // portrait.db cannot be opened: it is a directory.
    const blocked = path.join(dir, "blocked");
    mkdirSync(path.join(blocked, "portrait.db"), { recursive: true });
    expectOneLineError(
      await cli.run(["serve"], { ...env, PORTRAIT_DATA_DIR: blocked }),
      /cannot open the SQLite store .*blocked\/portrait\.db \(.*; PORTRAIT_DATA_DIR\)/,
    );
    expectOneLineError(
      await run("accounts", "list", "--data-dir", blocked),
      /cannot open the SQLite store .*blocked\/portrait\.db \(.*; --data-dir\)/,
    );
  });

  it("serve --port takes a port number only, as PORTRAIT_PORT does", async () => {
    for (const port of ["abc", "99999", "-1", "18490abc", "1.5"]) {
      expectOneLineError(
        await cli.run(["serve", `--port=${port}`], { PORTRAIT_DATA_DIR: tempDir() }),
        new RegExp(`^portrait: --port must be a port number, got ${port.replace(".", "\\.")}\\n`),
      );
    }
    expectOneLineError(
      await cli.run(["serve"], { PORTRAIT_DATA_DIR: tempDir(), PORTRAIT_PORT: "18490abc" }),
      /PORTRAIT_PORT must be a port number, got 18490abc/,
    );
  });

  it("serve names PORTRAIT_HOST for an address it cannot listen on, and the port's variable for a port in use", async () => {
    for (const host of ["not a host", "999.1.1.1"]) {
      expectOneLineError(
        await cli.run(["serve"], { PORTRAIT_DATA_DIR: tempDir(), PORTRAIT_PORT: "0", PORTRAIT_HOST: host }),
        new RegExp(
          `^portrait: PORTRAIT_HOST: cannot listen on "${host.replace(".", "\\.")}" \\(ENOTFOUND\\): give an IP address`,
        ),
      );
    }
    const taken = createServer().listen(0, "127.0.0.1");
    await once(taken, "listening");
    const port = String((taken.address() as AddressInfo).port);
    try {
      const base = { PORTRAIT_DATA_DIR: tempDir(), PORTRAIT_HOST: "127.0.0.1", PORTRAIT_LOG_LEVEL: "warn" };
      expectOneLineError(
        await cli.run(["serve"], { ...base, PORTRAIT_PORT: port }),
        new RegExp(
          `^portrait: PORTRAIT_PORT: cannot listen on port ${port} of 127\\.0\\.0\\.1 \\(EADDRINUSE: another process listens there\\)`,
        ),
      );
      expectOneLineError(
        await cli.run(["serve"], { ...base, PORTRAIT_PORT: "0", PORTRAIT_SFTP_PORT: port }),
        new RegExp(
          `^portrait: PORTRAIT_SFTP_PORT: cannot listen on port ${port} of 127\\.0\\.0\\.1 \\(EADDRINUSE: another process listens there\\)`,
        ),
      );
    } finally {
      taken.close();
    }
  });

  it("serve logs the SFTP drop point's port once it listens, the chosen one for PORTRAIT_SFTP_PORT=0", async () => {
    const child = cli.spawn(["serve"], {
      PORTRAIT_DATA_DIR: tempDir(),
      PORTRAIT_PORT: "0",
      PORTRAIT_HOST: "127.0.0.1",
      PORTRAIT_SFTP_PORT: "0",
    });
    let out = "";
    child.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
    });
    try {
      await expect.poll(() => out, { timeout: 30_000 }).toMatch(/SFTP drop point listening on port [1-9]\d*"/);
      const port = Number(/SFTP drop point listening on port (\d+)/.exec(out)?.[1]);
      const probe = connect(port, "127.0.0.1");
      await once(probe, "connect");
      probe.destroy();
    } finally {
      child.kill("SIGTERM");
      await once(child, "exit");
    }
  }, 60_000);

  it("serve refuses a timeout longer than a timer holds, before it listens", async () => {
    expectOneLineError(
      await cli.run(["serve"], { PORTRAIT_DATA_DIR: tempDir(), PORTRAIT_JSON_BODY_TIMEOUT_MS: "2147483648" }),
      /^portrait: PORTRAIT_JSON_BODY_TIMEOUT_MS must be at most 2147483647 \(milliseconds, about 24\.8 days\), got 2147483648\n/,
    );
  });
});

describe("operator commands on a store", () => {
  let dir: string;
  let profileId: string;
  let segmentId: string;

  beforeAll(async () => {
    dir = tempDir();
    const store = await openStore({ dataDir: dir, databaseUrl: null });
    try {
      const { account } = await new Accounts(store).create("CLI", {}, "default");
      const portrait = new Portrait(store);
      const r = await portrait.ingest(account, {
        records: [
          { type: "login", deviceId: "d1", properties: { Identity: "u-42", Email: "ana@example.com", Plan: "pro" } },
          { type: "event", deviceId: "d1", name: "Charged", properties: { Amount: 10 } },
          { type: "login", deviceId: "d2", properties: { Identity: "u-43", Plan: "free" } },
        ],
      });
      profileId = (r.results[0] as { profileId: string }).profileId;
      segmentId = (
        await new Segments(portrait).create(account, {
          name: "Pro",
          where: { property: "Plan", op: "eq", value: "pro" },
        })
      ).id;
    } finally {
      await store.close();
    }
  }, 60_000);

  it("a store another process holds locked is said to be busy, to retry, not that the flag is wrong", async () => {
    const db = new Database(path.join(dir, "portrait.db"));
    try {
      db.exec("BEGIN EXCLUSIVE");
      expectOneLineError(
        await run("accounts", "create", "busy", "--data-dir", dir),
        /^portrait: the SQLite store .*portrait\.db is busy: another process has held its write lock for 5 s .*run the command again once it lets go \(SQLITE_BUSY; --data-dir\)\n$/,
      );
    } finally {
      db.exec("ROLLBACK");
      db.close();
    }
  }, 30_000);

  it("refuses account and key names with control characters (they split the tab-separated listings)", async () => {
    expectOneLineError(
      await run("accounts", "create", "bad\nname", "--data-dir", dir),
      /^portrait: INVALID_VALUE: an account name must not hold control characters \(tab, newline…\): U\+000A at position 4\n$/,
    );
    expectOneLineError(
      await run("keys", "create", "--name", "tab\there", "--data-dir", dir),
      /^portrait: INVALID_VALUE: a key name must not hold control characters \(tab, newline…\): U\+0009 at position 4\n$/,
    );
    const listed = await run("keys", "list", "--data-dir", dir);
    expect(listed.stdout).not.toMatch(/tab/);
  });

  it("a reader that stops early (| head) ends the command quietly: exit 0, no stack trace", async () => {
    for (const args of [
      ["export", "--segment", segmentId],
      ["export", "--profile", profileId],
      ["accounts", "list"],
    ]) {
      const child = cli.spawn([...args, "--data-dir", dir]);
      // The pipe is closed before the command writes: its first write fails with EPIPE.
      child.stdout?.destroy();
      let stderr = "";
      child.stderr?.on("data", (c: Buffer) => {
        stderr += c.toString();
      });
      const [code] = await once(child, "exit");
      expect(stderr, args.join(" ")).toBe("");
      expect(code, args.join(" ")).toBe(0);
    }
  });

  const inStore = (...args: string[]) => run(...args, "--data-dir", dir);

  it("backup: a store that opens with everything in it, readable by its owner only; never over a file", async () => {
    const copy = path.join(tempDir(), "backup.db");
    const made = await inStore("backup", copy);
    expect(made.stderr).toBe("");
    expect(made.stdout).toMatch(/^backup written to .*backup\.db \(\d+ bytes\)\n$/);
    expect(statSync(copy).mode & 0o777).toBe(0o600);
    const restoredDir = tempDir();
    renameSync(copy, path.join(restoredDir, "portrait.db"));
    const found = await run("find", "--identity", "u-42", "--data-dir", restoredDir);
    expect(JSON.parse(found.stdout).profiles[0]).toMatchObject({ id: profileId, properties: { Plan: "pro" } });
    const again = await inStore("backup", path.join(restoredDir, "portrait.db"));
    expectOneLineError(again, /INVALID_VALUE: .*exists already/);
    expectOneLineError(
      await inStore("backup", path.join(restoredDir, "no-such-folder", "b.db")),
      /folder .* does not exist/,
    );
    expectOneLineError(await inStore("backup", ""), /INVALID_VALUE: name the backup file/);
  });

  it("find: one handle, MULTIPLE_HANDLES for two, MISSING_HANDLE for none", async () => {
    const found = await inStore("find", "--identity", "u-42");
    expect(found.code).toBe(0);
    expect(JSON.parse(found.stdout).profiles).toHaveLength(1);
    expectOneLineError(
      await inStore("find", "--email", "a@b.co", "--identity", "u-42"),
      /^portrait: MULTIPLE_HANDLES: name one handle only, got --identity, --email\n/,
    );
    expectOneLineError(await inStore("find"), /^portrait: MISSING_HANDLE: /);
  });

  it("an unknown --account is UNKNOWN_ACCOUNT, not UNAUTHORIZED", async () => {
    for (const args of [
      ["keys", "list"],
      ["find", "--identity", "u-42"],
      ["segment", "count", "--where", '{"type": "identified"}'],
      ["sftp-keys", "list"],
      ["export", "--profile", "x"],
    ]) {
      expectOneLineError(
        await inStore(...args, "--account", "nope"),
        /^portrait: UNKNOWN_ACCOUNT: no account nope; see `portrait accounts list`\n/,
      );
    }
  });

  it("accounts create trims the name and refuses a blank one", async () => {
    const created = await inStore("accounts", "create", "  spaced  ", "--json");
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({ name: "spaced" });
    const listed = JSON.parse((await inStore("accounts", "list", "--json")).stdout) as Array<{ name: string }>;
    expect(listed.map((a) => a.name)).toContain("spaced");
    expectOneLineError(await inStore("accounts", "create", "   "), /INVALID_VALUE: an account name must not be blank/);
  });

  it("account names are unique without case, and --account takes a name where no account has that id", async () => {
    const made = JSON.parse((await inStore("accounts", "create", "Named Corp", "--json")).stdout);
    expectOneLineError(
      await inStore("accounts", "create", "  named corp "),
      new RegExp(`^portrait: ACCOUNT_EXISTS: an account named Named Corp exists already \\(id ${made.id}\\)\n`),
    );
    const names = (JSON.parse((await inStore("accounts", "list", "--json")).stdout) as Array<{ name: string }>).map(
      (a) => a.name.toLowerCase(),
    );
    expect(names.filter((n) => n === "named corp")).toHaveLength(1);

    // By name, in any case: the key lands on that account, not on default.
    const key = JSON.parse(
      (await inStore("keys", "create", "--account", "NAMED CORP", "--name", "k", "--json")).stdout,
    );
    const listed = JSON.parse((await inStore("keys", "list", "--account", made.id, "--json")).stdout) as Array<{
      id: string;
    }>;
    expect(listed.map((k) => k.id)).toContain(key.id);
    const onDefault = JSON.parse((await inStore("keys", "list", "--json")).stdout) as Array<{ id: string }>;
    expect(onDefault.map((k) => k.id)).not.toContain(key.id);

    // Two accounts with one name (a store from before the rule): the name alone is refused, the id still works.
    const store = await openStore({ dataDir: dir, databaseUrl: null });
    let twin: string;
    try {
      twin = (await new Accounts(store).create("Named Corp")).account.id;
    } finally {
      await store.close();
    }
    expectOneLineError(
      await inStore("keys", "list", "--account", "named corp"),
      new RegExp(`^portrait: AMBIGUOUS_ACCOUNT: 2 accounts are named named corp: give the id of one \\(.*${twin}`),
    );
    expect((await inStore("keys", "list", "--account", twin)).code).toBe(0);
  });

  it("keys print the API's fields, and revoke answers as DELETE /v1/keys/{id} does", async () => {
    const created = JSON.parse((await inStore("keys", "create", "--kind", "public", "--name", "web", "--json")).stdout);
    // POST /v1/keys: the key's view and the key, shown once.
    expect(Object.keys(created).sort()).toEqual(["createdAt", "id", "key", "kind", "name", "prefix", "revokedAt"]);
    expect(created).toMatchObject({ kind: "public", name: "web", revokedAt: null });
    expect(created.key.startsWith(created.prefix)).toBe(true);
    expect(new Date(created.createdAt).toISOString()).toBe(created.createdAt);

    const revoked = await inStore("keys", "revoke", created.id, "--json");
    expect(revoked).toEqual({ code: 0, stdout: `${JSON.stringify({ revoked: true }, null, 2)}\n`, stderr: "" });
    // Again: still revoked, still success (the API answers 200 {"revoked": true} too).
    const again = await inStore("keys", "revoke", created.id);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`^revoked ${created.id} \\(already revoked at \\d{4}-`));
    expectOneLineError(
      await inStore("keys", "revoke", "key_nope"),
      /^portrait: UNKNOWN_KEY: key key_nope does not exist\n/,
    );

    const list = JSON.parse((await inStore("keys", "list", "--json")).stdout) as Array<Record<string, unknown>>;
    const listed = list.find((k) => k.id === created.id);
    expect(Object.keys(listed ?? {}).sort()).toEqual(["createdAt", "id", "kind", "name", "prefix", "revokedAt"]);
    expect(listed?.revokedAt).toEqual(expect.stringMatching(/^\d{4}-/));
    expect(list.every((k) => !("revoked" in k))).toBe(true);
  });

  it("sftp-keys add names a missing file, a directory or a private key, and never shows a file's contents", async () => {
    const missing = await inStore("sftp-keys", "add", "laptop", "./missing.pub");
    expectOneLineError(missing, /no file \.\/missing\.pub/);
    expectOneLineError(await inStore("sftp-keys", "add", "laptop", tempDir()), /portrait-cli-main-\w+ is a directory/);
    const keys = tempDir();
    const privateKey = path.join(keys, "id_ed25519");
    writeFileSync(
      privateKey,
      "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUSECRETSECRET\n-----END OPENSSH PRIVATE KEY-----\n",
    );
    const priv = await inStore("sftp-keys", "add", "laptop", privateKey);
    expectOneLineError(priv, /id_ed25519 is a private key; give its \.pub file/);
    expect(priv.stderr).not.toMatch(/BEGIN|b3Bl|SECRET/);
    const junk = path.join(keys, "notes.pub");
    writeFileSync(junk, "CONFIDENTIAL meeting notes\n");
    const notKey = await inStore("sftp-keys", "add", "laptop", junk);
    expectOneLineError(notKey, /notes\.pub does not hold an OpenSSH public key line/);
    expect(notKey.stderr).not.toContain("CONFIDENTIAL");
    // A private key given as the argument itself is not echoed either (the message of POST /v1/sftp/keys).
    const pasted = await run("sftp-keys", "add", "--data-dir", dir, "laptop", "--", readFileSync(privateKey, "utf8"));
    expectOneLineError(pasted, /publicKey is a private key/);
    expect(pasted.stderr).not.toMatch(/BEGIN|b3Bl|SECRET/);
  });

  it("export --profile prints the API's export document; --segment writes the API's CSV", async () => {
    const store = await openStore({ dataDir: dir, databaseUrl: null });
    let document: unknown;
    let csv = "";
    try {
      const account = (await store.getAccount("default"))!;
      const portrait = new Portrait(store);
      document = await portrait.exportProfile(account, profileId);
      for await (const chunk of await new Segments(portrait).export(account, segmentId)) csv += chunk;
    } finally {
      await store.close();
    }
    const exported = await inStore("export", "--profile", profileId);
    expect(exported.code, exported.stderr).toBe(0);
    expect(JSON.parse(exported.stdout)).toEqual({ ...(document as object), exportedAt: expect.any(String) });
    const segment = await inStore("export", "--segment", segmentId);
    expect(segment).toEqual({ code: 0, stdout: csv, stderr: "" });
    expect(csv).toMatch(/^id,type,/);
    expect(csv.trim().split("\n")).toHaveLength(2);
    expectOneLineError(await inStore("export", "--profile", "nope"), /^portrait: UNKNOWN_PROFILE: /);
    expectOneLineError(await inStore("export", "--segment", "nope"), /^portrait: UNKNOWN_SEGMENT: /);
    expectOneLineError(await inStore("export"), /give --profile ID or --segment ID/);
  });
});
