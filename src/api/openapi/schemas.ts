/**
 * The shapes of the v1 API (API.md) as JSON Schema, for the OpenAPI document only: app.ts neither validates requests
 * nor serialises responses with them (the engine validates; replies are JSON.stringify'd as the handlers build them).
 * Each is registered once with `app.addSchema` under its `$id` and referenced as `{"$ref": "<Id>#"}`, which
 * @fastify/swagger emits as `#/components/schemas/<Id>`. The contract test (api/openapi.test.ts) checks real replies
 * against them, so a response shape is closed (`additionalProperties: false`) wherever the server's is.
 */
import type { FastifyInstance } from "fastify";
import { IDENTITY_KEYS } from "../../engine/types.js";

/** A reference to a registered schema (`$ref` to its `$id`). */
const to = (id: string) => ({ $ref: `${id}#` });
export const ref = (id: SchemaId) => to(id);

const dateTime = { type: "string", format: "date-time", description: "ISO-8601 UTC" } as const;
const nullableDateTime = { type: ["string", "null"], format: "date-time", description: "ISO-8601 UTC, or null" };
const nullableString = { type: ["string", "null"] } as const;
const count = { type: "integer", minimum: 0 } as const;
const profileIdString = { type: "string", pattern: "^[0-9a-f]{32}$", description: "A profile id" } as const;
const chargedIds = {
  type: "array",
  items: { type: "string" },
  description: "Charged IDs already counted: a Charged event repeating one is stored once (SEMANTICS §3)",
} as const;
const cursor = {
  type: ["string", "null"],
  description: "Opaque; pass it back as `cursor` for the next page. Null at the end.",
} as const;

/** A closed object: every property listed, all of them required unless `optional` names them. */
function closed(properties: Record<string, unknown>, optional: string[] = [], extra: Record<string, unknown> = {}) {
  return {
    type: "object",
    additionalProperties: false,
    required: Object.keys(properties).filter((k) => !optional.includes(k)),
    properties,
    ...extra,
  };
}

const SETTINGS = {
  identityKeys: {
    type: "array",
    minItems: 1,
    uniqueItems: true,
    items: { type: "string", enum: IDENTITY_KEYS },
    description: "Which fields identify a person, in priority order",
  },
  identityLimits: {
    type: "object",
    description: "Values kept per identity key (1 when absent); a key above 1 shows an array in `identities`",
    propertyNames: { enum: IDENTITY_KEYS },
    additionalProperties: { type: "integer", minimum: 1, maximum: 100 },
  },
  mergePolicy: { type: "string", enum: ["reject", "merge"] },
  timezone: { type: "string", description: "IANA time zone for day boundaries" },
  allowedOrigins: {
    type: "array",
    items: { type: "string" },
    description: "Origins whose pages may call the SDK endpoints; `*` any, `https://*.example.com` subdomains",
  },
  publicProperties: {
    type: "array",
    items: { type: "string" },
    description: "Properties GET /v1/sdk/profile may return",
  },
};

const KEY = {
  id: { type: "string" },
  kind: { type: "string", enum: ["secret", "public"] },
  name: { type: "string" },
  prefix: { type: "string", description: "The key's first characters, to recognise it" },
  createdAt: dateTime,
  revokedAt: nullableDateTime,
};

