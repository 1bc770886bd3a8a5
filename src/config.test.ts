import { describe, expect, it } from "vitest";
import { configFromEnv, portNumber, storeLocation } from "./config.js";

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

  it("refuses a timeout no timer can hold (over 2^31 - 1 ms, which node would run after 1 ms), naming the variable", () => {
    const keys = {
      PORTRAIT_JSON_BODY_TIMEOUT_MS: "jsonBodyTimeoutMs",
      PORTRAIT_IMPORT_CLAIM_TIMEOUT_MS: "importClaimTimeoutMs",
      PORTRAIT_HTTP_HEADERS_TIMEOUT_MS: "httpHeadersTimeoutMs",
      PORTRAIT_SFTP_LOGIN_GRACE_MS: "sftpLoginGraceMs",
    } as const;
    for (const [name, key] of Object.entries(keys)) {
      expect(configFromEnv({ [name]: "2147483647" })[key]).toBe(2147483647);
      for (const bad of ["2147483648", "99999999999999"]) {
        expect(() => configFromEnv({ [name]: bad })).toThrow(
          `${name} must be at most 2147483647 (milliseconds, about 24.8 days), got ${bad}`,
        );
      }
      expect(() => configFromEnv({ [name]: "0" })).toThrow(`${name} must be a positive whole number, got 0`);
    }
  });

  it("takes pino's log levels only, naming the variable otherwise", () => {
    expect(configFromEnv({}).logLevel).toBe("info");
    expect(configFromEnv({ PORTRAIT_LOG_LEVEL: "debug" }).logLevel).toBe("debug");
    expect(() => configFromEnv({ PORTRAIT_LOG_LEVEL: "verbose" })).toThrow(
      /PORTRAIT_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got verbose/,
    );
  });

  it("refuses a port that is not a port number, naming the variable", () => {
    expect(() => configFromEnv({ PORTRAIT_PORT: "70000" })).toThrow(/PORTRAIT_PORT must be a port number/);
    expect(() => configFromEnv({ PORTRAIT_SFTP_PORT: "ssh" })).toThrow(/PORTRAIT_SFTP_PORT must be a port number/);
  });
});

describe("the store's location from flags and environment", () => {
  const pg = "postgres://portrait:hunter2@db:5432/portrait";

  it("lets an explicit flag win over the environment, and refuses both flags", () => {
    expect(storeLocation({ dataDir: "/srv/a" }, { PORTRAIT_DATABASE_URL: pg })).toEqual({
      dataDir: "/srv/a",
      databaseUrl: null,
      from: "--data-dir",
    });
    expect(storeLocation({ databaseUrl: pg }, { PORTRAIT_DATA_DIR: "/srv/b" })).toEqual({
      dataDir: "/srv/b",
      databaseUrl: pg,
      from: "--database-url",
    });
    expect(storeLocation({}, { PORTRAIT_DATA_DIR: "/srv/b", PORTRAIT_DATABASE_URL: pg })).toMatchObject({
      databaseUrl: pg,
      from: "PORTRAIT_DATABASE_URL",
    });
    expect(storeLocation({}, {})).toMatchObject({ databaseUrl: null, from: "default" });
    expect(() => storeLocation({ dataDir: "/a", databaseUrl: pg }, {})).toThrow(/not both/);
  });

  it("takes postgres:// and postgresql:// URLs only, naming the flag or variable and hiding the password", () => {
    expect(storeLocation({ databaseUrl: "postgresql://u@h/d" }, {}).databaseUrl).toBe("postgresql://u@h/d");
    expect(() => storeLocation({ databaseUrl: "mysql://root:hunter2@db/x" }, {})).toThrow(
      '--database-url must be a postgres:// or postgresql:// URL, got "mysql://root:***@db/x"',
    );
    expect(() => configFromEnv({ PORTRAIT_DATABASE_URL: "not a url" })).toThrow(
      'PORTRAIT_DATABASE_URL must be a postgres:// or postgresql:// URL, got "not a url"',
    );
  });

  it("reads a port as decimal digits only", () => {
    for (const bad of ["18490abc", "0x10", "1e3", " "]) {
      expect(() => configFromEnv({ PORTRAIT_PORT: bad })).toThrow(`PORTRAIT_PORT must be a port number, got ${bad}`);
    }
    expect(configFromEnv({ PORTRAIT_PORT: "" }).port).toBe(8080);
    expect(portNumber("0", "--port")).toBe(0);
  });
});
