import ssh2 from "ssh2";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteStore } from "../../store/sqlite/sqlite-store.js";
import { hostKey, newHostKey } from "./server.js";

const UNREADABLE = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
const stores: SqliteStore[] = [];

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close();
});

describe("the SFTP host key", () => {
  it("is generated again until ssh2 can read it back", () => {
    const made: string[] = [];
    const key = newHostKey(() => {
      const next = made.length < 2 ? UNREADABLE : ssh2.utils.generateKeyPairSync("ed25519").private;
      made.push(next);
      return next;
    });
    expect(made).toHaveLength(3);
    expect(key).toBe(made[2]);
    expect(ssh2.utils.parseKey(key)).not.toBeInstanceOf(Error);
    expect(() => newHostKey(() => UNREADABLE)).toThrow(/could not generate a host key/);
  });

  it("replaces a stored key that cannot be read, which stopped every start, and keeps a readable one", async () => {
    const store = SqliteStore.open(":memory:");
    stores.push(store);
    await store.migrate();
    await store.setMeta("sftp.hostKey", UNREADABLE);
    const replaced = await hostKey(store);
    expect(replaced).not.toBe(UNREADABLE);
    expect(ssh2.utils.parseKey(replaced)).not.toBeInstanceOf(Error);
    expect(await store.getMeta("sftp.hostKey")).toBe(replaced);
    expect(await hostKey(store)).toBe(replaced);
  });
});
