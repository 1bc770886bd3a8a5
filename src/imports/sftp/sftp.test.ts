/**
 * The SFTP drop point with the real OpenSSH `sftp` client (SEMANTICS §11 SFTP): key login as the account, uploads
 * that trigger imports in manifest order, result files written back, and the refusals: a wrong key, a password, another
 * account's folder, path traversal, a manifest naming a missing file, a malformed manifest.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Accounts } from "../../pipeline/accounts.js";
import { SECRET, startTestServer, type TestServer } from "../../test-support/server.js";
import { PendingManifests } from "./pending-manifests.js";
import { hostKey, longname, SftpDropPoint, type SftpServerOptions } from "./server.js";

const hasSftp = (() => {
  try {
    execFileSync("sftp", ["-V"], { stdio: "ignore" });
    return true;
  } catch {
    // `sftp -V` exits non-zero on some builds but still exists; look for the binary instead.
    return ["/usr/bin/sftp", "/usr/local/bin/sftp"].some((p) => existsSync(p));
  }
})();
if (!hasSftp && process.env.CI === "true")
  throw new Error("the OpenSSH sftp client is missing (apt-get install openssh-client)");

let s: TestServer;
let work: string;
let port: number;
let other: { id: string; secretKey: string };

function keyPair(name: string): string {
  const file = path.join(work, name);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", file]);
  return file;
}

interface SftpRun {
  code: number;
  stdout: string;
  stderr: string;
}

function sftpArgs(user: string, key: string, commands: string[], extra: string[], to = port): string[] {
  const batch = path.join(work, `batch-${Math.random().toString(36).slice(2)}`);
  writeFileSync(batch, `${commands.join("\n")}\n`);
  return [
    "-b",
    batch,
    "-i",
    key,
    "-P",
    String(to),
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "ConnectTimeout=10",
    ...extra,
    `${user}@127.0.0.1`,
  ];
}

/** Runs `sftp -b` with the given commands (a leading `-` lets a command fail without ending the batch). */
async function sftp(user: string, key: string, commands: string[], extra: string[] = [], to = port): Promise<SftpRun> {
  const args = sftpArgs(user, key, commands, extra, to);
  try {
    const r = await promisify(execFile)("sftp", args, { encoding: "utf8", timeout: 30_000, cwd: work });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: typeof err.code === "number" ? err.code : 255, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
  }
}

