/**
 * The part of the Store that bulk imports and the SFTP drop point keep (API.md Imports, Account: SFTP keys):
 * import jobs with their progress, failure reports, SFTP public keys, and the email-hash look-up of document
 * imports. Each adapter implements it in its `*-imports.ts` file; the import runner is its only writer.
 *
 * Every write here is its own short transaction. An import's rows are applied through the ordinary pipeline in their
 * own transactions; progress is saved after each batch, and a row applied twice is a `duplicate` thanks to its
 * record id (SEMANTICS §11 Idempotency), so the two never need one transaction.
 */

import { IDENTITY_KEYS } from "../engine/types.js";

export type ImportKind = "profiles" | "events" | "documents";
export type ImportFormat = "csv" | "ndjson";
export type ImportStatus = "queued" | "running" | "done" | "failed";
export type ImportSource = "api" | "sftp";

export const IMPORT_KINDS: readonly ImportKind[] = ["profiles", "events", "documents"];

/** Options an import was created with (SFTP manifests add a column mapping and where results go). */
export interface ImportOptions {
  /** Source column → target header (`Name`, `Name<type>`), applied before the header is read. */
  mapping?: Record<string, string>;
  /** The charset the upload declared (`iso-8859-1`, `windows-1252`…), when not UTF-8. */
  charset?: string;
  /**
   * The key of the rows' record ids (imports/record-key.ts): the file's SHA-256 hashed with the kind, format,
   * mapping and charset. Absent on imports created before it existed, which keep `sha256` so a resumed one stays
   * idempotent.
   */
  recordKey?: string;
  /** SFTP: the account's folder on disk and the data file's name there; results are written next to it. */
  resultDir?: string;
  resultName?: string;
}

export interface ImportRow {
  accountId: string;
  id: string;
  kind: ImportKind;
  format: ImportFormat;
  status: ImportStatus;
  source: ImportSource;
  /** The name the file was uploaded under, when known. */
  fileName: string | null;
  /** Where the stored copy is, relative to the data directory. */
  filePath: string;
  /** Lowercase hex SHA-256 of the file: with a row number, each row's record id (SEMANTICS §11). */
  sha256: string;
  bytes: number;
  options: ImportOptions;
  /** The CSV header as read (for the failure report), null before reading or for NDJSON. */
  header: string[] | null;
  /** Rows read so far (= processed + failed). */
  rows: number;
  processed: number;
  failed: number;
  /** Bytes of the file read up to the checkpoint (for progress and ETA). */
  bytesRead: number;
  /** Number of the last row read (the checkpoint a resumed run skips to; NDJSON skips blank lines, so ≠ rows). */
  lastRow: number;
  /** Why the file could not be read (status `failed`). */
  error: string | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** The worker that runs it and when it last said so; a claim older than the timeout is free again. */
  claimedBy: string | null;
  heartbeatAt: number | null;
}

/** One refused row: its original content and why. */
export interface ImportFailure {
  row: number;
  /** CSV: the row's fields; NDJSON: the line. Null once redacted (SEMANTICS §10). */
  data: string[] | string | null;
  description: string;
  /** Handles the row named (identity values, profile ids, device ids…), so that deleting that person redacts it. */
  handles: ImportHandle[];
}

/**
 * A value that can lead to a person: `Email`/`Phone`/`Identity`/`FBID`/`GPID`, `profileId`, `deviceId`,
 * `userAccount` (JSON `[compartmentId, userAccountId]`) or `email_hash` (hex SHA-256 of an Email).
 */
export interface ImportHandle {
  kind: string;
  value: string;
}

/** A handle and the profile it leads to (ImportStore.profilesNamedBy). */
export interface ImportHandleOwner extends ImportHandle {
  profileId: string;
}

export interface ImportProgress {
  rows: number;
  processed: number;
  failed: number;
  bytesRead: number;
  lastRow: number;
}

export interface SftpKeyRow {
  accountId: string;
  id: string;
  name: string;
  /** `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`… */
  algorithm: string;
  /** The key blob, base64 (the second field of an OpenSSH public key line). */
  publicKey: string;
  /** `SHA256:<base64>` as `ssh-keygen -l` prints it. */
  fingerprint: string;
  createdAt: number;
}

