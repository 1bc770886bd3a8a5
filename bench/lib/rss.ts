/** Memory of another process from /proc/<pid>/status (Linux): VmRSS now, VmHWM the peak since it started. */
import { readFileSync } from "node:fs";

export interface MemorySample {
  /** Resident set size, MB. */
  rssMb: number;
  /** Peak resident set size so far ("high water mark"), MB. */
  peakMb: number;
}

function field(status: string, name: string): number {
  const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
  if (!match) throw new Error(`/proc status has no ${name}`);
  return Number(match[1]) / 1024;
}

export function readMemory(pid: number): MemorySample {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return { rssMb: field(status, "VmRSS"), peakMb: field(status, "VmHWM") };
}

/** Samples a process's RSS every `intervalMs` until stopped; keeps the largest sample and the last VmHWM. */
export class RssSampler {
  private timer: NodeJS.Timeout | null = null;
  maxRssMb = 0;
  peakMb = 0;
  samples = 0;

  constructor(
    private readonly pid: number,
    private readonly intervalMs = 100,
  ) {}

  start(): this {
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  /** Stops sampling; returns the peak (VmHWM read last, which also covers spikes between samples). */
  stop(): MemorySample {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.sample();
    return { rssMb: this.maxRssMb, peakMb: Math.max(this.peakMb, this.maxRssMb) };
  }

  private sample(): void {
    try {
      const { rssMb, peakMb } = readMemory(this.pid);
      this.maxRssMb = Math.max(this.maxRssMb, rssMb);
      this.peakMb = Math.max(this.peakMb, peakMb);
      this.samples++;
    } catch {
      // the process has gone; the last samples stand
    }
  }
}
