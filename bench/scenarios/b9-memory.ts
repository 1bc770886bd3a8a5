/**
 * B9: the server's peak RSS under B1 load (VmHWM from /proc/<pid>/status, which also catches spikes between
 * samples), target ≤ 300 MB. Reuses B1's run when B1 ran before it; otherwise runs B1's load itself.
 */
import type { Scenario } from "../lib/scenario.js";
import { runIngestEvents } from "./b1-ingest-events.js";

export const scenario: Scenario = {
  name: "B9",
  title: "server RSS under B1 load",
  unit: "MB",
  target: { kind: "max", value: 300 },
  stores: ["sqlite", "postgres"],
  async run(ctx) {
    const { outcome, memory } = await runIngestEvents(ctx);
    return {
      figure: Math.round(memory.peak.peakMb * 10) / 10,
      baseline: null,
      errors: outcome.errors,
      note:
        `peak VmHWM over B1 set-up + load; largest sampled VmRSS ${Math.round(memory.peak.rssMb)} MB; ` +
        `RSS after set-up, before load ${Math.round(memory.idle.rssMb)} MB`,
    };
  },
};
