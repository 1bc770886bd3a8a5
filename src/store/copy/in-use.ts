/**
 * Whether another process has the SQLite store open, from the locks it holds (Linux's /proc/locks). SQLite in WAL mode
 * keeps a shared lock on the database file and one on its `-shm` file for as long as a connection is open, idle or
 * not, so a running `portrait serve` (or an `sqlite3` shell, or a second copy) shows there whatever it is doing.
 *
 * Limits: /proc/locks exists on Linux only, and since Linux 4.9 it lists only the locks of processes in the reader's
 * PID namespace, so a server in another container on the same volume is not seen. The copy therefore refuses when it
 * sees a holder and, when it cannot look, says that the server must be stopped (docs/moving-to-postgres.md).
 */
import { existsSync, readFileSync, statSync } from "node:fs";

/** Where a lock is: what /proc/locks prints as `major:minor:inode`. */
interface FileId {
  major: bigint;
  minor: bigint;
  inode: bigint;
}

/** A file's device and inode as /proc/locks names them (glibc's encoding of st_dev). */
function fileId(file: string): FileId {
  const s = statSync(file, { bigint: true });
  const major = ((s.dev >> 8n) & 0xfffn) | ((s.dev >> 32n) & ~0xfffn);
  const minor = (s.dev & 0xffn) | ((s.dev >> 12n) & ~0xffn);
  return { major, minor, inode: s.ino };
}

/** `12: POSIX  ADVISORY  READ 14565 fe:00:5326484 128 128`, or `12: -> POSIX …` for a waiting lock. */
const LOCK_LINE = /^\d+:\s+(?:->\s+)?\S+\s+\S+\s+\S+\s+(-?\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/i;

/**
 * The ids of the processes other than `self` that hold or wait for a lock on one of `files` (those that exist), or
 * null when this system has no /proc/locks to read.
 */
export function processesHoldingLocks(files: readonly string[], self: number = process.pid): number[] | null {
  let table: string;
  try {
    table = readFileSync("/proc/locks", "utf8");
  } catch {
    return null;
  }
  const ids = files.filter((f) => existsSync(f)).map(fileId);
  const holders = new Set<number>();
  for (const line of table.split("\n")) {
    const m = LOCK_LINE.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === self) continue;
    const [major, minor, inode] = [BigInt(`0x${m[2]}`), BigInt(`0x${m[3]}`), BigInt(m[4] as string)];
    if (ids.some((id) => id.major === major && id.minor === minor && id.inode === inode)) holders.add(pid);
  }
  return [...holders].sort((a, b) => a - b);
}
