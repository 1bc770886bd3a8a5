/**
 * Accounts, API keys and dashboard users (API.md Account, Keys, Starting and first run).
 * Keys are ≥ 128-bit random, stored as SHA-256, cached in memory and dropped from the cache on revoke (§11).
 */
import { createHash, randomBytes, scryptSync, timingSafeEqual } from "node:crypto";
import { PortraitError, show } from "../engine/errors.js";
import { normaliseAllowedOrigin } from "../engine/origins.js";
import { isPlainObject, isTimeZone } from "../engine/parse-record.js";
import { validateKey } from "../engine/properties/keys.js";
import {
  type Account,
  type AccountSettings,
  DEFAULT_SETTINGS,
  IDENTITY_KEYS,
  type IdentityKey,
} from "../engine/types.js";
import type { AccountChange, ApiKeyRow, KeyKind, Store } from "../store/store.js";
import { type Clock, randomIds, systemClock } from "./clock.js";

export const hashKey = (secret: string): string => createHash("sha256").update(secret).digest("hex");

export function generateKey(kind: KeyKind): string {
  // 192 random bits, URL-safe: comfortably above the 128-bit floor.
  return `${kind === "secret" ? "sk" : "pk"}_${randomBytes(24).toString("base64url")}`;
}

export interface CreatedKey {
  row: ApiKeyRow;
  /** Shown once; never stored. */
  key: string;
}

export interface NewAccount {
  account: Account;
  secretKey: string;
  publicKey: string;
}

export interface AuthenticatedKey {
  account: Account;
  key: ApiKeyRow;
}

const CACHE_TTL_MS = 30_000;

/**
 * A key chosen by the operator (PORTRAIT_BOOTSTRAP_*_KEY): long enough not to be guessed, sendable in a header and a
 * URL as it is, and with the prefix of its kind, so that a secret key set as the public one is caught, not served.
 */
export function checkGivenKey(kind: KeyKind, key: string): void {
  const prefix = kind === "secret" ? "sk_" : "pk_";
  const problem =
    typeof key !== "string"
      ? "must be a string"
      : !key.startsWith(prefix)
        ? `must start with ${prefix}`
        : key.length < 16 || key.length > 200
          ? `must be 16-200 characters, got ${key.length}`
          : !/^[\x21-\x7e]+$/.test(key)
            ? "must be printable ASCII without spaces"
            : null;
  if (problem !== null) throw new PortraitError("INVALID_VALUE", `a ${kind} key ${problem}`, "key");
}

