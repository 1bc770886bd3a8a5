/**
 * The ImportStore on both adapters (import-store.ts): claims (one worker per import, one import per account at a
 * time, stale claims free again), checkpoints that only the claim holder can move, idempotent failure rows, and
 * redaction inside the deleting transaction (SEMANTICS §10).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queuedImportRow } from "../test-support/imports.js";
import { type Harness, makeHarness } from "../test-support/portrait.js";
import { storesUnderTest } from "../test-support/postgres.js";
import type { ImportRow } from "./import-store.js";

const stores = await storesUnderTest();
let n = 0;

function importRow(accountId: string, createdAt: number): ImportRow {
  n++;
  return queuedImportRow(accountId, `${n.toString(16).padStart(8, "0")}${"0".repeat(24)}`, {
    filePath: `imports/${n}`,
    sha256: "a".repeat(64),
    bytes: 100,
    options: { mapping: { mail: "Email" } },
    createdAt,
  });
}

describe.each(stores)("%s import store", (kind) => {
  let h: Harness;
  beforeAll(async () => {
    h = await makeHarness({}, kind);
  });
  afterAll(async () => {
    await h.close();
  });

  it("lets one worker claim an import, runs one import per account at a time, and frees stale claims", async () => {
    const imports = h.store.imports;
    const a = importRow(h.account.id, 1000);
    const b = importRow(h.account.id, 2000);
    await imports.insertImport(a);
    await imports.insertImport(b);
    expect(await imports.getImport(h.account.id, a.id)).toMatchObject({
      status: "queued",
      options: { mapping: { mail: "Email" } },
    });
    expect(await imports.getImport("someone-else", a.id)).toBeNull();
    const unfinished = (await imports.listUnfinished()).filter((r) => r.accountId === h.account.id);
    expect(unfinished.map((r) => r.id)).toEqual([a.id, b.id]);

    const [one, two] = await Promise.all([
      imports.claimImport(h.account.id, a.id, "w1", 10_000, 5_000),
      imports.claimImport(h.account.id, a.id, "w2", 10_000, 5_000),
    ]);
    expect([one, two].filter((r) => r !== null)).toHaveLength(1);
    const holder = one ? "w1" : "w2";
    const other = one ? "w2" : "w1";
    expect(one ?? two).toMatchObject({ status: "running", claimedBy: holder, startedAt: 10_000 });
    // Another import of the same account waits while the first one's worker is alive.
    expect(await imports.claimImport(h.account.id, b.id, other, 11_000, 6_000)).toBeNull();
    // Only the holder moves the checkpoint.
    const progress = { rows: 10, processed: 9, failed: 1, bytesRead: 50, lastRow: 10 };
    expect(await imports.saveProgress(h.account.id, a.id, other, progress, [], 12_000)).toBe(false);
    expect(await imports.saveProgress(h.account.id, a.id, holder, progress, [], 12_000)).toBe(true);
    expect(await imports.heartbeat(h.account.id, a.id, holder, 13_000)).toBe(true);
    // Silent for longer than the timeout: the other worker takes it over and resumes at the checkpoint.
    const taken = await imports.claimImport(h.account.id, a.id, other, 30_000, 20_000);
    expect(taken).toMatchObject({ claimedBy: other, rows: 10, lastRow: 10, startedAt: 10_000 });
    expect(await imports.heartbeat(h.account.id, a.id, holder, 30_001)).toBe(false);
    await imports.finishImport(h.account.id, a.id, other, { status: "done", error: null }, 31_000);
    expect(await imports.getImport(h.account.id, a.id)).toMatchObject({
      status: "done",
      finishedAt: 31_000,
      claimedBy: null,
    });
    expect(await imports.claimImport(h.account.id, a.id, holder, 40_000, 35_000)).toBeNull();
    // Released on shutdown: claimable at once.
    expect(await imports.claimImport(h.account.id, b.id, "w3", 41_000, 36_000)).not.toBeNull();
    await imports.releaseImport(h.account.id, b.id, "w3");
    expect(await imports.claimImport(h.account.id, b.id, "w4", 41_001, 36_000)).toMatchObject({ claimedBy: "w4" });
  });

  it("lists an account's imports newest first, a page at a time, and no other account's", async () => {
    const other = (await h.accounts.create("list-other")).account;
    const mine = [3000, 1000, 2000, 2000].map((at) => importRow(h.account.id, 5_000_000 + at));
    for (const row of mine) await h.store.imports.insertImport(row);
    await h.store.imports.insertImport(importRow(other.id, 9_000_000));
    const newestFirst = [...mine].sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1));
    const all = await h.store.imports.listImports(h.account.id, { before: null, limit: 1000 });
    const ours = all.filter((r) => r.createdAt >= 5_000_000).map((r) => r.id);
    expect(ours).toEqual(newestFirst.map((r) => r.id));
    expect(all.every((r) => r.accountId === h.account.id)).toBe(true);
    const first = await h.store.imports.listImports(h.account.id, { before: null, limit: 2 });
    const last = first[1] as ImportRow;
    const next = await h.store.imports.listImports(h.account.id, {
      before: { createdAt: last.createdAt, id: last.id },
      limit: 2,
    });
    expect([...first, ...next].map((r) => r.id)).toEqual(newestFirst.map((r) => r.id));
  });

  it("keeps one failure row per row number, in order, and redacts them when their person is deleted", async () => {
    const imports = h.store.imports;
    const row = importRow(h.account.id, 5000);
    await imports.insertImport(row);
    // The first test's last import is still held by w4, but its heartbeat is older than 90 s: stale.
    expect(await imports.claimImport(h.account.id, row.id, "w", 100_000, 90_000)).not.toBeNull();
    await imports.setHeader(h.account.id, row.id, ["Email", "Age"]);
    const r = await h.ingest({ type: "profile", identity: { Email: "del@x.io" }, properties: {} });
    const profileId = r.results[0]?.profileId as string;
    const failures = [
      {
        row: 3,
        data: ["keep@x.io", "1"],
        description: "AGE_IS_DERIVED: no",
        handles: [{ kind: "Email", value: "keep@x.io" }],
      },
      {
        row: 1,
        data: ["del@x.io", "2"],
        description: "AGE_IS_DERIVED: no",
        handles: [{ kind: "Email", value: "del@x.io" }],
      },
      {
        row: 2,
        data: "nul \u0000 and \ud800 text",
        description: "INVALID_VALUE",
        handles: [{ kind: "profileId", value: profileId }],
      },
    ];
    const progress = { rows: 3, processed: 0, failed: 3, bytesRead: 10, lastRow: 3 };
    await imports.saveProgress(h.account.id, row.id, "w", progress, failures, 51_000);
    // A resumed run refuses the same rows again: still one line each.
    await imports.saveProgress(h.account.id, row.id, "w", progress, failures, 52_000);
    const listed = await imports.listFailures(h.account.id, row.id, 0, 10);
    expect(listed.map((f) => f.row)).toEqual([1, 2, 3]);
    expect(listed[0]?.data).toEqual(["del@x.io", "2"]);
    expect(await imports.listFailures(h.account.id, row.id, 1, 1)).toHaveLength(1);
    expect(await imports.listFailures("someone-else", row.id, 0, 10)).toEqual([]);

    expect((await h.store.imports.getImport(h.account.id, row.id))?.header).toEqual(["Email", "Age"]);
    await h.portrait.deleteProfile(h.account, profileId);
    const after = await imports.listFailures(h.account.id, row.id, 0, 10);
    expect(after.map((f) => f.data === null)).toEqual([true, true, false]);
    expect(after[0]?.description).toMatch(/redacted/);
    expect(after[2]?.data).toEqual(["keep@x.io", "1"]);
  });

  it("keeps SFTP keys per account, and finds profiles by email hash once refreshed", async () => {
    const imports = h.store.imports;
    const key = {
      accountId: h.account.id,
      id: "k1",
      name: "laptop",
      algorithm: "ssh-ed25519",
      publicKey: "AAAA",
      fingerprint: "SHA256:x",
      createdAt: 1,
    };
    await imports.insertSftpKey(key);
    expect(await imports.listSftpKeys(h.account.id)).toEqual([key]);
    expect(await imports.listSftpKeys("someone-else")).toEqual([]);
    expect(await imports.deleteSftpKey("someone-else", "k1")).toBe(false);
    expect(await imports.deleteSftpKey(h.account.id, "k1")).toBe(true);

    const r = await h.ingest({ type: "profile", identity: { Email: "hash@x.io" }, properties: {} });
    const { createHash } = await import("node:crypto");
    const hash = createHash("sha256").update("hash@x.io").digest("hex");
    expect(await imports.findProfileByEmailHash(h.account.id, hash)).toBeNull();
    await imports.refreshEmailHashes(h.account.id);
    expect(await imports.findProfileByEmailHash(h.account.id, hash)).toBe(r.results[0]?.profileId);
  });
});
