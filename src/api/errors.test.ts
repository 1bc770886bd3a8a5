import type { FastifyError } from "fastify";
import { describe, expect, it } from "vitest";
import { storeUnavailable, tooLongIdError, toPortraitError } from "./errors.js";

describe("fastify's and node's errors as the contract's", () => {
  it("a client that went away mid-body is its own fault (INVALID_BODY), not an unhandled server error", () => {
    // What node's http server gives a body stream whose connection closed before its end (abortIncoming).
    const aborted = Object.assign(new Error("aborted"), { code: "ECONNRESET" }) as FastifyError;
    expect(toPortraitError(aborted)).toMatchObject({ code: "INVALID_BODY" });
    const reset = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" }) as FastifyError;
    expect(toPortraitError(reset)).toBeNull();
  });

  it("an over-long path segment is the unknown id of its resource, or an unknown route", () => {
    const long = "x".repeat(301);
    expect(tooLongIdError(`/v1/profiles/${long}/events?limit=5`, 300)).toMatchObject({
      code: "UNKNOWN_PROFILE",
      field: "id",
    });
    expect(tooLongIdError(`/v1/profiles/p/documents/${long}/u`, 300)).toMatchObject({
      code: "UNKNOWN_DOCUMENT",
      field: "compartmentId",
    });
    expect(tooLongIdError(`/v1/${long}`, 300)).toMatchObject({ code: "NOT_FOUND" });
  });

  it("a store that says 'not now' is UNAVAILABLE (503); a store that says 'not this' stays a fault (500)", () => {
    const error = (message: string, code?: string) => Object.assign(new Error(message), code ? { code } : {});
    for (const temporary of [
      error("database is locked", "SQLITE_BUSY"),
      error("database is locked", "SQLITE_BUSY_SNAPSHOT"),
      error("sorry, too many clients already", "53300"),
      error("the database system is starting up", "57P03"),
      error("terminating connection due to administrator command", "57P01"),
      error('database "portrait" does not exist', "3D000"),
      error("connect ECONNREFUSED 127.0.0.1:5432", "ECONNREFUSED"),
      error("Connection terminated unexpectedly"),
      error("timeout exceeded when trying to connect"),
      // A write transaction that lost every run to concurrent ones: rolled back each time, nothing applied.
      error("deadlock detected", "40P01"),
      error("could not serialize access due to concurrent update", "40001"),
    ]) {
      expect(storeUnavailable(temporary), temporary.message).toBe(true);
      expect(toPortraitError(temporary as FastifyError)).toMatchObject({ code: "UNAVAILABLE" });
    }
    for (const fault of [
      error("no such table: profiles", "SQLITE_ERROR"),
      error("attempt to write a readonly database", "SQLITE_READONLY"),
      error('duplicate key value violates unique constraint "x"', "23505"),
      error("read ECONNRESET", "ECONNRESET"),
      error("Cannot read properties of undefined"),
    ]) {
      expect(storeUnavailable(fault), fault.message).toBe(false);
    }
  });
});