/**
 * Control characters (C0, DEL, C1): a tab or a newline in a name splits the CLI's tab-separated listings (`accounts
 * list`, `keys list`) across columns and lines, and no name needs one.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

function controlMessage(what: string, name: string): string {
  const at = name.search(CONTROL);
  const code = name.charCodeAt(at).toString(16).toUpperCase().padStart(4, "0");
  return `${what} must not hold control characters (tab, newline…): U+${code} at position ${at + 1}`;
}

export class Accounts {
  private readonly cache = new Map<string, { at: number; auth: AuthenticatedKey }>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock = systemClock,
  ) {}

  async create(name: string, keys: { secretKey?: string; publicKey?: string } = {}, id?: string): Promise<NewAccount> {
    if (typeof name !== "string" || name.trim() === "" || name.length > 200) {
      throw new PortraitError("INVALID_VALUE", "an account name is 1-200 characters", "name");
    }
    if (CONTROL.test(name)) {
      throw new PortraitError("INVALID_VALUE", controlMessage("an account name", name), "name");
    }
    // Every given key is checked before anything is written: a refused key must not leave an account without keys.
    if (keys.secretKey !== undefined) checkGivenKey("secret", keys.secretKey);
    if (keys.publicKey !== undefined) checkGivenKey("public", keys.publicKey);
    const account: Account = {
      id: id ?? `acc_${randomIds.opaque()}`,
      name,
      settings: structuredClone(DEFAULT_SETTINGS),
      createdAt: this.clock.now(),
    };
    await this.store.createAccount(account);
    const secret = await this.createKey(account.id, "secret", "default secret key", keys.secretKey);
    const pub = await this.createKey(account.id, "public", "default public key", keys.publicKey);
    return { account, secretKey: secret.key, publicKey: pub.key };
  }

  async createKey(accountId: string, kind: KeyKind, name: string, given?: string): Promise<CreatedKey> {
    if (kind !== "secret" && kind !== "public") {
      throw new PortraitError("INVALID_VALUE", `kind must be "secret" or "public", got ${show(kind)}`, "kind");
    }
    if (typeof name !== "string" || name.length === 0 || name.length > 200) {
      throw new PortraitError("INVALID_VALUE", "name must be a string of 1-200 characters", "name");
    }
    if (CONTROL.test(name)) {
      throw new PortraitError("INVALID_VALUE", controlMessage("a key name", name), "name");
    }
    if (given !== undefined) checkGivenKey(kind, given);
    const key = given ?? generateKey(kind);
    const row: ApiKeyRow = {
      id: `key_${randomIds.opaque()}`,
      accountId,
      kind,
      name,
      hash: hashKey(key),
      prefix: key.slice(0, 7),
      createdAt: this.clock.now(),
      revokedAt: null,
    };
    await this.store.insertApiKey(row);
    return { row, key };
  }

  async revokeKey(accountId: string, keyId: string): Promise<boolean> {
    const ok = await this.store.revokeApiKey(accountId, keyId, this.clock.now());
    this.changed({ kind: "key", accountId, keyId });
    return ok;
  }

  /**
   * The account and key a presented secret belongs to, or null (unknown or revoked). The cache is keyed by the key as
   * presented, so that a request it answers hashes nothing (≈ 1 µs of SHA-256); only the store holds hashes alone.
   */
  async authenticate(presented: string): Promise<AuthenticatedKey | null> {
    const cached = this.cache.get(presented);
    const now = this.clock.now();
    if (cached && now - cached.at < CACHE_TTL_MS) return cached.auth;
    const key = await this.store.findApiKeyByHash(hashKey(presented));
    if (!key || key.revokedAt !== null) {
      this.cache.delete(presented);
      return null;
    }
    const account = await this.store.getAccount(key.accountId);
    if (!account) return null;
    const auth = { account, key };
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(presented, { at: now, auth });
    return auth;
  }

  /** The freshest account row (settings change while keys stay cached). */
  async get(accountId: string): Promise<Account | null> {
    return this.store.getAccount(accountId);
  }

  /**
   * Another process revoked a key or changed an account's settings (Store.watchAccounts): what is cached of them goes,
   * so the next request with such a key reads the key and its account again.
   */
  changed(change: AccountChange): void {
    if (change.kind === "all") {
      this.cache.clear();
      return;
    }
    for (const [presented, entry] of this.cache) {
      const { key, account } = entry.auth;
      if (change.kind === "key" ? key.id === change.keyId : account.id === change.accountId) {
        this.cache.delete(presented);
      }
    }
  }

  /** After a settings change committed (Portrait.updateSettings): keys cached here authenticate the new account row. */
  settingsChanged(account: Account): void {
    for (const entry of this.cache.values()) {
      if (entry.auth.account.id === account.id) entry.auth.account.settings = account.settings;
    }
  }

  async createDashboardUser(accountId: string, username: string, password: string): Promise<void> {
    const salt = randomBytes(16);
    const hash = scryptSync(password, salt, 32);
    await this.store.insertDashboardUser({
      accountId,
      username,
      passwordHash: `${salt.toString("hex")}:${hash.toString("hex")}`,
    });
  }

  async checkDashboardUser(username: string, password: string): Promise<string | null> {
    const user = await this.store.findDashboardUser(username);
    if (!user) return null;
    const [salt, hash] = user.passwordHash.split(":") as [string, string];
    const given = scryptSync(password, Buffer.from(salt, "hex"), 32);
    return timingSafeEqual(given, Buffer.from(hash, "hex")) ? user.accountId : null;
  }
}

