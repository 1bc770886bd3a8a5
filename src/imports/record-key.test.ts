import { describe, expect, it } from "vitest";
import { recordKey } from "./record-key.js";

describe("import record keys (SEMANTICS §11 Idempotency)", () => {
  const sha = "a".repeat(64);
  const base = { kind: "profiles", format: "csv" } as const;

  it("is the same for the same file read the same way, whatever the order of the mapping's keys", () => {
    expect(recordKey(sha, base)).toBe(recordKey(sha, { ...base, options: {} }));
    expect(recordKey(sha, { ...base, options: { mapping: { a: "A", b: "B<number>" } } })).toBe(
      recordKey(sha, { ...base, options: { mapping: { b: "B<number>", a: "A" } } }),
    );
    // Where results go is not what the bytes mean.
    expect(recordKey(sha, { ...base, options: { resultDir: "/x", resultName: "f.csv" } })).toBe(recordKey(sha, base));
  });

  it("differs when the kind, the format, the mapping (names or types) or the charset differ", () => {
    const keys = [
      recordKey(sha, base),
      recordKey("b".repeat(64), base),
      recordKey(sha, { ...base, kind: "events" }),
      recordKey(sha, { ...base, format: "ndjson" }),
      recordKey(sha, { ...base, options: { mapping: { nm: "Name" } } }),
      recordKey(sha, { ...base, options: { mapping: { nm: "Name<number>" } } }),
      recordKey(sha, { ...base, options: { charset: "windows-1252" } }),
    ];
    expect(new Set(keys).size).toBe(keys.length);
  });
});
