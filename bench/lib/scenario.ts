/** What a benchmark scenario is, what it is given, and what it hands back (PERFORMANCE.md). */
import type { Scope } from "./scope.js";

export type StoreKind = "sqlite" | "postgres";
export type Mode = "quick" | "full";

/** How long load runs last: PERFORMANCE.md's timings in `--full`, shorter ones in quick mode. */
export interface Timing {
  /** Load before the measured runs, discarded. */
  warmupSeconds: number;
  /** Length of one measured run. */
  runSeconds: number;
  /** Measured runs; the figure is their median. */
  runs: number;
  /** Length of one raw-store baseline measurement (the baseline is the median over `runs` of them). */
  baselineSeconds: number;
}

export const TIMINGS: Record<Mode, Timing> = {
  quick: { warmupSeconds: 2, runSeconds: 5, runs: 1, baselineSeconds: 1.5 },
  full: { warmupSeconds: 10, runSeconds: 30, runs: 3, baselineSeconds: 5 },
};

export interface Target {
  /** `min`: the figure must be at least `value` (throughput); `max`: at most (latency, memory). */
  kind: "min" | "max";
  value: number;
  /** Where a raw baseline exists and the spec sets one: the least acceptable figure / baseline. */
  minRatio?: number;
}

export interface BenchContext {
  mode: Mode;
  store: StoreKind;
  timing: Timing;
  /** Cleanups of this scenario (servers, temp dirs, stores); run by the runner even when the scenario throws. */
  scope: Scope;
  /** Values one scenario leaves for another in the same run (B9 reads the RSS B1 measured). */
  memo: Map<string, unknown>;
  /** Directory for `node --cpu-prof` output of the servers, or null when not profiling. */
  cpuProfileDir: string | null;
  log(message: string): void;
}

/** One row of the results. */
export interface Measurement {
  figure: number;
  /** The raw-store (or bare-HTTP) rate measured in this run; null where the scenario has none. */
  baseline: number | null;
  /** Unit of `baseline` when it differs from the figure's (B7: a latency figure against a raw rate). */
  baselineUnit?: string;
  /**
   * figure / baseline unless given: B5 and B7 compare their HTTP request rate with the raw rate, because their
   * figure is a latency.
   */
  ratio?: number | null;
  /** Failed requests (connection errors, timeouts, non-2xx) and failed records; any error fails the row. */
  errors: number;
  /** The figure of every measured run, in order. */
  runs?: number[];
  note?: string;
}

export interface ExtraRow extends Measurement {
  scenario: string;
  unit: string;
  target: Target;
}

export interface Outcome extends Measurement {
  /** Further rows the same measurement produced (B5's p99). */
  extra?: ExtraRow[];
}

export interface Scenario {
  /** `B1`…`B9`: the row of PERFORMANCE.md's table. */
  name: string;
  title: string;
  unit: string;
  target: Target;
  /** Where PERFORMANCE.md sets another target on a store (B8: B1 and B6 on PostgreSQL). */
  targetOn?: Partial<Record<StoreKind, Target>>;
  /** The stores this scenario runs on; others skip it. */
  stores: StoreKind[];
  run(ctx: BenchContext): Promise<Outcome>;
}

/** The target a scenario is judged by on `store`. */
export function targetFor(scenario: Scenario, store: StoreKind): Target {
  return scenario.targetOn?.[store] ?? scenario.target;
}

/** The median of a non-empty list (the mean of the middle two for an even length). */
export function median(values: number[]): number {
  if (values.length === 0) throw new Error("median of nothing");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
