/** API.md Profiles (Find People by identity), flags, timeline, delete and export. */
import type { FastifyInstance } from "fastify";
import { PortraitError } from "../../engine/errors.js";
import { isPlainObject, parseDeviceId } from "../../engine/parse-record.js";
import { normaliseIdentityValue } from "../../engine/properties/values.js";
import type { IdentityKey } from "../../engine/types.js";
import { pageLimit } from "../../pipeline/list-page.js";
import type { FindQuery } from "../../pipeline/portrait.js";
import type { AppDeps } from "../app.js";
import { errorBody } from "../errors.js";
import { json, pageQuery, refusal, refusals } from "../openapi/responses.js";
import { ref } from "../openapi/schemas.js";
import { timelineJson } from "../timeline-json.js";

type IdParams = { Params: { id: string } };

const INGEST_CODES = [
  ...["INVALID_EMAIL", "INVALID_PHONE", "INVALID_GENDER", "INVALID_DATE", "AGE_IS_DERIVED", "INVALID_KEY"],
  ...["VALUE_TOO_LONG", "TOO_MANY_PROPERTIES", "TYPE_MISMATCH", "INVALID_OPERATION", "IDENTITY_CONFLICT", "…"],
];

/** A missing, malformed or other account's id, or one of a deleted person (API.md: never 403). */
const unknownProfile = refusals({ 404: ["UNKNOWN_PROFILE"] });
const findQueryString = {
  type: "object",
  description: "Exactly one handle (several: 400 MULTIPLE_HANDLES); compartmentId goes with userAccountId.",
  properties: {
    identity: { type: "string", description: "Identity value" },
    email: { type: "string" },
    phone: { type: "string", description: "E.164" },
    fbid: { type: "string" },
    gpid: { type: "string" },
    deviceId: { type: "string" },
    profileId: { type: "string", description: "A profile id (a merge tombstone's id finds its target)" },
    compartmentId: { type: "string" },
    userAccountId: { type: "string" },
  },
};
const PROFILE_ID = /^[0-9a-f]{32}$/;

export function profileId(id: string, field = "id"): string {
  if (!PROFILE_ID.test(id))
    throw new PortraitError("UNKNOWN_PROFILE", `profile ${id.slice(0, 64)} does not exist`, field);
  return id;
}

const FIND_PARAMS: Array<[string, IdentityKey]> = [
  ["identity", "Identity"],
  ["email", "Email"],
  ["phone", "Phone"],
  ["fbid", "FBID"],
  ["gpid", "GPID"],
];

/** The Find People parameters: one handle each, but a user account is the pair compartmentId + userAccountId. */
const SEARCH_PARAMS = new Set([
  ...FIND_PARAMS.map(([p]) => p),
  "deviceId",
  "profileId",
  "compartmentId",
  "userAccountId",
]);

function findQuery(query: Record<string, unknown>): FindQuery {
  const given = Object.keys(query).filter((k) => query[k] !== undefined);
  for (const param of given) {
    if (!SEARCH_PARAMS.has(param)) {
      throw new PortraitError(
        "INVALID_VALUE",
        `unknown search parameter ${param.slice(0, 64)}: name one of identity, email, phone, fbid, gpid, deviceId, profileId, compartmentId+userAccountId`,
        param.slice(0, 64),
      );
    }
    if (typeof query[param] !== "string")
      throw new PortraitError("INVALID_VALUE", `${param} must be given once`, param);
  }
  const pair = ["compartmentId", "userAccountId"].filter((p) => given.includes(p));
  if (pair.length === 1) {
    const missing = pair[0] === "compartmentId" ? "userAccountId" : "compartmentId";
    throw new PortraitError(
      "INVALID_VALUE",
      `${pair[0]} goes with ${missing}: a user account is named by both`,
      missing,
    );
  }
  const handles = given.filter((p) => p !== "compartmentId" && p !== "userAccountId");
  if (pair.length === 2) handles.push("compartmentId");
  if (handles.length === 0) {
    throw new PortraitError(
      "MISSING_HANDLE",
      "name one of identity, email, phone, fbid, gpid, deviceId, profileId, compartmentId+userAccountId",
    );
  }
  if (handles.length > 1) {
    const names = handles.map((h) => (h === "compartmentId" ? "compartmentId+userAccountId" : h));
    throw new PortraitError("MULTIPLE_HANDLES", `name one handle only, got ${names.join(", ")}`, handles[1]);
  }
  const q = query as Record<string, string>;
  for (const [param, key] of FIND_PARAMS) {
    if (q[param] !== undefined) return { kind: "identity", key, value: normaliseIdentityValue(key, q[param], param) };
  }
  if (q.deviceId !== undefined) return { kind: "device", deviceId: parseDeviceId(q.deviceId, "deviceId") };
  if (q.profileId !== undefined) {
    // A malformed id finds nobody, like a malformed identity value (the route answers an empty list).
    if (!PROFILE_ID.test(q.profileId)) throw new PortraitError("INVALID_IDENTITY", "not a profile id", "profileId");
    return { kind: "profile", profileId: q.profileId };
  }
  return { kind: "userAccount", ref: { compartmentId: q.compartmentId!, userAccountId: q.userAccountId! } };
}

function booleanField(body: unknown, field: string): boolean {
  if (!isPlainObject(body) || typeof body[field] !== "boolean") {
    throw new PortraitError("INVALID_VALUE", `the body must be {"${field}": true|false}`, field);
  }
  return body[field] as boolean;
}

