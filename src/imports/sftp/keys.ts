/**
 * SFTP public keys (API.md Account: `POST/GET/DELETE /v1/sftp/keys`, CLI `portrait sftp-keys`): an account registers
 * OpenSSH public keys; the SFTP server lets in, as that account, whoever proves to hold one of them.
 */
import { createHash, createPublicKey, randomBytes } from "node:crypto";
import { PortraitError, show } from "../../engine/errors.js";
import type { ImportStore, SftpKeyRow } from "../../store/import-store.js";

const KEY_LINE =
  /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521)\s+([A-Za-z0-9+/]+={0,3})(?:\s+.*)?$/;

/** NIST SP 800-131A's floor for RSA since 2014. */
const MIN_RSA_BITS = 2048;

/** `SHA256:<base64, no padding>` of the key blob, as `ssh-keygen -l` prints it. */
export function fingerprintOf(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/**
 * An OpenSSH public key line → its algorithm and blob; INVALID_VALUE for anything else (private keys included).
 * ssh2 is loaded on first use: a server without SFTP never needs its ≈ 13 MB.
 */
export async function parsePublicKey(line: unknown): Promise<{ algorithm: string; blob: Buffer }> {
  const m = typeof line === "string" ? KEY_LINE.exec(line.trim()) : null;
  const parsed = m ? (await import("ssh2")).default.utils.parseKey(line as string) : null;
  if (!m || !parsed || parsed instanceof Error || parsed.isPrivateKey()) {
    // A private key sent by mistake is not echoed back, not even its first characters.
    if (typeof line === "string" && /PRIVATE KEY-----|^\s*PuTTY-User-Key-File-/.test(line)) {
      throw new PortraitError(
        "INVALID_VALUE",
        "publicKey is a private key; send the public key (the .pub file's line) and keep the private key secret",
        "publicKey",
      );
    }
    throw new PortraitError(
      "INVALID_VALUE",
      `publicKey must be an OpenSSH public key line such as "ssh-ed25519 AAAA… comment", got ${show(typeof line === "string" ? line.slice(0, 40) : line)}`,
      "publicKey",
    );
  }
  const algorithm = m[1] as string;
  if (algorithm === "ssh-rsa") {
    // Keys that anyone could factor with a modest budget are not proof of anything; OpenSSH's own floor is 1024 bits.
    const bits = createPublicKey(parsed.getPublicPEM()).asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new PortraitError(
        "INVALID_VALUE",
        `publicKey is a ${bits}-bit RSA key; RSA keys need at least ${MIN_RSA_BITS} bits ` +
          "(ssh-keygen -t ed25519 makes a shorter, stronger one)",
        "publicKey",
      );
    }
  }
  return { algorithm, blob: parsed.getPublicSSH() };
}

export function sftpKeyView(k: SftpKeyRow) {
  return {
    id: k.id,
    name: k.name,
    algorithm: k.algorithm,
    fingerprint: k.fingerprint,
    createdAt: new Date(k.createdAt).toISOString(),
  };
}

export async function addSftpKey(
  store: ImportStore,
  accountId: string,
  name: unknown,
  publicKey: unknown,
): Promise<SftpKeyRow> {
  if (typeof name !== "string" || name.trim() === "" || name.length > 120) {
    throw new PortraitError("INVALID_VALUE", "name must be a non-empty string of at most 120 characters", "name");
  }
  const { algorithm, blob } = await parsePublicKey(publicKey);
  const fingerprint = fingerprintOf(blob);
  if ((await store.listSftpKeys(accountId)).some((k) => k.fingerprint === fingerprint)) {
    throw new PortraitError("INVALID_VALUE", `this key (${fingerprint}) is already registered`, "publicKey");
  }
  const row: SftpKeyRow = {
    accountId,
    id: randomBytes(12).toString("hex"),
    name: name.trim(),
    algorithm,
    publicKey: blob.toString("base64"),
    fingerprint,
    createdAt: Date.now(),
  };
  await store.insertSftpKey(row);
  return row;
}

export async function removeSftpKey(store: ImportStore, accountId: string, keyId: string): Promise<void> {
  if (!(await store.deleteSftpKey(accountId, keyId))) {
    throw new PortraitError("UNKNOWN_KEY", `SFTP key ${keyId} does not exist`, "id");
  }
}
