import type { FastifyError } from "fastify";
import { describe, expect, it } from "vitest";
import { tooLongIdError, toPortraitError } from "./errors.js";

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
});