export function profileRoutes({ portrait }: AppDeps) {
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: Record<string, unknown> }>(
      "/v1/profiles",
      {
        schema: {
          operationId: "findProfiles",
          tags: ["profiles"],
          summary: "Find People by Identity, Email, Phone, FBID, GPID, device or user account",
          querystring: findQueryString,
          response: {
            200: json("The matching profiles (an empty list when none, or when the value is malformed)", "ProfileList"),
            ...refusals({ 400: ["MISSING_HANDLE", "MULTIPLE_HANDLES", "INVALID_VALUE", "INVALID_HANDLE"] }),
          },
        },
      },
      async (request) => {
        try {
          return { profiles: await portrait.findProfiles(request.account, findQuery(request.query)) };
        } catch (e) {
          // A malformed identity finds nobody rather than failing the search.
          if (e instanceof PortraitError && ["INVALID_IDENTITY", "INVALID_EMAIL", "INVALID_PHONE"].includes(e.code)) {
            return { profiles: [] };
          }
          throw e;
        }
      },
    );
    app.get<IdParams>(
      "/v1/profiles/:id",
      {
        schema: {
          operationId: "getProfile",
          tags: ["profiles"],
          summary: "A profile (a merge tombstone's id reads as its target)",
          response: { 200: json("The profile", "Profile"), ...unknownProfile },
        },
      },
      async (request) => portrait.requireProfile(request.account, profileId(request.params.id)),
    );
    app.patch<IdParams>(
      "/v1/profiles/:id",
      {
        schema: {
          operationId: "updateProfile",
          tags: ["profiles"],
          summary: "Apply a property set with operations",
          body: ref("PropertySet"),
          response: {
            200: json("The updated profile", "Profile"),
            400: refusal(400, INGEST_CODES, "A property the engine refuses (the ingest codes, API.md Ingest)"),
            ...unknownProfile,
          },
        },
      },
      async (request, reply) => {
        try {
          return await portrait.patchProfile(request.account, profileId(request.params.id), request.body);
        } catch (e) {
          // API.md: PATCH errors are 400 with the ingest codes; elsewhere an identity conflict is a 409.
          if (!(e instanceof PortraitError) || e.code !== "IDENTITY_CONFLICT") throw e;
          return reply.status(400).send(errorBody(e));
        }
      },
    );
    app.delete<IdParams>(
      "/v1/profiles/:id",
      {
        schema: {
          operationId: "deleteProfile",
          tags: ["profiles"],
          summary: "Delete a person for good",
          response: { 200: json("What was deleted", "ProfileDeleted"), ...unknownProfile },
        },
      },
      async (request) => ({
        deleted: await portrait.deleteProfile(request.account, profileId(request.params.id)),
      }),
    );
    app.get<IdParams & { Querystring: { cursor?: string; limit?: string } }>(
      "/v1/profiles/:id/events",
      {
        schema: {
          operationId: "listProfileEvents",
          tags: ["profiles"],
          summary: "The timeline, newest first; orphans' events flagged anonymous",
          querystring: pageQuery,
          response: {
            200: json("A page of events", "EventPage"),
            ...refusals({ 400: ["INVALID_VALUE"], 404: ["UNKNOWN_PROFILE"] }),
          },
        },
      },
      async (request, reply) => {
        const limit = pageLimit(request.query.limit);
        const page = await portrait.timelinePage(request.account, profileId(request.params.id), {
          cursor: request.query.cursor,
          limit,
        });
        return reply.type("application/json; charset=utf-8").send(timelineJson(page));
      },
    );
    app.get<IdParams>(
      "/v1/profiles/:id/export",
      {
        schema: {
          operationId: "exportProfile",
          tags: ["profiles"],
          summary: "Everything stored about a person",
          response: { 200: json("The person's data as one document", "ProfileExport"), ...unknownProfile },
        },
      },
      async (request) => portrait.exportProfile(request.account, profileId(request.params.id)),
    );
    app.put<IdParams>(
      "/v1/profiles/:id/test",
      {
        schema: {
          operationId: "setProfileTest",
          tags: ["profiles"],
          summary: "Mark or unmark a test profile",
          body: ref("TestFlag"),
          response: {
            200: json("The profile", "Profile"),
            ...refusals({ 400: ["INVALID_VALUE"], 404: ["UNKNOWN_PROFILE"] }),
          },
        },
      },
      async (request) =>
        portrait.setFlags(request.account, profileId(request.params.id), { test: booleanField(request.body, "test") }),
    );
    app.put<IdParams>(
      "/v1/profiles/:id/control-group-exclusion",
      {
        schema: {
          tags: ["profiles"],
          operationId: "setProfileControlGroupExclusion",
          summary: "Exclude from control groups (at most 20 per account)",
          body: ref("ControlGroupExclusion"),
          response: {
            200: json("The profile", "Profile"),
            ...refusals({
              400: ["INVALID_VALUE"],
              404: ["UNKNOWN_PROFILE"],
              409: ["CONTROL_GROUP_EXCLUSION_LIMIT"],
            }),
          },
        },
      },
      async (request) =>
        portrait.setFlags(request.account, profileId(request.params.id), {
          controlGroupExcluded: booleanField(request.body, "excluded"),
        }),
    );
  };
}
