import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parsePublicKey } from "./keys.js";

/** An OpenSSH `ssh-rsa` public key line of `bits` bits: string "ssh-rsa", mpint e, mpint n (RFC 4253 §6.6). */
function rsaKeyLine(bits: number): string {
  const jwk = generateKeyPairSync("rsa", { modulusLength: bits }).publicKey.export({ format: "jwk" });
  const withLength = (bytes: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    return Buffer.concat([length, bytes]);
  };
  const mpint = (b64url: string) => {
    const raw = Buffer.from(b64url, "base64url");
    return withLength(raw[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), raw]) : raw);
  };
  const blob = Buffer.concat([withLength(Buffer.from("ssh-rsa")), mpint(jwk.e!), mpint(jwk.n!)]);
  return `ssh-rsa ${blob.toString("base64")} test@host`;
}

describe("SFTP public keys", () => {
  it("refuses RSA keys under 2048 bits, saying how long the key is", async () => {
    await expect(parsePublicKey(rsaKeyLine(1024))).rejects.toMatchObject({
      code: "INVALID_VALUE",
      field: "publicKey",
      message: expect.stringContaining("1024-bit RSA key"),
    });
  });

  it("takes RSA keys of 2048 bits and more", async () => {
    const parsed = await parsePublicKey(rsaKeyLine(2048));
    expect(parsed.algorithm).toBe("ssh-rsa");
    expect(parsed.blob.length).toBeGreaterThan(256);
  });
});
