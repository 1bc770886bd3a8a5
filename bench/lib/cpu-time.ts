/**
 * CPU time of other processes from /proc (Linux), so that a run can say what each unit of work cost the server and,
 * on PostgreSQL, the database. On this shared machine throughput moves by a third from hour to hour; CPU per unit
 * moves much less, which makes it the figure to compare in an A/B (docs/performance.md).
 */
import { readdirSync, readFileSync } from "node:fs";

/** /proc reports times in clock ticks; Linux's USER_HZ is 100 on every architecture Node runs on. */
const MS_PER_TICK = 10;

/** utime + stime of one process, ms; null once it has gone. */
export function processCpuMs(pid: number): number | null {
  try {
    return cpuOf(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return null;
  }
}

/** utime + stime of each running `postgres` process (the server's backends and helpers), ms, by pid. */
export function postgresCpuMs(): Map<number, number> {
  const byPid = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (stat.includes("(postgres)")) byPid.set(Number(entry), cpuOf(stat));
    } catch {
      // gone between the listing and the read
    }
  }
  return byPid;
}

/**
 * The CPU `postgres` processes used since `before` (a postgresCpuMs snapshot), ms: per process, so that one that
 * ended meanwhile (a pool closing a connection) takes nothing away; what it used before ending is not counted.
 */
export function postgresCpuSince(before: Map<number, number>): number {
  let total = 0;
  for (const [pid, ms] of postgresCpuMs()) total += Math.max(0, ms - (before.get(pid) ?? 0));
  return total;
}

function cpuOf(stat: string): number {
  // The command name may hold spaces and parentheses: the fields start after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) * MS_PER_TICK;
}