export interface ImportStore {
  insertImport(row: ImportRow): Promise<void>;
  getImport(accountId: string, importId: string): Promise<ImportRow | null>;
  /** Whether any of these record ids was ever claimed in the account (a file imported under the key scheme before). */
  anyRecordIdSeen(accountId: string, recordIds: string[]): Promise<boolean>;
  /** An account's imports, newest first (by createdAt, then id), those older than `before` when given. */
  listImports(
    accountId: string,
    page: { before: { createdAt: number; id: string } | null; limit: number },
  ): Promise<ImportRow[]>;
  /** Queued and running imports of every account, oldest first: what a worker may claim. */
  listUnfinished(): Promise<ImportRow[]>;
  /**
   * Claims an import for `worker` (status → running) unless another worker holds it or another import of the same
   * account, with a heartbeat newer than `staleBefore`. Returns the claimed row, or null.
   */
  claimImport(
    accountId: string,
    importId: string,
    worker: string,
    now: number,
    staleBefore: number,
  ): Promise<ImportRow | null>;
  /** Saves the checkpoint and the batch's refused rows; false when `worker` no longer holds the claim. */
  saveProgress(
    accountId: string,
    importId: string,
    worker: string,
    progress: ImportProgress,
    failures: ImportFailure[],
    now: number,
  ): Promise<boolean>;
  /** Says the worker still runs the import (between batches that take long); false when it lost the claim. */
  heartbeat(accountId: string, importId: string, worker: string, now: number): Promise<boolean>;
  /** Gives up the claim without finishing (shutdown): the next worker resumes at the checkpoint at once. */
  releaseImport(accountId: string, importId: string, worker: string): Promise<void>;
  setHeader(accountId: string, importId: string, header: string[]): Promise<void>;
  finishImport(
    accountId: string,
    importId: string,
    worker: string,
    outcome: { status: "done" | "failed"; error: string | null },
    now: number,
  ): Promise<void>;
  /**
   * The profiles these handles lead to now: identity values (by their key), device ids (the device's profile), user
   * accounts and email hashes (the look-up `refreshEmailHashes` fills). Handles that lead nowhere, and other kinds
   * (`profileId` names its profile already), are left out. SEMANTICS §10: the runner stores the owners of a refused
   * row's handles with it, so deleting that person redacts the row after the values change hands.
   */
  profilesNamedBy(accountId: string, handles: readonly ImportHandle[]): Promise<ImportHandleOwner[]>;
  /** Failure rows in row order after `afterRow`. */
  listFailures(accountId: string, importId: string, afterRow: number, limit: number): Promise<ImportFailure[]>;
  /**
   * The stored size (bytes of the row's data and description) of each failure row after `afterRow`, in row order,
   * without reading the rows into memory: the failure report pages by bytes with it.
   */
  failureSizes(
    accountId: string,
    importId: string,
    afterRow: number,
    limit: number,
  ): Promise<Array<{ row: number; bytes: number }>>;

  insertSftpKey(key: SftpKeyRow): Promise<void>;
  listSftpKeys(accountId: string): Promise<SftpKeyRow[]>;
  deleteSftpKey(accountId: string, keyId: string): Promise<boolean>;

  /** Rebuilds the account's email-hash look-up from its current Email identities (document imports by email_hash). */
  refreshEmailHashes(accountId: string): Promise<void>;
  findProfileByEmailHash(accountId: string, hash: string): Promise<string | null>;
}

/** The handles of `profilesNamedBy` by the table that answers them, each once; kinds that lead nowhere are dropped. */
export interface HandleLookups {
  identities: ImportHandle[];
  deviceIds: string[];
  userAccounts: Array<{ value: string; compartmentId: string; userAccountId: string }>;
  emailHashes: string[];
}

const IDENTITY_KINDS: ReadonlySet<string> = new Set(IDENTITY_KEYS);

export function handleLookups(handles: readonly ImportHandle[]): HandleLookups {
  const out: HandleLookups = { identities: [], deviceIds: [], userAccounts: [], emailHashes: [] };
  const seen = new Set<string>();
  for (const h of handles) {
    const id = `${h.kind}\u0000${h.value}`;
    if (seen.has(id)) continue;
    seen.add(id);
    if (IDENTITY_KINDS.has(h.kind)) out.identities.push({ kind: h.kind, value: h.value });
    else if (h.kind === "deviceId") out.deviceIds.push(h.value);
    else if (h.kind === "email_hash") out.emailHashes.push(h.value);
    else if (h.kind === "userAccount") {
      const ref = jsonOrNull(h.value);
      if (Array.isArray(ref) && typeof ref[0] === "string" && typeof ref[1] === "string") {
        out.userAccounts.push({ value: h.value, compartmentId: ref[0], userAccountId: ref[1] });
      }
    }
  }
  return out;
}

function jsonOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
