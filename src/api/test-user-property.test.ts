/**
 * `is_test_user` mirrors the test flag (SEMANTICS §9: marking sets it to "Yes", unmarking removes it), so only Portrait
 * writes it: every client path refuses it, naming the field (SDK audit F3: a page could set it to "No" on a test
 * profile, or delete it). Merges and undos, which carry it between states, and PUT /test still write it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { failuresCsv, runImport } from "../test-support/imports.js";
import { storesUnderTest } from "../test-support/postgres.js";
import { PUBLIC, startTestServer, type TestServer } from "../test-support/server.js";

let s: TestServer;

// PostgreSQL is left out (reason printed) when no server answers outside CI.
const stores = await storesUnderTest();

const ingest = (records: unknown[]) => s.api("POST", "/v1/ingest", { records });
const sdk = (records: unknown[]) => s.api("POST", `/v1/sdk/batch?key=${PUBLIC}`, { records });
const profile = async (id: string) => (await s.api("GET", `/v1/profiles/${id}`)).body;
const refusal = {
  code: "INVALID_KEY",
  field: "properties.is_test_user",
  error: expect.stringContaining("PUT /v1/profiles/{id}/test"),
};

describe.each(stores)("%s store", (store) => {
  beforeAll(async () => {
    s = await startTestServer({}, { store });
  });
  afterAll(async () => {
    await s.close();
  });

  it("refuses is_test_user from /v1/ingest, /v1/sdk/batch and PATCH, whatever the operation", async () => {
    const made = await sdk([{ type: "profile", deviceId: "tst-1", properties: { Name: "T" } }]);
    const id = made.body.results[0].profileId as string;
    expect((await s.api("PUT", `/v1/profiles/${id}/test`, { test: true })).status).toBe(200);

    for (const value of ["No", { $delete: true }, { $setOnce: "No" }]) {
      const page = await sdk([{ type: "profile", deviceId: "tst-1", properties: { is_test_user: value, Plan: "x" } }]);
      expect(page.body).toMatchObject({ status: "fail", unprocessed: [{ index: 0, ...refusal }] });
      const backend = await ingest([{ type: "profile", profileId: id, properties: { is_test_user: value } }]);
      expect(backend.body).toMatchObject({ status: "fail", unprocessed: [{ index: 0, ...refusal }] });
      const patch = await s.api("PATCH", `/v1/profiles/${id}`, { is_test_user: value });
      expect(patch).toMatchObject({
        status: 400,
        body: { error: { code: "INVALID_KEY", field: "is_test_user", message: expect.stringContaining("test flag") } },
      });
    }
    // A login too, and a fresh anonymous profile cannot claim it either.
    const login = await sdk([
      { type: "login", deviceId: "tst-2", properties: { Identity: "tst-2", is_test_user: "Yes" } },
    ]);
    expect(login.body.unprocessed).toEqual([expect.objectContaining({ index: 0, ...refusal })]);
    expect((await s.api("GET", "/v1/profiles?deviceId=tst-2")).body.profiles).toEqual([]);

    const after = await profile(id);
    expect(after).toMatchObject({ flags: { test: true }, properties: { Name: "T", is_test_user: "Yes" } });
    expect(after.properties.Plan).toBeUndefined();
    // Portrait's own writes are unaffected: unmarking removes it, marking sets it again.
    expect((await s.api("PUT", `/v1/profiles/${id}/test`, { test: false })).body.properties.is_test_user).toBe(
      undefined,
    );
    expect((await s.api("PUT", `/v1/profiles/${id}/test`, { test: true })).body.properties.is_test_user).toBe("Yes");
  });

  it("refuses an is_test_user column or key in CSV and NDJSON imports, row by row", async () => {
    const csv = await runImport(s, "profiles", "Identity,is_test_user,Name\nimp-1,Yes,A\nimp-2,,B\n");
    expect(csv).toMatchObject({ status: "done", processed: 1, failed: 1 });
    expect(await failuresCsv(s, csv.id)).toContain("INVALID_KEY (properties.is_test_user)");
    const ndjson = await runImport(
      s,
      "profiles",
      `${JSON.stringify({ type: "profile", identity: { Identity: "imp-3" }, properties: { is_test_user: { $delete: true } } })}\n`,
      "application/x-ndjson",
    );
    expect(ndjson).toMatchObject({ status: "done", processed: 0, failed: 1 });
    // The refused row made nobody; the row with an empty cell (no change) was applied without it.
    expect((await s.api("GET", "/v1/profiles?identity=imp-1")).body.profiles).toEqual([]);
    const [imported] = (await s.api("GET", "/v1/profiles?identity=imp-2")).body.profiles;
    expect(imported.properties).toEqual({ Identity: "imp-2", Name: "B" });
  });

  it("carries is_test_user through a merge and its undo", async () => {
    const made = await ingest([
      { type: "login", deviceId: "m-test", properties: { Identity: "m-test", Name: "Tester" } },
      { type: "login", deviceId: "m-real", properties: { Identity: "m-real", Name: "Real" } },
    ]);
    const [testerId, realId] = made.body.results.map((r: { profileId: string }) => r.profileId) as [string, string];
    await s.api("PUT", `/v1/profiles/${testerId}/test`, { test: true });
    const merge = await s.api("POST", "/v1/profiles/merge", { targetId: realId, sourceId: testerId });
    expect(merge.body.profile).toMatchObject({ flags: { test: true }, properties: { is_test_user: "Yes" } });
    const undo = await s.api("POST", `/v1/merges/${merge.body.mergeId}/undo`);
    expect(undo.status).toBe(200);
    expect(undo.body.source).toMatchObject({ id: testerId, flags: { test: true } });
    expect(undo.body.source.properties.is_test_user).toBe("Yes");
    expect(undo.body.target).toMatchObject({ id: realId, flags: { test: false } });
    expect(undo.body.target.properties.is_test_user).toBeUndefined();
  });
});
