import { describe, expect, it } from "vitest";
import { configFromEnv } from "./config.js";

describe("configuration from the environment", () => {
  it("reads PORTRAIT_SQLITE_CACHE_MB as a positive whole number, leaving the store's default when unset", () => {
    expect(configFromEnv({}).sqliteCacheMb).toBeUndefined();
    expect(configFromEnv({ PORTRAIT_SQLITE_CACHE_MB: "" }).sqliteCacheMb).toBeUndefined();
    expect(configFromEnv({ PORTRAIT_SQLITE_CACHE_MB: "64" }).sqliteCacheMb).toBe(64);
    for (const bad of ["0", "-8", "1.5", "lots", "1e400"]) {
      expect(() => configFromEnv({ PORTRAIT_SQLITE_CACHE_MB: bad })).toThrow(
        `PORTRAIT_SQLITE_CACHE_MB must be a positive whole number, got ${bad}`,
      );
    }
  });

  it("refuses a port that is not a port number, naming the variable", () => {
    expect(() => configFromEnv({ PORTRAIT_PORT: "70000" })).toThrow(/PORTRAIT_PORT must be a port number/);
    expect(() => configFromEnv({ PORTRAIT_SFTP_PORT: "ssh" })).toThrow(/PORTRAIT_SFTP_PORT must be a port number/);
  });
});