/** Starts `sftp -b` in the background (its own process group, so that it and its ssh can be killed together). */
function sftpInBackground(user: string, key: string, commands: string[], extra: string[] = [], to = port) {
  const child: ChildProcess = spawn("sftp", sftpArgs(user, key, commands, extra, to), {
    cwd: work,
    stdio: "ignore",
    detached: true,
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { exited, kill: () => process.kill(-(child.pid as number), "SIGKILL") };
}

/**
 * A TCP relay to the drop point that can go silent: `freeze()` stops forwarding either way and keeps both sockets
 * open, as a network does that vanishes under a connection (no FIN, no reset).
 */
async function freezingRelay(target: number) {
  const sockets: Socket[] = [];
  const relay = createServer((client) => {
    const upstream = connect(target, "127.0.0.1");
    for (const socket of [client, upstream]) {
      socket.on("error", () => undefined);
      sockets.push(socket);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  return {
    port: (relay.address() as AddressInfo).port,
    freeze() {
      for (const socket of sockets) {
        socket.unpipe();
        socket.pause();
      }
    },
    close() {
      for (const socket of sockets) socket.destroy();
      relay.close();
    },
  };
}

/** Waits until a file exists and holds more than `bytes` bytes. */
async function waitForSize(file: string, bytes: number, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const size = existsSync(file) ? statSync(file).size : 0;
    if (size > bytes) return size;
    if (Date.now() > deadline) throw new Error(`${file} did not grow past ${bytes} bytes`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function folder(accountId: string): string {
  return path.join(s.dir, "sftp", accountId);
}

/** Another drop point on the test server's store and data directory (its timing options its own), not started. */
function dropPointBeside(timing: Pick<SftpServerOptions, "keepaliveMs" | "loginGraceMs"> = {}): SftpDropPoint {
  return new SftpDropPoint({
    store: s.server.store,
    imports: s.server.imports.service,
    dataDir: s.dir,
    port: 0,
    host: "127.0.0.1",
    ...timing,
  });
}

/** Waits for a result file, whole: the runner writes it in place, so it may be seen half written. */
async function waitForFile(file: string, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(file) ? readFileSync(file, "utf8") : "";
    if (text.endsWith("}\n")) return text;
    if (Date.now() > deadline) throw new Error(`no ${file} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.skipIf(!hasSftp)("SFTP drop point (OpenSSH sftp client)", () => {
  let key: string;
  let otherKey: string;
  let strangerKey: string;

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), "portrait-sftp-"));
    s = await startTestServer({ PORTRAIT_SFTP_PORT: "0" });
    port = s.server.imports.sftp?.port ?? 0;
    key = keyPair("mine");
    otherKey = keyPair("other");
    strangerKey = keyPair("stranger");
    const added = await s.api("POST", "/v1/sftp/keys", {
      name: "laptop",
      publicKey: readFileSync(`${key}.pub`, "utf8"),
    });
    expect(added).toMatchObject({
      status: 201,
      body: { name: "laptop", fingerprint: expect.stringMatching(/^SHA256:/) },
    });
    const created = await new Accounts(s.server.store).create("other");
    other = { id: created.account.id, secretKey: created.secretKey };
    const res = await fetch(`${s.url}/v1/sftp/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${other.secretKey}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "theirs", publicKey: readFileSync(`${otherKey}.pub`, "utf8") }),
    });
    expect(res.status).toBe(201);
  });
  afterAll(async () => {
    await s.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("manages keys through the API: list, refuse junk and duplicates, delete", async () => {
    const list = await s.api("GET", "/v1/sftp/keys");
    expect(list.body.keys).toHaveLength(1);
    expect(list.body.keys[0]).toMatchObject({ name: "laptop", algorithm: "ssh-ed25519" });
    for (const publicKey of ["not a key", "ssh-ed25519 AAAA", readFileSync(key, "utf8"), 42]) {
      expect(await s.api("POST", "/v1/sftp/keys", { name: "x", publicKey })).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_VALUE", field: "publicKey" } },
      });
    }
    expect(
      await s.api("POST", "/v1/sftp/keys", { name: "again", publicKey: readFileSync(`${key}.pub`, "utf8") }),
    ).toMatchObject({ status: 400 });
    const temp = await s.api("POST", "/v1/sftp/keys", {
      name: "temp",
      publicKey: readFileSync(`${strangerKey}.pub`, "utf8"),
    });
    expect((await s.api("DELETE", `/v1/sftp/keys/${temp.body.id}`)).status).toBe(200);
    expect(await s.api("DELETE", `/v1/sftp/keys/${temp.body.id}`)).toMatchObject({ status: 404 });
  });

  it("imports a data file once its manifest is uploaded, in manifest order, and writes the results back", async () => {
    writeFileSync(path.join(work, "first.csv"), "Email,Plan,Points<number>\nsftp1@x.io,free,1\nnot-an-email,free,2\n");
    writeFileSync(path.join(work, "second.csv"), "mail,plan,points\nsftp1@x.io,pro,5\n");
    writeFileSync(path.join(work, "first.csv.manifest"), JSON.stringify({ fileName: "first.csv", kind: "profiles" }));
    writeFileSync(
      path.join(work, "second.manifest.json"),
      JSON.stringify({
        fileName: "second.csv",
        kind: "profiles",
        columns: { mail: "Email", plan: "Plan", points: { name: "Points", type: "number" } },
      }),
    );
    const r = await sftp("default", key, [
      "put first.csv",
      "put second.csv",
      "put first.csv.manifest",
      "put second.manifest.json",
    ]);
    expect(r.code).toBe(0);
    const first = JSON.parse(await waitForFile(path.join(folder("default"), "first.csv.result.json")));
    expect(first).toMatchObject({
      status: "done",
      rows: 2,
      processed: 1,
      failed: 1,
      failuresFile: "first.csv.failures.csv",
    });
    const second = JSON.parse(await waitForFile(path.join(folder("default"), "second.csv.result.json")));
    expect(second).toMatchObject({ status: "done", processed: 1, failed: 0 });
    // The second manifest finished uploading last, so its import ran last: its Plan wins.
    const found = await s.api("GET", "/v1/profiles?email=sftp1%40x.io");
    expect(found.body.profiles[0].properties).toMatchObject({ Plan: "pro", Points: 5 });
    // The results can be fetched back over SFTP.
    const back = await sftp("default", key, ["get first.csv.failures.csv fetched.csv", "ls"]);
    expect(back.code).toBe(0);
    expect(readFileSync(path.join(work, "fetched.csv"), "utf8")).toMatch(
      /^Email,Plan,Points<number>,Failure Description\r\nnot-an-email/,
    );
  });

  it("answers a manifest naming a missing file with MISSING_FILE, and a malformed one with the reason", async () => {
    writeFileSync(path.join(work, "ghost.manifest"), JSON.stringify({ fileName: "ghost.csv", kind: "profiles" }));
    writeFileSync(path.join(work, "broken.manifest"), "{not json");
    writeFileSync(path.join(work, "kindless.manifest"), JSON.stringify({ fileName: "kindless.csv", kind: "widgets" }));
    writeFileSync(
      path.join(work, "escape.manifest"),
      JSON.stringify({ fileName: "../../etc/passwd", kind: "profiles" }),
    );
    writeFileSync(path.join(work, "quotes.csv"), 'Email,Name\nq@x.io,Fine\nr@x.io,"never closed\n');
    writeFileSync(path.join(work, "quotes.csv.manifest"), JSON.stringify({ fileName: "quotes.csv", kind: "profiles" }));
    const r = await sftp("default", key, [
      "put ghost.manifest",
      "put broken.manifest",
      "put kindless.manifest",
      "put escape.manifest",
      "put quotes.csv",
      "put quotes.csv.manifest",
    ]);
    expect(r.code).toBe(0);
    const ghost = JSON.parse(await waitForFile(path.join(folder("default"), "ghost.manifest.result.json")));
    expect(ghost).toMatchObject({ status: "failed", fileName: "ghost.csv", error: { code: "MISSING_FILE" } });
    const broken = JSON.parse(await waitForFile(path.join(folder("default"), "broken.manifest.result.json")));
    expect(broken).toMatchObject({
      status: "failed",
      error: { code: "INVALID_MANIFEST", message: expect.stringMatching(/JSON/) },
    });
    const kindless = JSON.parse(await waitForFile(path.join(folder("default"), "kindless.manifest.result.json")));
    expect(kindless).toMatchObject({
      status: "failed",
      error: { code: "INVALID_MANIFEST", message: expect.stringMatching(/kind/) },
    });
    const quotes = JSON.parse(await waitForFile(path.join(folder("default"), "quotes.csv.result.json")));
    expect(quotes).toMatchObject({
      status: "failed",
      rows: 1,
      processed: 1,
      error: { code: "IMPORT_FAILED", message: expect.stringMatching(/CSV could not be read/) },
    });
    const escaped = JSON.parse(await waitForFile(path.join(folder("default"), "escape.manifest.result.json")));
    expect(escaped).toMatchObject({
      status: "failed",
      error: { code: "INVALID_MANIFEST", message: expect.stringMatching(/inside your folder/) },
    });

    // A refused manifest naming a file that has an import's result leaves that result alone.
    writeFileSync(path.join(work, "again.manifest"), JSON.stringify({ fileName: "quotes.csv", kind: "widgets" }));
    expect((await sftp("default", key, ["put again.manifest"])).code).toBe(0);
    const again = JSON.parse(await waitForFile(path.join(folder("default"), "again.manifest.result.json")));
    expect(again).toMatchObject({ status: "failed", fileName: "quotes.csv", error: { code: "INVALID_MANIFEST" } });
    const kept = JSON.parse(readFileSync(path.join(folder("default"), "quotes.csv.result.json"), "utf8"));
    expect(kept).toEqual(quotes);
  });

  it("reads a manifest with a byte order mark, and refuses paths, folders, unknown formats and misspelt columns", async () => {
    writeFileSync(path.join(work, "bom.csv"), "mail,name\nbom@x.io,Bom\n");
    const bom = { fileName: "bom.csv", kind: "profiles", columns: { mail: "Email", name: "Name" } };
    writeFileSync(path.join(work, "bom.csv.manifest"), `\uFEFF${JSON.stringify(bom)}`);
    const typo = { fileName: "bom.csv", kind: "profiles", columns: { mial: "Email" } };
    writeFileSync(path.join(work, "typo.manifest"), JSON.stringify(typo));
    // Data files whose BOM tells their encoding: UTF-16BE with a mapping (its header is read to check the columns),
    // and NDJSON with a UTF-8 BOM.
    const be = Buffer.from("mail,name\nbe@x.io,B\u00e9\n", "utf16le").swap16();
    writeFileSync(path.join(work, "be.csv"), Buffer.concat([Buffer.from([0xfe, 0xff]), be]));
    const beManifest = { fileName: "be.csv", kind: "profiles", columns: { mail: "Email", name: "Name" } };
    writeFileSync(path.join(work, "be.csv.manifest"), JSON.stringify(beManifest));
    const ndLine = JSON.stringify({ identity: { Email: "bomnd@x.io" }, properties: { Name: "Nd" } });
    writeFileSync(path.join(work, "bom.ndjson"), `\uFEFF${ndLine}\n`);
    writeFileSync(path.join(work, "bom.ndjson.manifest"), JSON.stringify({ fileName: "bom.ndjson", kind: "profiles" }));
    // A refusal in a mapped column names the column as the file has it (the report's header), not the mapping's name.
    writeFileSync(path.join(work, "named.csv"), "mail,points\nnamed@x.io,many\n");
    const named = {
      fileName: "named.csv",
      kind: "profiles",
      columns: { mail: "Email", points: { name: "Pts", type: "number" } },
    };
    writeFileSync(path.join(work, "named.csv.manifest"), JSON.stringify(named));
    writeFileSync(path.join(work, "pts.csv"), "Email,points\npts@x.io,12\n");
    const colums = { fileName: "pts.csv", kind: "profiles", colums: { points: { name: "Points", type: "number" } } };
    writeFileSync(path.join(work, "colums.manifest"), JSON.stringify(colums));
    writeFileSync(path.join(work, "abs.manifest"), JSON.stringify({ fileName: "/etc/passwd", kind: "profiles" }));
    writeFileSync(path.join(work, "dir.manifest"), JSON.stringify({ fileName: "box", kind: "profiles" }));
    writeFileSync(path.join(work, "d3.txt"), "Email\nd3@x.io\n");
    writeFileSync(path.join(work, "txt.manifest"), JSON.stringify({ fileName: "d3.txt", kind: "profiles" }));
    const r = await sftp("default", key, [
      "put bom.csv",
      "put bom.csv.manifest",
      "put typo.manifest",
      "put be.csv",
      "put be.csv.manifest",
      "put bom.ndjson",
      "put bom.ndjson.manifest",
      "put named.csv",
      "put named.csv.manifest",
      "put pts.csv",
      "put colums.manifest",
      "put abs.manifest",
      "mkdir box",
      "put dir.manifest",
      "put d3.txt",
      "put txt.manifest",
    ]);
    expect(r.code).toBe(0);
    const result = async (name: string) => JSON.parse(await waitForFile(path.join(folder("default"), name)));
    expect(await result("bom.csv.result.json")).toMatchObject({ status: "done", processed: 1 });
    expect((await s.api("GET", "/v1/profiles?email=bom%40x.io")).body.profiles[0].properties.Name).toBe("Bom");
    expect(await result("be.csv.result.json")).toMatchObject({ status: "done", processed: 1, failed: 0 });
    expect((await s.api("GET", "/v1/profiles?email=be%40x.io")).body.profiles[0].properties.Name).toBe("B\u00e9");
    expect(await result("bom.ndjson.result.json")).toMatchObject({ status: "done", processed: 1, failed: 0 });
    const namedResult = await result("named.csv.result.json");
    expect(namedResult).toMatchObject({ status: "done", processed: 0, failed: 1 });
    const report = await fetch(`${s.url}/v1/imports/${namedResult.id}/failures.csv`, {
      headers: { authorization: `Bearer ${SECRET}` },
    });
    expect(await report.text()).toBe(
      'mail,points,Failure Description\r\nnamed@x.io,many,"INVALID_VALUE (properties.Pts): column ""points"" must be a number, got ""many"""\r\n',
    );
    const refusals: Array<[string, RegExp]> = [
      ["typo.manifest", /columns\.mial: bom\.csv has no column "mial"/],
      ["colums.manifest", /^unknown key "colums" \(fileName, kind, format, columns, mapping\)$/],
      ["abs.manifest", /without a path: got "\/etc\/passwd"/],
      ["dir.manifest", /^box is a folder, not a file$/],
      ["txt.manifest", /cannot tell the format of d3\.txt .*give "format"/],
    ];
    for (const [manifest, message] of refusals) {
      expect(await result(`${manifest}.result.json`)).toMatchObject({
        status: "failed",
        error: { code: "INVALID_MANIFEST", message: expect.stringMatching(message) },
      });
    }
    // Nothing of the file was imported: its `points` did not become a string key for good.
    expect(existsSync(path.join(folder("default"), "pts.csv.result.json"))).toBe(false);
    expect((await s.api("GET", "/v1/profiles?email=pts%40x.io")).body.profiles).toEqual([]);
    expect(existsSync(path.join(folder("default"), "passwd.result.json"))).toBe(false);
    expect(existsSync(path.join(folder("default"), "d3.txt.result.json"))).toBe(false);
  });

  it("writes a refused manifest's result under the manifest's name, where no import's result replaces it", async () => {
    const rows = Array.from({ length: 20_000 }, (_, i) => `each${i}@x.io,Each ${i}\n`).join("");
    writeFileSync(path.join(work, "E.csv"), `Email,Name\n${rows}`);
    writeFileSync(path.join(work, "E1.manifest"), JSON.stringify({ fileName: "E.csv", kind: "profiles" }));
    writeFileSync(path.join(work, "E2.manifest"), JSON.stringify({ fileName: "E.csv", kind: "nope" }));
    expect((await sftp("default", key, ["put E.csv", "put E1.manifest", "put E2.manifest"])).code).toBe(0);
    const refused = JSON.parse(await waitForFile(path.join(folder("default"), "E2.manifest.result.json")));
    expect(refused).toMatchObject({ status: "failed", manifest: "E2.manifest", error: { code: "INVALID_MANIFEST" } });
    const done = JSON.parse(await waitForFile(path.join(folder("default"), "E.csv.result.json")));
    expect(done).toMatchObject({ status: "done", rows: 20_000 });
    expect(JSON.parse(readFileSync(path.join(folder("default"), "E2.manifest.result.json"), "utf8"))).toEqual(refused);
  });

  it("waits for a data file still being uploaded, by another session, and imports all of it", async () => {
    const rows = Array.from({ length: 10_000 }, (_, i) => `race${i}@x.io,Racer ${i}\n`).join("");
    const content = `Email,Name\n${rows}`;
    writeFileSync(path.join(work, "race.csv"), content);
    writeFileSync(path.join(work, "race.csv.manifest"), JSON.stringify({ fileName: "race.csv", kind: "profiles" }));
    // About 100 KB/s: the upload takes seconds, and the manifest arrives in the middle of it.
    const upload = sftpInBackground("default", key, ["put race.csv"], ["-l", "800"]);
    const remote = path.join(folder("default"), "race.csv");
    await waitForSize(remote, 20_000);
    expect((await sftp("default", key, ["put race.csv.manifest"])).code).toBe(0);
    expect(statSync(remote).size).toBeLessThan(content.length);
    expect(await upload.exited).toBe(0);
    const result = JSON.parse(await waitForFile(path.join(folder("default"), "race.csv.result.json")));
    expect(result).toMatchObject({ status: "done", rows: 10_000, processed: 10_000, failed: 0, bytes: content.length });
  });

  it("refuses a manifest whose data file's upload was abandoned, until the file is uploaded whole", async () => {
    const rows = Array.from({ length: 10_000 }, (_, i) => `cut${i}@x.io,Cut ${i}\n`).join("");
    writeFileSync(path.join(work, "cut.csv"), `Email,Name\n${rows}`);
    writeFileSync(path.join(work, "cut.csv.manifest"), JSON.stringify({ fileName: "cut.csv", kind: "profiles" }));
    writeFileSync(path.join(work, "cut2.manifest"), JSON.stringify({ fileName: "cut.csv", kind: "profiles" }));
    const upload = sftpInBackground("default", key, ["put cut.csv"], ["-l", "800"]);
    const remote = path.join(folder("default"), "cut.csv");
    await waitForSize(remote, 20_000);
    // The manifest waits for the upload; the connection then drops with the file half written.
    expect((await sftp("default", key, ["put cut.csv.manifest"])).code).toBe(0);
    upload.kill();
    await upload.exited;
    const refused = JSON.parse(await waitForFile(path.join(folder("default"), "cut.csv.manifest.result.json")));
    expect(refused).toMatchObject({
      status: "failed",
      fileName: "cut.csv",
      error: { code: "INCOMPLETE_FILE", message: expect.stringMatching(/did not complete/) },
    });
    // A manifest sent later for the same partial file is refused too: the upload never completed.
    expect((await sftp("default", key, ["put cut2.manifest"])).code).toBe(0);
    const later = JSON.parse(await waitForFile(path.join(folder("default"), "cut2.manifest.result.json")));
    expect(later).toMatchObject({ status: "failed", error: { code: "INCOMPLETE_FILE" } });
    expect((await s.api("GET", "/v1/profiles?email=cut0%40x.io")).body.profiles).toHaveLength(0);
    // Uploaded whole, the same manifest imports it, and its earlier refusal is gone.
    expect((await sftp("default", key, ["put cut.csv", "put cut.csv.manifest"])).code).toBe(0);
    const done = JSON.parse(await waitForFile(path.join(folder("default"), "cut.csv.result.json")));
    expect(done).toMatchObject({ status: "done", rows: 10_000, processed: 10_000 });
    expect(existsSync(path.join(folder("default"), "cut.csv.manifest.result.json"))).toBe(false);
  });

  it("drops a connection that went silent mid-upload, so its manifest is answered INCOMPLETE_FILE, not held", async () => {
    // A drop point of its own on the same store, asking quiet connections every 200 ms instead of every 15 s.
    const quick = dropPointBeside({ keepaliveMs: 200 });
    const quickPort = await quick.start();
    const relay = await freezingRelay(quickPort);
    const rows = Array.from({ length: 10_000 }, (_, i) => `gone${i}@x.io,Gone ${i}\n`).join("");
    writeFileSync(path.join(work, "gone.csv"), `Email,Name\n${rows}`);
    writeFileSync(path.join(work, "gone.csv.manifest"), JSON.stringify({ fileName: "gone.csv", kind: "profiles" }));
    const upload = sftpInBackground("default", key, ["put gone.csv"], ["-l", "800"], relay.port);
    try {
      await waitForSize(path.join(folder("default"), "gone.csv"), 20_000);
      relay.freeze();
      expect((await sftp("default", key, ["put gone.csv.manifest"], [], quickPort)).code).toBe(0);
      const refused = JSON.parse(await waitForFile(path.join(folder("default"), "gone.csv.manifest.result.json")));
      expect(refused).toMatchObject({ status: "failed", fileName: "gone.csv", error: { code: "INCOMPLETE_FILE" } });
      expect((await s.api("GET", "/v1/profiles?email=gone0%40x.io")).body.profiles).toHaveLength(0);
    } finally {
      upload.kill();
      relay.close();
      await quick.stop();
    }
  });

  it("drops connections that do not log in within the login grace time, and keeps one that logged in", async () => {
    // A drop point of its own on the same store, with a login grace of 300 ms instead of 30 s.
    const quick = dropPointBeside({ loginGraceMs: 300 });
    const quickPort = await quick.start();
    const closed = (socket: Socket) => new Promise<void>((resolve) => socket.on("close", () => resolve()));
    try {
      // One sends nothing at all; one sends only its SSH banner (the audit's 1,000 of those stayed open).
      const silent = connect(quickPort, "127.0.0.1");
      const banner = connect(quickPort, "127.0.0.1");
      for (const socket of [silent, banner]) {
        socket.on("error", () => undefined);
        socket.resume(); // read, so that the server's close is seen
      }
      banner.write("SSH-2.0-OpenSSH_9.6\r\n");
      await Promise.all([closed(silent), closed(banner)]);
      // A session that logged in is not cut by the grace time: it outlives it several times over.
      const r = await sftp("default", key, ["!sleep 1.5", "ls"], [], quickPort);
      expect(r.code).toBe(0);
    } finally {
      await quick.stop();
    }
  });

  it("handles at start the manifests a killed process received and never handled, in their order", async () => {
    // As a process killed with two manifests queued leaves them: the data files whole, the manifests noted.
    const root = folder("default");
    writeFileSync(path.join(root, "left1.csv"), "Email,Name\nleft1@x.io,Left One\n");
    writeFileSync(path.join(root, "left1.csv.manifest"), JSON.stringify({ fileName: "left1.csv", kind: "profiles" }));
    writeFileSync(
      path.join(root, "left2.manifest"),
      JSON.stringify({ fileName: "nothing-here.csv", kind: "profiles" }),
    );
    const pending = new PendingManifests(path.join(s.dir, "sftp", ".manifests"));
    await pending.add("default", "left1.csv.manifest");
    await pending.add("default", "left2.manifest");
    const next = dropPointBeside();
    await next.start();
    try {
      const done = JSON.parse(await waitForFile(path.join(root, "left1.csv.result.json")));
      expect(done).toMatchObject({ status: "done", rows: 1, processed: 1 });
      const refused = JSON.parse(await waitForFile(path.join(root, "left2.manifest.result.json")));
      expect(refused).toMatchObject({ status: "failed", error: { code: "MISSING_FILE" } });
      expect((await s.api("GET", "/v1/profiles?email=left1%40x.io")).body.profiles).toHaveLength(1);
      expect(await pending.left()).toEqual([]);
    } finally {
      await next.stop();
    }
  });

  it("serves <file>.failures.csv from the store, so deleting a person redacts it (SEMANTICS §10)", async () => {
    await s.api("POST", "/v1/ingest", {
      records: [{ type: "profile", identity: { Email: "red@x.io" }, properties: { Name: "Red" } }],
    });
    writeFileSync(path.join(work, "red.csv"), "Email,Gender,Name\nred@x.io,X,Secret Person\nkeep@x.io,X,Kept Person\n");
    writeFileSync(path.join(work, "red.csv.manifest"), JSON.stringify({ fileName: "red.csv", kind: "profiles" }));
    expect((await sftp("default", key, ["put red.csv", "put red.csv.manifest"])).code).toBe(0);
    const result = JSON.parse(await waitForFile(path.join(folder("default"), "red.csv.result.json")));
    expect(result).toMatchObject({ status: "done", failed: 2, failuresFile: "red.csv.failures.csv" });
    const before = await sftp("default", key, ["get red.csv.failures.csv red-before.csv"]);
    expect(before.code).toBe(0);
    expect(readFileSync(path.join(work, "red-before.csv"), "utf8")).toContain("Secret Person");

    const p = (await s.api("GET", "/v1/profiles?email=red%40x.io")).body.profiles[0];
    expect((await s.api("DELETE", `/v1/profiles/${p.id}`)).status).toBe(200);
    const after = await sftp("default", key, ["get red.csv.failures.csv red-after.csv", "ls -l red.csv*"]);
    expect(after.code).toBe(0);
    const report = readFileSync(path.join(work, "red-after.csv"), "utf8");
    expect(report).not.toContain("Secret Person");
    expect(report).not.toContain("red@x.io");
    expect(report).toContain("Kept Person");
    expect(report).toMatch(/redacted/);
    // Listed at the size a client downloads.
    expect(after.stdout).toMatch(new RegExp(` ${Buffer.byteLength(report)} .* red\\.csv\\.failures\\.csv`));
    // And nothing Portrait wrote keeps the row (the data file is the client's own upload).
    const files = readdirSync(path.join(s.dir, "sftp"), { recursive: true, withFileTypes: true }).filter(
      (f) => f.isFile() && f.name !== "red.csv",
    );
    for (const f of files) expect(readFileSync(path.join(f.parentPath, f.name), "utf8")).not.toContain("Secret Person");

    // The report cannot be overwritten; removing it makes the result stop naming it.
    const write = await sftp("default", key, ["-put red.csv red.csv.failures.csv", "rm red.csv.failures.csv", "ls"]);
    expect(write.code).toBe(0);
    expect(write.stderr).toMatch(/Permission denied|failure report/);
    expect(write.stdout.split("sftp> ls").at(-1)).not.toMatch(/red\.csv\.failures\.csv/);
    const kept = JSON.parse(readFileSync(path.join(folder("default"), "red.csv.result.json"), "utf8"));
    expect(kept).toMatchObject({ status: "done", failed: 2 });
    expect(kept.failuresFile).toBeUndefined();
  });

  it("lists a folder of thousands of files, a few hundred names per answer (OpenSSH's packet limit)", async () => {
    const many = path.join(folder("default"), "many");
    mkdirSync(many, { recursive: true });
    const names = Array.from({ length: 3000 }, (_, i) => `m${String(i).padStart(4, "0")}-${"x".repeat(40)}.csv`);
    for (const name of names) writeFileSync(path.join(many, name), "Email\n");
    // `ls -l` sends the long names too: 3,000 of them were about 360 KB in one answer, over the client's 256 KB.
    const r = await sftp("default", key, ["ls -1 many", "ls -l many"]);
    expect(r.stderr).not.toMatch(/too long/);
    expect(r.code).toBe(0);
    const [short, long] = r.stdout.split(/^sftp> ls -l many$/m) as [string, string];
    expect(
      short
        .split("\n")
        .filter((l) => l.startsWith("many/m"))
        .map((l) => path.posix.basename(l.trim())),
    ).toEqual(names);
    expect(long.split("\n").filter((l) => /[ /]m\d{4}-x+\.csv$/.test(l))).toHaveLength(3000);
  });

  it("refuses a file over PORTRAIT_IMPORT_MAX_BYTES: its upload past the limit, and its manifest with a result", async () => {
    const small = await startTestServer({ PORTRAIT_SFTP_PORT: "0", PORTRAIT_IMPORT_MAX_BYTES: "1000" });
    try {
      const smallPort = small.server.imports.sftp?.port ?? 0;
      expect(
        (await small.api("POST", "/v1/sftp/keys", { name: "k", publicKey: readFileSync(`${key}.pub`, "utf8") })).status,
      ).toBe(201);
      const root = path.join(small.dir, "sftp", "default");
      writeFileSync(path.join(work, "big.csv"), `Email,Note\n${"big@x.io,aaaaaaaaaaaaaaaaaaaa\n".repeat(150)}`);
      writeFileSync(path.join(work, "big.csv.manifest"), JSON.stringify({ fileName: "big.csv", kind: "profiles" }));
      const put = await sftp("default", key, ["-put big.csv", "put big.csv.manifest"], [], smallPort);
      expect(put.stderr).toMatch(/at most 1000 bytes|Failure/);
      // Taken up to the limit and one byte more, so that no manifest imports the part received.
      expect(statSync(path.join(root, "big.csv")).size).toBe(1001);
      const refused = JSON.parse(await waitForFile(path.join(root, "big.csv.manifest.result.json")));
      expect(refused).toEqual({
        status: "failed",
        manifest: "big.csv.manifest",
        fileName: "big.csv",
        error: {
          code: "PAYLOAD_TOO_LARGE",
          message: "big.csv is over the limit: an import file is at most 1000 bytes (PORTRAIT_IMPORT_MAX_BYTES)",
        },
      });
      // A file that came another way (put there before the limit was lowered): its size is named.
      writeFileSync(path.join(root, "direct.csv"), `Email\n${"d@x.io\n".repeat(500)}`);
      writeFileSync(path.join(work, "direct.manifest"), JSON.stringify({ fileName: "direct.csv", kind: "profiles" }));
      expect((await sftp("default", key, ["put direct.manifest"], [], smallPort)).code).toBe(0);
      const direct = JSON.parse(await waitForFile(path.join(root, "direct.manifest.result.json")));
      expect(direct.error).toEqual({
        code: "PAYLOAD_TOO_LARGE",
        message: "direct.csv is 3506 bytes: an import file is at most 1000 bytes (PORTRAIT_IMPORT_MAX_BYTES)",
      });
      // Handled for good: not noted for the next start, and no import was created.
      expect(await new PendingManifests(path.join(small.dir, "sftp", ".manifests")).left()).toEqual([]);
      expect((await small.api("GET", "/v1/imports")).body.imports).toEqual([]);
    } finally {
      await small.close();
    }
  });

  it("keeps its host key in the store across restarts", async () => {
    const stored = await s.server.store.getMeta("sftp.hostKey");
    expect(stored).toMatch(/OPENSSH PRIVATE KEY/);
    expect(await hostKey(s.server.store)).toBe(stored);
  });

  it("refuses a key the account did not register, another account's key, and passwords", async () => {
    const stranger = await sftp("default", strangerKey, ["ls"], ["-o", "BatchMode=yes"]);
    expect(stranger.code).not.toBe(0);
    expect(stranger.stderr).toMatch(/Permission denied/);
    const wrongAccount = await sftp("default", otherKey, ["ls"], ["-o", "BatchMode=yes"]);
    expect(wrongAccount.code).not.toBe(0);
    const unknownUser = await sftp("nobody", key, ["ls"], ["-o", "BatchMode=yes"]);
    expect(unknownUser.code).not.toBe(0);
    const password = await sftp(
      "default",
      strangerKey,
      ["ls"],
      [
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "NumberOfPasswordPrompts=1",
        "-o",
        "BatchMode=yes",
      ],
    );
    expect(password.code).not.toBe(0);
    expect(password.stderr).toMatch(/Permission denied \(publickey\)/);
  });

  it("keeps each account in its own folder: no traversal, no other account's files", async () => {
    writeFileSync(path.join(folder(other.id), "..", "secret.txt"), "operator data");
    const theirs = await sftp(other.id, otherKey, ["put first.csv theirs.csv", "ls"]);
    expect(theirs.code).toBe(0);
    expect(existsSync(path.join(folder(other.id), "theirs.csv"))).toBe(true);
    const attempts = await sftp("default", key, [
      "-get ../secret.txt stolen1.txt",
      `-get ../${other.id}/theirs.csv stolen2.txt`,
      `-get /../${other.id}/theirs.csv stolen3.txt`,
      `-cd ../${other.id}`,
      "-put first.csv ../planted.csv",
      `-ls /${other.id}`,
      "pwd",
      "ls",
    ]);
    expect(attempts.code).toBe(0);
    for (const f of ["stolen1.txt", "stolen2.txt", "stolen3.txt"]) expect(existsSync(path.join(work, f))).toBe(false);
    expect(existsSync(path.join(folder("default"), "..", "planted.csv"))).toBe(false);
    expect(attempts.stdout).toMatch(/Remote working directory: \//);
    expect(attempts.stdout.split("sftp> ls").at(-1)).not.toMatch(/theirs\.csv/);
    expect(attempts.stderr).toMatch(/Permission denied|outside your folder|No such file/);
  });
});

describe("directory listings", () => {
  it("show folders as folders one may enter and files as readable files", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "portrait-ls-"));
    try {
      writeFileSync(path.join(dir, "a.csv"), "Email\n");
      expect(longname("sub", statSync(dir))).toMatch(/^drwxr-xr-x .* sub$/);
      expect(longname("a.csv", statSync(path.join(dir, "a.csv")))).toMatch(/^-rw-r--r-- .* 6 .* a\.csv$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
