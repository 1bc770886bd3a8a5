import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { columnsMismatch } from "./header.js";
import { readManifest } from "./manifest.js";

const root = mkdtempSync(path.join(tmpdir(), "portrait-manifest-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function outcomeOf(manifest: unknown) {
  writeFileSync(path.join(root, "crm.csv"), "mail,points\na@x.io,3\n");
  writeFileSync(path.join(root, "crm.manifest"), typeof manifest === "string" ? manifest : JSON.stringify(manifest));
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

  it("reads a manifest that starts with a UTF-8 byte order mark (Windows editors)", async () => {
    const outcome = await outcomeOf(`\uFEFF${JSON.stringify({ fileName: "crm.csv", kind: "profiles" })}`);
    expect(outcome).toMatchObject({ ok: true, manifest: { fileName: "crm.csv", format: "csv" } });
  });

  it("refuses a fileName with folder parts instead of reading another folder or using the base name", async () => {
    mkdirSync(path.join(root, "a"), { recursive: true });
    writeFileSync(path.join(root, "a", "b.csv"), "Email\n");
    for (const fileName of ["/etc/passwd", "a/b.csv", "./crm.csv"]) {
      expect(await refusalOf({ fileName, kind: "profiles" })).toMatch(/in the manifest's folder, without a path/);
    }
    expect(await refusalOf({ fileName: "../../etc/passwd", kind: "profiles" })).toMatch(/inside your folder/);
  });

  it("says a folder is a folder, not a missing file", async () => {
    mkdirSync(path.join(root, "sub"), { recursive: true });
    expect(await refusalOf({ fileName: "sub", kind: "profiles" })).toBe("sub is a folder, not a file");
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

  it("refuses a misspelt key in a column's {name, type}, naming it", async () => {
    const message = await refusalOf({
      fileName: "crm.csv",
      kind: "profiles",
      columns: { points: { name: "Points", typ: "number" } },
    });
    expect(message).toBe('columns.points: unknown key "typ" (name, type)');
  });

  it("refuses an unknown top-level key, naming it and listing the allowed ones, instead of ignoring it", async () => {
    const colums = await outcomeOf({
      fileName: "crm.csv",
      kind: "profiles",
      colums: { points: { name: "Points", type: "number" } },
    });
    expect(colums).toEqual({
      ok: false,
      code: "INVALID_MANIFEST",
      message: 'unknown key "colums" (fileName, kind, format, columns, mapping)',
      fileName: "crm.csv",
    });
    expect(await refusalOf({ fileName: "crm.csv", kind: "profiles", extra: 1 })).toMatch(/^unknown key "extra"/);
    expect(await refusalOf({ fileName: "crm.csv", kinds: "profiles" })).toMatch(/^unknown key "kinds"/);
    expect(await refusalOf({ fileName: "crm.csv", kind: "profiles", columns: {}, mapping: {} })).toMatch(/not both/);
    // `mapping`, the older name of `columns`, still reads.
    expect(await outcomeOf({ fileName: "crm.csv", kind: "profiles", mapping: { mail: "Email" } })).toMatchObject({
      ok: true,
      manifest: { mapping: { mail: "Email" } },
    });
  });

  it("refuses a source column the file's header does not have, naming it (once the file is whole)", async () => {
    const outcome = await outcomeOf({
      fileName: "crm.csv",
      kind: "profiles",
      columns: { mail: "Email", nosuch: { name: "Points", type: "number" } },
    });
    if (!outcome.ok) throw new Error(outcome.message);
    expect(await columnsMismatch(outcome.manifest)).toBe(
      'columns.nosuch: crm.csv has no column "nosuch" (its columns: mail, points)',
    );
    const spaced = await outcomeOf({ fileName: "crm.csv", kind: "profiles", columns: { " mail ": "Email" } });
    if (!spaced.ok) throw new Error(spaced.message);
    expect(await columnsMismatch(spaced.manifest)).toMatch(/no column " mail "/);
    const ok = await outcomeOf({ fileName: "crm.csv", kind: "profiles", columns: { mail: "Email" } });
    expect(ok.ok && (await columnsMismatch(ok.manifest))).toBeNull();
  });

  it("keeps a source column named __proto__ as a column, so that it is refused when the file lacks it", async () => {
    // As a file holds it: JSON text, where "__proto__" is a key like any other.
    const proto = await outcomeOf('{"fileName": "crm.csv", "kind": "profiles", "columns": {"__proto__": "Email"}}');
    if (!proto.ok) throw new Error(proto.message);
    expect(Object.keys(proto.manifest.mapping ?? {})).toEqual(["__proto__"]);
    expect(await columnsMismatch(proto.manifest)).toBe(
      'columns.__proto__: crm.csv has no column "__proto__" (its columns: mail, points)',
    );
  });
});