const SCHEMAS = {
  JsonValue: {
    description: "Any JSON value (a stored property, event property or document field).",
    type: ["string", "number", "boolean", "null", "array", "object"],
  },
  Error: {
    description: "Every refusal (API.md Conventions: Errors). Never a stack trace.",
    ...closed({
      error: closed(
        {
          code: { type: "string", pattern: "^[A-Z][A-Z0-9_]*$", description: "Stable SNAKE_CASE code" },
          message: { type: "string", description: "A sentence naming the field and the problem" },
          field: { type: "string", description: "The JSON path (or parameter) at fault, when one is" },
        },
        ["field"],
      ),
    }),
  },

  Settings: closed(SETTINGS),
  SettingsPatch: {
    description: "Any of the settings; an unknown key is refused (INVALID_SETTING).",
    type: "object",
    additionalProperties: false,
    minProperties: 1,
    properties: SETTINGS,
  },
  Account: closed({ id: { type: "string" }, name: { type: "string" }, settings: to("Settings") }),

  Key: closed(KEY),
  KeyList: closed({ keys: { type: "array", items: to("Key") }, nextCursor: cursor }),
  NewKey: closed({ ...KEY, key: { type: "string", description: "The key itself, shown this once" } }, [], {
    description: "A key as created: the only time the key itself is shown.",
  }),
  KeyCreate: {
    type: "object",
    required: ["kind"],
    properties: {
      kind: { type: "string", enum: ["secret", "public"] },
      name: { type: "string", minLength: 1, maxLength: 200, default: "unnamed" },
    },
  },
  Revoked: closed({ revoked: { const: true } }),
  Deleted: closed({ deleted: { const: true } }),

  SftpKey: closed({
    id: { type: "string" },
    name: { type: "string" },
    algorithm: { type: "string", description: "e.g. ssh-ed25519, ssh-rsa (2048 bits or more)" },
    fingerprint: { type: "string", pattern: "^SHA256:" },
    createdAt: dateTime,
  }),
  SftpKeyList: closed({ keys: { type: "array", items: to("SftpKey") }, nextCursor: cursor }),
  NewSftpKey: closed({
    id: { type: "string" },
    name: { type: "string" },
    fingerprint: { type: "string", pattern: "^SHA256:" },
  }),
  SftpKeyCreate: {
    type: "object",
    required: ["name", "publicKey"],
    properties: {
      name: { type: "string", minLength: 1, maxLength: 120 },
      publicKey: { type: "string", description: 'An OpenSSH public key line, "ssh-ed25519 AAAA… comment"' },
    },
  },

  IngestRecord: {
    description:
      "One record (API.md Ingest). It names exactly one handle: `deviceId`, `identity` (one identity key) or " +
      "`profileId`; a record that fails changes nothing and is reported in `unprocessed`.",
    type: "object",
    required: ["type"],
    properties: {
      type: { type: "string", enum: ["login", "profile", "event", "token"] },
      deviceId: { type: "string" },
      identity: {
        type: "object",
        minProperties: 1,
        maxProperties: 1,
        propertyNames: { enum: IDENTITY_KEYS },
        additionalProperties: { type: "string" },
      },
      profileId: profileIdString,
      ts: {
        type: ["integer", "string"],
        description:
          "Epoch seconds as a number, or text: ISO-8601, a compact date YYYYMMDD or epoch seconds of 9-12 digits (date-only and offset-less in the account timezone)",
      },
      properties: to("PropertySet"),
      name: { type: "string", description: "Event name (event records)" },
      id: { type: "string", description: "Event id: a repeated id is a `duplicate`" },
      context: { type: "object", description: "Event context: timezone, utm_*, platform …" },
      channel: { type: "string", enum: ["push", "email", "sms", "whatsapp"], description: "Token records" },
      token: { type: "string", description: "Token records" },
    },
  },
  IngestBatch: {
    type: "object",
    required: ["records"],
    properties: { records: { type: "array", maxItems: 1000, items: to("IngestRecord") } },
  },
  SdkBatch: {
    type: "object",
    required: ["records"],
    properties: {
      records: { type: "array", maxItems: 1000, items: to("IngestRecord") },
      sentAt: {
        type: "number",
        description:
          "The sender's clock when it sent the batch, in epoch seconds. When it differs from the server's by more " +
          "than 10 s, every record's numeric ts is shifted by the difference (a browser's clock may be days off). " +
          "Any other value than such a number (after 1970, up to 9999-12-31T23:59:59Z) refuses the batch with " +
          "INVALID_VALUE, field sentAt.",
      },
    },
  },
  BatchResult: closed({
    status: { type: "string", enum: ["success", "partial", "fail"] },
    processed: count,
    unprocessed: {
      type: "array",
      items: closed(
        {
          index: count,
          code: { type: "string", pattern: "^[A-Z][A-Z0-9_]*$" },
          error: { type: "string" },
          field: { type: "string" },
        },
        ["field"],
      ),
    },
    results: {
      type: "array",
      items: closed(
        {
          index: count,
          profileId: {
            anyOf: [profileIdString, { type: "null" }],
            description: "null only for a `duplicate` whose handle names nobody now",
          },
          outcome: {
            type: "string",
            enum: ["identified", "switched", "appended", "created", "updated", "stored", "duplicate"],
          },
          unapplied: {
            type: "array",
            description: "Identity values of the record that were not applied, and why",
            items: closed({
              key: { type: "string" },
              code: { type: "string", enum: ["IDENTITY_CONFLICT", "INVALID_IDENTITY", "IDENTITY_KEY_NOT_ENABLED"] },
            }),
          },
        },
        ["unapplied"],
      ),
    },
  }),
  PropertySet: {
    description:
      "Property keys to values, or to an operation: `{$incr|$decr: n}`, `{$add|$remove: value or [values]}`, " +
      "`{$set: [values]}`, `{$setOnce: value}`, `{$delete: true}`.",
    type: "object",
    additionalProperties: to("JsonValue"),
  },

  Profile: closed({
    id: profileIdString,
    type: { type: "string", enum: ["anonymous", "identified", "customer"] },
    identities: {
      type: "object",
      description: "Identity key → value; an array (newest last) for a key whose limit is above 1",
      propertyNames: { enum: IDENTITY_KEYS },
      additionalProperties: { anyOf: [{ type: "string" }, { type: "array", items: { type: "string" } }] },
    },
    devices: { type: "array", items: { type: "string" } },
    accounts: {
      type: "array",
      items: closed({ compartmentId: { type: "string" }, userAccountId: { type: "string" } }),
    },
    properties: {
      type: "object",
      description: "Rendered values (dates ISO-8601); `Age` is derived from DOB at read time",
      additionalProperties: to("JsonValue"),
    },
    system: closed({
      createdAt: dateTime,
      updatedAt: dateTime,
      firstSeen: nullableDateTime,
      lastSeen: nullableDateTime,
      acquiredFrom: nullableString,
      location: closed({
        city: nullableString,
        region: nullableString,
        country: nullableString,
        lat: { type: ["number", "null"] },
        lon: { type: ["number", "null"] },
      }),
      timezone: nullableString,
      bucket: { type: "integer", minimum: 0, maximum: 999, description: "Control-group bucket" },
    }),
    flags: closed({ test: { type: "boolean" }, controlGroupExcluded: { type: "boolean" } }),
    stats: closed({ events: count, revenue: { type: "number" }, orphans: count }),
    orphanOf: { type: ["string", "null"], description: "Set on an orphan: the profile it was split from" },
    mergedInto: { type: ["string", "null"], description: "Set on a merge tombstone: its target" },
  }),
  ProfileList: closed({ profiles: { type: "array", items: to("Profile") } }),
  ProfileDeleted: closed({
    deleted: closed({ profiles: count, events: count, identities: count, devices: count }),
  }),
  Event: closed({
    id: { type: "string" },
    name: { type: "string" },
    ts: dateTime,
    properties: { type: "object", additionalProperties: to("JsonValue") },
    anonymous: { type: "boolean", description: "An orphan's event, shown on its profile's timeline" },
    profileId: profileIdString,
    deviceId: nullableString,
    platform: nullableString,
  }),
  EventPage: closed({ events: { type: "array", items: to("Event") }, nextCursor: cursor }),
  Device: closed({
    deviceId: { type: "string" },
    profileId: profileIdString,
    pushToken: nullableString,
    platform: nullableString,
  }),
  ProfileExport: closed({
    exportedAt: dateTime,
    profile: to("Profile"),
    documents: { type: "array", items: to("Document") },
    devices: { type: "array", items: to("Device") },
    events: { type: "array", items: to("Event") },
    orphans: { type: "array", items: to("Profile") },
    tombstones: { type: "array", items: { type: "string" }, description: "Ids merged into this profile" },
    merges: {
      type: "array",
      items: closed({
        id: { type: "string" },
        targetId: { type: "string" },
        sourceId: { type: "string" },
        createdAt: dateTime,
        undoneAt: nullableDateTime,
      }),
    },
    orphanDocuments: {
      type: "array",
      description: "The compartment documents of each orphan (in `orphans` order); deleting the person deletes them",
      items: closed({ profileId: profileIdString, documents: { type: "array", items: to("Document") } }),
    },
    propertyStates: to("PropertyStates"),
    orphanPropertyStates: {
      type: "array",
      description: "Each orphan's property states (in `orphans` order)",
      items: closed({ profileId: profileIdString, propertyStates: to("PropertyStates") }),
    },
    acquisition: closed({
      from: { type: ["string", "null"], description: "system.acquiredFrom" },
      kind: { type: ["string", "null"], enum: ["utm", "referrer", null], description: "Where it was read from" },
      ts: { ...nullableDateTime, description: "When that source was seen: an earlier one seen later replaces it" },
    }),
    identityValues: to("IdentityValues"),
    chargedIds: chargedIds,
    mergeSnapshots: {
      type: "array",
      description:
        "For each merge in `merges` not undone yet: both sides as they were before it, which an undo restores " +
        "(then replays `journal`), and the source's events dropped as repeated Charged IDs",
      items: closed({
        mergeId: { type: "string" },
        target: to("MergeSnapshot"),
        source: to("MergeSnapshot"),
        droppedEvents: { type: "array", items: to("Event") },
        journal: {
          type: "array",
          description:
            "The records applied to the merged person since the merge, oldest first, as stored (the engine's form: " +
            "`ts` in epoch ms, `handle` the way the record came in, properties as operations); an undo replays " +
            "them, each to the person its handle names then",
          items: { type: "object", required: ["type", "ts", "handle"] },
        },
      }),
    },
  }),
  PropertyStates: {
    description:
      "Every stored key, deleted ones (tombstones) included, with what decides its later writes (SEMANTICS §4): " +
      "a set, `$set` or `$delete` applies only if its ts is at least `ts`",
    type: "object",
    additionalProperties: closed({
      ts: { ...dateTime, description: "ts of the key's last set, `$set` or `$delete` (ISO-8601 UTC, ms)" },
      deleted: { type: "boolean", description: "A tombstone left by `$delete`: no value, only its ts" },
      counter: { type: "boolean", description: "Last changed by `$incr`/`$decr` (a merge sums such keys)" },
    }),
  },
  IdentityValues: {
    description: "Each identity value held, per key, with the ts that decides which ones a key's limit keeps",
    type: "object",
    additionalProperties: {
      type: "array",
      items: closed({ value: { type: "string" }, ts: dateTime }),
    },
  },
  MergeSnapshot: closed({
    profile: to("Profile"),
    propertyStates: to("PropertyStates"),
    identityValues: to("IdentityValues"),
    devices: { type: "array", items: to("Device") },
    documents: { type: "array", items: to("Document") },
    chargedIds: chargedIds,
    orphans: { type: "array", items: profileIdString, description: "Ids of its orphans" },
  }),
  TestFlag: closed({ test: { type: "boolean" } }),
  ControlGroupExclusion: closed({ excluded: { type: "boolean" } }),

  Document: {
    description: "A compartment document: the fields sent, plus the system fields `$…` the server keeps.",
    type: "object",
    required: ["$compartment_id", "$user_account_id", "$creation_ts", "$last_modified_ts"],
    properties: {
      $compartment_id: { type: "string" },
      $user_account_id: { type: "string" },
      $creation_ts: { type: "integer", description: "Epoch milliseconds" },
      $last_modified_ts: { type: "integer", description: "Epoch milliseconds" },
    },
    additionalProperties: to("JsonValue"),
  },
  DocumentBody: {
    description: "A JSON object of at most 64 KB; it replaces the stored document (system fields kept).",
    type: "object",
    additionalProperties: to("JsonValue"),
  },
  DocumentList: closed({ documents: { type: "array", items: to("Document") }, nextCursor: cursor }),

  MergeRequest: closed({ targetId: profileIdString, sourceId: profileIdString }),
  MergeResult: closed({ mergeId: { type: "string" }, profile: to("Profile") }),
  UndoResult: closed(
    {
      target: to("Profile"),
      source: to("Profile"),
      unapplied: {
        type: "array",
        description:
          "Present when the undo left something out: an identity value someone else holds now (IDENTITY_CONFLICT), " +
          "a device that left the merged person after the merge, for someone else or with a person since deleted " +
          "(DEVICE_MOVED), an exclusion from control groups that would pass the account's limit of 20 " +
          "(CONTROL_GROUP_EXCLUSION_LIMIT: the profile is left not excluded), or a record applied to the merged " +
          "person after the merge that its replay could not apply again (RECORD_NOT_REPLAYED, with the refusal's " +
          "code in `reason`)",
        items: closed(
          {
            profileId: profileIdString,
            key: {
              type: "string",
              description:
                "An identity key, deviceId, controlGroupExcluded, or the record's type (login, profile, event, token, " +
                "flags, document)",
            },
            value: {
              type: "string",
              description:
                'The value; "true" for controlGroupExcluded; for a record, a document as the JSON array ' +
                "[compartmentId, userAccountId], an event by name, else its handle's value",
            },
            code: {
              type: "string",
              enum: ["IDENTITY_CONFLICT", "DEVICE_MOVED", "CONTROL_GROUP_EXCLUSION_LIMIT", "RECORD_NOT_REPLAYED"],
            },
            reason: { type: "string", description: "RECORD_NOT_REPLAYED only: the code the record was refused with" },
          },
          ["reason"],
        ),
      },
    },
    ["unapplied"],
  ),

  Condition: {
    description:
      "A segment condition (API.md Segments, the grammar): `all`/`any`/`not`, a property or system comparison, " +
      "a behaviour (`did`/`didNot`/`didAny` with count, window, where, firstTime/lastTime, sum/avg), or " +
      "`type`/`test`/`controlGroupExcluded`/`reachableBy`/`bucket`/`inSegment`. Anything else is INVALID_SEGMENT.",
    type: "object",
    minProperties: 1,
    additionalProperties: false,
    properties: {
      all: { type: "array", maxItems: 100, items: { $ref: "Condition#" } },
      any: { type: "array", maxItems: 100, items: { $ref: "Condition#" } },
      not: { $ref: "Condition#" },
      property: { type: "string" },
      compartment: { type: "string" },
      system: {
        type: "string",
        enum: ["createdAt", "firstSeen", "lastSeen", "acquiredFrom", "city", "country", "timezone"],
      },
      op: {
        type: "string",
        enum: [
          ...["eq", "neq", "contains", "notContains", "startsWith", "gt", "gte", "lt", "lte", "between", "in"],
          ...["notIn", "exists", "notExists", "before", "after", "withinLast"],
        ],
      },
      value: to("JsonValue"),
      did: { type: "string" },
      didNot: { type: "string" },
      didAny: { type: "array", items: { type: "string" } },
      count: { type: "object" },
      withinLast: { type: "object", properties: { days: { type: "number" } } },
      from: { type: "string" },
      to: { type: "string" },
      where: { type: "array", items: { $ref: "Condition#" } },
      firstTime: { type: "object" },
      lastTime: { type: "object" },
      sum: { type: "object" },
      avg: { type: "object" },
      type: { type: "string", enum: ["anonymous", "identified", "customer"] },
      test: { type: "boolean" },
      controlGroupExcluded: { type: "boolean" },
      reachableBy: { type: "string", enum: ["email", "sms", "whatsapp", "push"] },
      bucket: { type: "object", properties: { from: { type: "integer" }, to: { type: "integer" } } },
      inSegment: { type: "string" },
    },
  },
  SegmentQuery: {
    type: "object",
    required: ["where"],
    properties: {
      where: to("Condition"),
      limit: { type: "integer", minimum: 1, maximum: 1000, default: 50 },
      cursor,
    },
  },
  SegmentCreate: {
    type: "object",
    required: ["name", "where"],
    properties: { name: { type: "string", minLength: 1, maxLength: 200 }, where: to("Condition") },
  },
  Segment: closed({
    id: { type: "string" },
    name: { type: "string" },
    where: to("Condition"),
    createdAt: dateTime,
  }),
  SegmentList: closed({ segments: { type: "array", items: to("Segment") }, nextCursor: cursor }),
  MembersPage: closed({
    count: { ...count, description: "How many profiles match in all" },
    profiles: { type: "array", items: to("Profile") },
    nextCursor: cursor,
  }),

  ImportQueued: closed({ id: { type: "string" }, status: { type: "string", enum: ["queued"] } }),
  Import: closed(
    {
      id: { type: "string" },
      kind: { type: "string", enum: ["profiles", "events", "documents"] },
      source: { type: "string", enum: ["api", "sftp"], description: "api: POST /v1/imports, `portrait import`" },
      fileName: {
        type: ["string", "null"],
        description: "The uploaded file's name (multipart, `portrait import`, SFTP path), else null",
      },
      createdAt: { ...dateTime, description: "When the file was taken" },
      status: { type: "string", enum: ["queued", "running", "done", "failed"] },
      rows: { ...count, description: "processed + failed (header excluded)" },
      processed: { ...count, description: "Rows applied" },
      failed: { ...count, description: "Rows refused (see failures.csv)" },
      startedAt: nullableDateTime,
      finishedAt: nullableDateTime,
      error: { type: "string", description: "Why the file could not be read (status failed)" },
      bytes: { ...count, description: "The file's size" },
      bytesRead: { ...count, description: "How far the runner has read" },
    },
    ["error"],
  ),
  ImportList: closed({ imports: { type: "array", items: to("Import") }, nextCursor: cursor }),

  SdkProfile: closed({
    properties: {
      type: "object",
      description: "Only the account's publicProperties that the device's profile has",
      additionalProperties: to("JsonValue"),
    },
  }),
  Health: closed({ ok: { const: true } }),
  OpenApiDocument: {
    description: "An OpenAPI 3.1 document (https://spec.openapis.org/oas/v3.1.0)",
    type: "object",
    required: ["openapi", "info", "paths", "components"],
    properties: {
      openapi: { type: "string", pattern: "^3\\.1\\." },
      info: {
        type: "object",
        required: ["title", "version"],
        properties: { title: { type: "string" }, version: { type: "string" }, description: { type: "string" } },
      },
      paths: { type: "object", additionalProperties: { type: "object" } },
      components: {
        type: "object",
        required: ["schemas", "securitySchemes"],
        properties: { schemas: { type: "object" }, securitySchemes: { type: "object" } },
      },
      security: { type: "array", items: { type: "object" } },
    },
  },
} as const;

export type SchemaId = keyof typeof SCHEMAS;

/** Registers every shared schema on the app (once, before the routes that reference them). */
export function addSharedSchemas(app: FastifyInstance): void {
  for (const [id, schema] of Object.entries(SCHEMAS)) app.addSchema({ $id: id, ...schema });
}
