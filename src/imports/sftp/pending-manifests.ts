/**
 * Manifests received and not handled yet, kept on disk so that a process killed with some waiting (for their data
 * file's upload, or behind the account's import in progress) handles them at its next start, in the order they
 * arrived (SEMANTICS §11 SFTP: every manifest gets its import or its refusal). The queue itself lives in memory.
 *
 * One small file per manifest in `<data dir>/sftp/.manifests/<account>/`, outside every account's folder (account ids
 * never start with a dot), named so that names sort in arrival order; it holds the manifest's path.
 */
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";

export interface PendingManifest {
  accountId: string;
  /** The manifest's path inside the account's folder. */
  virtual: string;
  marker: string;
}

export class PendingManifests {
  private counter = 0;

  constructor(private readonly dir: string) {}

  /** Notes a manifest that has just arrived; its marker is removed by `done` once it is handled. */
  async add(accountId: string, virtual: string): Promise<PendingManifest> {
    // Named before the first await: manifests noted one after another keep their order.
    const order = `${String(Date.now()).padStart(15, "0")}-${String(this.counter++).padStart(9, "0")}`;
    const folder = path.join(this.dir, accountId);
    const marker = path.join(folder, `${order}-${process.pid}`);
    await mkdir(folder, { recursive: true });
    await writeFile(marker, virtual);
    return { accountId, virtual, marker };
  }

  async done(pending: PendingManifest): Promise<void> {
    await rm(pending.marker, { force: true });
  }

  /** Every manifest left waiting by an earlier process, oldest first within each account. */
  async left(): Promise<PendingManifest[]> {
    const out: PendingManifest[] = [];
    const accounts = await readdir(this.dir).catch(() => [] as string[]);
    for (const accountId of accounts.sort()) {
      const folder = path.join(this.dir, accountId);
      for (const name of (await readdir(folder).catch(() => [] as string[])).sort()) {
        const marker = path.join(folder, name);
        const virtual = await readFile(marker, "utf8").catch(() => null);
        if (virtual) out.push({ accountId, virtual, marker });
      }
    }
    return out;
  }
}