/** Validates a settings patch against the current settings (SEMANTICS §1, §11 Settings changes). */
export function validateSettings(current: AccountSettings, patch: unknown): AccountSettings {
  if (!isPlainObject(patch)) throw new PortraitError("INVALID_SETTING", "settings must be a JSON object");
  const next: AccountSettings = structuredClone(current);
  const bad = (field: string, message: string): never => {
    throw new PortraitError("INVALID_SETTING", `${field} ${message}`, field);
  };
  for (const [field, value] of Object.entries(patch)) {
    switch (field) {
      case "identityKeys": {
        if (!Array.isArray(value) || value.length === 0) bad(field, "must be a non-empty array");
        const keys = value as unknown[];
        for (const k of keys) {
          if (typeof k !== "string" || !(IDENTITY_KEYS as readonly string[]).includes(k)) {
            bad(field, `may hold only ${IDENTITY_KEYS.join(", ")}; got ${show(k)}`);
          }
        }
        if (new Set(keys).size !== keys.length) bad(field, "must not repeat a key");
        next.identityKeys = keys as IdentityKey[];
        break;
      }
      case "identityLimits": {
        if (!isPlainObject(value)) bad(field, 'must be an object such as {"Email": 3}');
        const limits: Partial<Record<IdentityKey, number>> = {};
        for (const [k, n] of Object.entries(value as Record<string, unknown>)) {
          if (!(IDENTITY_KEYS as readonly string[]).includes(k)) bad(`${field}.${k}`, "is not an identity key");
          if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 100)
            bad(`${field}.${k}`, "must be an integer from 1 to 100");
          limits[k as IdentityKey] = n as number;
        }
        next.identityLimits = limits;
        break;
      }
      case "mergePolicy":
        if (value !== "reject" && value !== "merge") bad(field, 'must be "reject" or "merge"');
        next.mergePolicy = value as AccountSettings["mergePolicy"];
        break;
      case "timezone":
        if (typeof value !== "string" || !isTimeZone(value))
          bad(field, `must be an IANA time zone, got ${show(value)}`);
        next.timezone = value as string;
        break;
      case "allowedOrigins":
      case "publicProperties":
        if (!Array.isArray(value)) bad(field, `must be an array of strings, got ${show(value)}`);
        if ((value as unknown[]).length > 1000)
          bad(field, `holds at most 1000 entries, got ${(value as unknown[]).length}`);
        (value as unknown[]).forEach((v, i) => {
          if (typeof v !== "string" || v.length === 0 || v.length > 512)
            bad(`${field}[${i}]`, `must be a string of 1-512 characters, got ${show(v)}`);
        });
        next[field] =
          field === "allowedOrigins"
            ? [...new Set((value as string[]).map((v, i) => normaliseAllowedOrigin(v, `${field}[${i}]`)))]
            : publicPropertyKeys(value as string[], bad);
        break;
      default:
        bad(
          field,
          "is not a setting (identityKeys, identityLimits, mergePolicy, timezone, allowedOrigins, publicProperties)",
        );
    }
  }
  return next;
}

/**
 * `publicProperties`: the keys `GET /v1/sdk/profile` shows, matched against a profile's top-level property keys. An
 * entry that can never be one (a nested path, a key over 120 characters, `__proto__`), a repeat, or `*` (which does
 * not mean "all") is refused, naming the entry: until 2026-11-24 each was stored, and answered nothing (SDK audit F6).
 */
function publicPropertyKeys(keys: string[], bad: (field: string, message: string) => never): string[] {
  const first = new Map<string, number>();
  keys.forEach((key, i) => {
    const field = `publicProperties[${i}]`;
    if (key === "*") {
      bad(field, 'is "*", which does not mean all properties: list each property key to show');
    }
    try {
      validateKey(key, field);
    } catch (e) {
      if (!(e instanceof PortraitError)) throw e;
      const nested = key.includes(".") ? " (nested paths are not supported: list the top-level key)" : "";
      bad(field, `must be a top-level property key${nested}: ${e.message}`);
    }
    const before = first.get(key);
    if (before !== undefined) bad(field, `repeats ${show(key)}, already publicProperties[${before}]`);
    first.set(key, i);
  });
  return keys;
}

/** An API key as GET/POST /v1/keys and `portrait keys --json` show it: never its hash. */
export function apiKeyView(k: ApiKeyRow) {
  return {
    id: k.id,
    kind: k.kind,
    name: k.name,
    prefix: k.prefix,
    createdAt: new Date(k.createdAt).toISOString(),
    revokedAt: k.revokedAt === null ? null : new Date(k.revokedAt).toISOString(),
  };
}
