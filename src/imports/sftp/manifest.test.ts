import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readManifest } from "./manifest.js";

const root = mkdtempSync(path.join(tmpdir(), "portrait-manifest-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function outcomeOf(manifest: unknown) {
  writeFileSync(path.join(root, "crm.csv"), "mail,points\na@x.io,3\n");
  writeFileSync(path.join(root, "crm.manifest"), JSON.stringify(manifest));
  return readManifest(path.join(root, "crm.manifest"), "/", root);
}

async function refusalOf(manifest: unknown): Promise<string> {
  const outcome = await outcomeOf(manifest);
  expect(outcome).toMatchObject({ ok: false, code: "INVALID_MANIFEST" });
  return outcome.ok ? "" : outcome.message;
}

describe("readManifest", () => {
  it("takes a column mapping whose types the import knows", async () => {
    const outcome = await outcomeOf({
      fileName: "crm.csv",
      kind: "profiles",
      columns: { mail: "Email", points: { name: "Points", type: "number" }, joined: { type: "dd/MM/yyyy" } },
    });
    expect(outcome).toMatchObject({
      ok: true,
      manifest: { mapping: { mail: "Email", points: "Points<number>", joined: "joined<dd/MM/yyyy>" } },
    });
  });

  it("refuses a column type the import would not know as INVALID_MANIFEST, naming the column", async () => {
    const outcome = await outcomeOf({
      fileName: "crm.csv",
      kind: "profiles",
      columns: { points: { name: "Points", type: "weird type" } },
    });
    expect(outcome).toMatchObject({ ok: false, code: "INVALID_MANIFEST", fileName: "crm.csv" });
    expect(outcome.ok === false && outcome.message).toMatch(/^columns\.points: .*neither a type/);
  });

  it("takes the format from .csv, .ndjson and .jsonl, and asks for it for any other name", async () => {
    writeFileSync(path.join(root, "d3.txt"), "Email\na@x.io\n");
    writeFileSync(path.join(root, "e.jsonl"), "{}\n");
    expect(await refusalOf({ fileName: "d3.txt", kind: "profiles" })).toMatch(
      /cannot tell the format of d3\.txt from its name .*give "format": "csv" or "ndjson"/,
    );
    expect(await outcomeOf({ fileName: "d3.txt", kind: "profiles", format: "csv" })).toMatchObject({
      ok: true,
      manifest: { format: "csv" },
    });
    expect(await outcomeOf({ fileName: "e.jsonl", kind: "events" })).toMatchObject({
      ok: true,
      manifest: { format: "ndjson" },
    });
  });
});
