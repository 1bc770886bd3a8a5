/**
 * Files being uploaded over SFTP, so that a manifest never imports half a file (SEMANTICS §11 SFTP: a data file,
 * then its manifest). A manifest can finish before its data file does: a second session, or a client that sends
 * both at once. Its import then waits until every write handle on the data file is closed.
 *
 * Whether the last upload of a file completed is kept on disk, as a marker written when a write handle opens and
 * removed when the client closes it: a connection that drops mid-upload (or a server that stops or dies) leaves
 * the marker, and a manifest naming that file is refused instead of importing what arrived. The markers live in
 * `<data dir>/sftp/.uploads/<account>/`, outside every account's folder (account ids never start with a dot), named
 * by a hash of the path so that no folder structure has to be mirrored.
 */
import { createHash } from "node:crypto";
import { access, mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";

interface Writing {
  handles: number;
  /** A handle of this round was closed by a dropped connection: the file stays incomplete. */
  abandoned: boolean;
  settled: Array<() => void>;
}

export class Uploads {
  private readonly writing = new Map<string, Writing>();

  constructor(private readonly markerDir: string) {}

  private key(accountId: string, virtual: string): string {
    return `${accountId}\u0000${virtual}`;
  }

  private marker(accountId: string, virtual: string): string {
    return path.join(this.markerDir, accountId, createHash("sha256").update(virtual).digest("hex"));
  }

  /** A write handle was opened on the file: it is incomplete until closed by the client. */
  async opened(accountId: string, virtual: string): Promise<void> {
    const key = this.key(accountId, virtual);
    const entry = this.writing.get(key) ?? { handles: 0, abandoned: false, settled: [] };
    entry.handles += 1;
    this.writing.set(key, entry);
    const marker = this.marker(accountId, virtual);
    await mkdir(path.dirname(marker), { recursive: true });
    await writeFile(marker, virtual);
  }

  /** `complete`: the client closed the handle; otherwise its connection went away with the handle open. */
  async closed(accountId: string, virtual: string, complete: boolean): Promise<void> {
    const key = this.key(accountId, virtual);
    const entry = this.writing.get(key);
    if (!entry) return;
    entry.handles -= 1;
    if (!complete) entry.abandoned = true;
    if (entry.handles > 0) return;
    this.writing.delete(key);
    try {
      if (!entry.abandoned) await rm(this.marker(accountId, virtual), { force: true });
    } finally {
      for (const resolve of entry.settled) resolve();
    }
  }

  isWriting(accountId: string, virtual: string): boolean {
    return this.writing.has(this.key(accountId, virtual));
  }

  /** Resolves once no write handle is open on the file. */
  settled(accountId: string, virtual: string): Promise<void> {
    const entry = this.writing.get(this.key(accountId, virtual));
    if (!entry) return Promise.resolve();
    return new Promise((resolve) => entry.settled.push(resolve));
  }

  /** The file's last upload did not complete (or is still running). */
  async incomplete(accountId: string, virtual: string): Promise<boolean> {
    try {
      await access(this.marker(accountId, virtual));
      return true;
    } catch {
      return false;
    }
  }

  /** The file was renamed: its state goes with it (what was at `to` is replaced). */
  async moved(accountId: string, from: string, to: string): Promise<void> {
    await rm(this.marker(accountId, to), { force: true });
    await rename(this.marker(accountId, from), this.marker(accountId, to)).catch(() => undefined);
  }

  /** The file was removed: a later upload under its name starts clean. */
  async removed(accountId: string, virtual: string): Promise<void> {
    if (!this.isWriting(accountId, virtual)) await rm(this.marker(accountId, virtual), { force: true });
  }
}
