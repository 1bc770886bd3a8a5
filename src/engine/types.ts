/**
 * The domain model shared by the engine, the stores and the transports. Everything here is plain data that
 * serialises to JSON unchanged: the stores keep a profile's state as one JSON document.
 * Times are epoch milliseconds everywhere inside Portrait; transports convert at the edge.
 */

export const IDENTITY_KEYS = ["Identity", "Email", "Phone", "FBID", "GPID"] as const;
export type IdentityKey = (typeof IDENTITY_KEYS)[number];

export type MergePolicy = "reject" | "merge";

export interface AccountSettings {
  /** Which profile fields identify a person, in priority order (SEMANTICS §1). */
  identityKeys: IdentityKey[];
  /** How many values a profile keeps per identity key; 1 when absent. */
  identityLimits: Partial<Record<IdentityKey, number>>;
  mergePolicy: MergePolicy;
  /** IANA zone for day boundaries. */
  timezone: string;
  /** Origins the browser SDK may call from; `*` allows any. */
  allowedOrigins: string[];
  /** Properties the SDK's profile read may return. */
  publicProperties: string[];
}

export const DEFAULT_SETTINGS: AccountSettings = {
  identityKeys: ["Identity", "Email"],
  identityLimits: {},
  mergePolicy: "reject",
  timezone: "UTC",
  allowedOrigins: ["*"],
  publicProperties: [],
};

export interface Account {
  id: string;
  name: string;
  settings: AccountSettings;
  createdAt: number;
}

/** The registered type of a property path (SEMANTICS §4: the first write fixes it). */
export type ValueType = "string" | "number" | "boolean" | "date" | "multi" | "object";

/**
 * A stored property value. Dates are epoch milliseconds with type `date` (DOB alone is the calendar date
 * string `YYYY-MM-DD`); multi-values are string arrays in insertion order; objects are nested JSON whose leaves
 * are strings, numbers or booleans.
 */
export type JsonValue = string | number | boolean | JsonValue[] | { [key: string]: JsonValue };
export type StoredValue = string | number | boolean | string[] | { [key: string]: JsonValue };

/** One key of a profile: its value (absent = deleted, a tombstone), the ts that decides ordering, how it last changed. */
export interface PropertyEntry {
  /** Undefined for a tombstone left by `$delete`. */
  v?: StoredValue;
  t?: ValueType;
  /** Record ts of the last set/`$set`/`$delete` (ms). Counter and set-edit operations leave it unchanged. */
  ts: number;
  /** True when the last change was `$incr`/`$decr` (merge sums such keys when both sides have it). */
  counter?: boolean;
}

export interface IdentityValue {
  value: string;
  /** ts of the record that set it; the newest is kept when a limit is exceeded. */
  ts: number;
}

export interface Location {
  city: string | null;
  region: string | null;
  country: string | null;
  lat: number | null;
  lon: number | null;
}

export interface ProfileStats {
  /** Counted events: the profile's own (SEMANTICS §5). */
  events: number;
  charged: number;
  revenue: number;
}

export interface ProfileFlags {
  test: boolean;
  controlGroupExcluded: boolean;
}

/** Everything about one profile except its events, devices, accounts and documents (stored beside it). */
export interface ProfileState {
  id: string;
  props: Record<string, PropertyEntry>;
  identities: Partial<Record<IdentityKey, IdentityValue[]>>;
  createdAt: number;
  updatedAt: number;
  firstSeen: number | null;
  lastSeen: number | null;
  /** First source seen: the earliest utm_source, else the earliest referrer host (SEMANTICS §11). */
  acquiredFrom: string | null;
  acquiredTs: number | null;
  acquiredKind: "utm" | "referrer" | null;
  location: Location;
  /** True while the Timezone property came from a client's context rather than an explicit write. */
  timezoneFromContext: boolean;
  bucket: number;
  flags: ProfileFlags;
  stats: ProfileStats;
  /** Set on an anonymous profile left behind by a login switch (SEMANTICS §3 case 2). */
  orphanOf: string | null;
  /** Set on a merge tombstone. */
  mergedInto: string | null;
  /** The undoable merge this profile is the target of: records applied to it are journalled there (SEMANTICS §7). */
  journalMergeId: string | null;
}

export type ProfileType = "anonymous" | "identified" | "customer";

export interface DeviceRow {
  deviceId: string;
  profileId: string;
  pushToken: string | null;
  platform: string | null;
}

export interface UserAccountRef {
  compartmentId: string;
  userAccountId: string;
}

export interface ProfileDocument extends UserAccountRef {
  profileId: string;
  /** The stored document including its `$` system fields. */
  body: { [key: string]: JsonValue };
  createdAt: number;
  updatedAt: number;
}

export type EventPropertyValue = string | number | boolean | Array<{ [key: string]: string | number | boolean }>;

export interface StoredEvent {
  /** Store-assigned, increasing within an account: the timeline cursor and the merge bookkeeping use it. */
  seq: number;
  profileId: string;
  /** Client id for idempotency, or a generated one. */
  id: string;
  name: string;
  ts: number;
  properties: Record<string, EventPropertyValue>;
  deviceId: string | null;
  platform: string | null;
}

export type NewEvent = Omit<StoredEvent, "seq">;

/** Context a client sends with a record (SEMANTICS §11 push tokens and context). */
export interface RecordContext {
  timezone?: string;
  locale?: string;
  url?: string;
  referrer?: string;
  utm_source?: string;
  utm_medium?: string;
  utm_campaign?: string;
  platform?: string;
  ip?: string;
  location?: Partial<Location>;
}
