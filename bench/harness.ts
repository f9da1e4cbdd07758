import type { RoundTripLog } from '../test/support/round-trips.js';
import { withCpuProfile, type FrameStat } from './profile.js';

/** How long and how hard each variant is measured. */
export interface BenchSettings {
  /** Untimed run of each variant before its first round. */
  warmupMs: number;
  /** Untimed run of a variant just before each of its rounds (rounds of a group take turns, so pools and JIT re-warm). */
  settleMs: number;
  roundMs: number;
  rounds: number;
  /** Scenario 6: operations run for the leak check. */
  memory: { increments: number; transactions: number };
}

export const FULL: BenchSettings = { warmupMs: 500, settleMs: 100, roundMs: 1_000, rounds: 5, memory: { increments: 1_000_000, transactions: 100_000 } };
export const QUICK: BenchSettings = { warmupMs: 30, settleMs: 0, roundMs: 100, rounds: 2, memory: { increments: 10_000, transactions: 1_000 } };

/** What one timed round of one variant did. */
export interface RoundStats {
  /** Operations completed (for a variant with units, the units: increments a batched statement carried). */
  ops: number;
  wallMs: number;
  /** Node CPU time (user + system) of the process(es) running the callers, in µs. */
  cpuUs: number;
  roundTrips: number;
  /** Latency of each operation (possibly a sample of them), ms. */
  latenciesMs: number[];
}

/** Where a round's CPU profile goes, when the bench runs with --profile. */
export interface RoundOptions {
  profileFile?: string;
}

/** One measured thing: a scenario's variant at some number of concurrent callers. */
export interface Variant {
  scenario: string;
  variant: string;
  callers: number;
  /** True when the callers run in worker processes (their CPU is not this process's). */
  remote?: boolean;
  /** Runs the callers for `ms` and reports what they did. */
  round(ms: number, options?: RoundOptions): Promise<RoundStats & { profile?: FrameStat[] }>;
  /** Before the warm-up and before each round (with its settle run): reset state the checks rely on. */
  beforeRound?(): Promise<void>;
  /** After the warm-up (`timed` false) and after each timed round: checks, derived settings. */
  afterRound?(stats: RoundStats, timed: boolean): Promise<void> | void;
  /** What the checks found, shown in the table's note column. */
  note?(): string | undefined;
}

/** One row of the results: a variant's rounds summarised. */
export interface BenchResult {
  scenario: string;
  variant: string;
  concurrency: number;
  /** The median round's throughput. */
  opsPerSec: number;
  minOpsPerSec?: number;
  maxOpsPerSec?: number;
  /** Every round's throughput, in the order run. Rounds of a group interleave, so round i of two variants ran at nearly the same time. */
  rounds?: number[];
  p50Ms: number;
  p99Ms: number;
  roundTripsPerOp: number;
  /** Node CPU time per operation (process.cpuUsage), µs. */
  cpuUsPerOp?: number;
  /** Node CPU time over wall time: 100 is one core kept busy (a single Node process cannot go much past it). */
  cpuPercent?: number;
  /** CPU time of the database server's processes per operation, µs, when the server runs on this machine. */
  dbCpuUsPerOp?: number;
  /** With --rtt: CPU time of the relay process per operation, µs (it runs on this machine too). */
  relayCpuUsPerOp?: number;
  /** Share of the machine's CPU that other processes used during the rounds, %. */
  othersPercent?: number;
  /** The median of the per-round ratios to the baseline's rounds, and their range. 1 for the baseline itself. */
  ratio?: number;
  ratioMin?: number;
  ratioMax?: number;
  baseline?: string;
  note?: string;
  /** With --profile or --layers: Node CPU µs/op split by layer (profile.ts LAYERS), from the profiled rounds. */
  layers?: Record<string, number>;
}

/** Options of localVariant(). */
export interface LocalVariantOptions {
  scenario: string;
  variant: string;
  callers: number;
  op: (caller: number) => Promise<unknown>;
  /** Counts round trips; without one, each operation is one round trip. */
  log?: RoundTripLog;
  /** Units one operation stands for (the ceiling's batched statement carries many increments). Default 1. */
  units?: () => number;
  beforeRound?: Variant['beforeRound'];
  afterRound?: Variant['afterRound'];
  note?: Variant['note'];
}

/** A variant whose callers run in this process. */
export function localVariant(options: LocalVariantOptions): Variant {
  const { op, log, units } = options;
  return {
    scenario: options.scenario,
    variant: options.variant,
    callers: options.callers,
    beforeRound: options.beforeRound,
    afterRound: options.afterRound,
    note: options.note,
    async round(ms, roundOptions = {}) {
      const run = async () => {
        log?.reset();
        const stats = await runCallers(ms, options.callers, op);
        const perOp = units?.() ?? 1;
        return { ...stats, ops: stats.ops * perOp, roundTrips: log ? log.count : stats.ops };
      };
      if (!roundOptions.profileFile) return run();
      const { result, profile } = await withCpuProfile(roundOptions.profileFile, run);
      return { ...result, profile };
    },
  };
}

/** Runs `op` from `callers` concurrent loops until `ms` have passed; counts operations, latency and Node CPU. */
export async function runCallers(ms: number, callers: number, op: (caller: number) => Promise<unknown>): Promise<RoundStats> {
  const latenciesMs: number[] = [];
  const cpu = process.cpuUsage();
  const started = performance.now();
  const deadline = started + ms;
  let ops = 0;
  await Promise.all(
    Array.from({ length: callers }, async (_, caller) => {
      while (performance.now() < deadline) {
        const start = performance.now();
        await op(caller);
        latenciesMs.push(performance.now() - start);
        ops++;
      }
    }),
  );
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  return { ops, wallMs, cpuUs: used.user + used.system, roundTrips: 0, latenciesMs };
}

/** The value at quantile `q` of ascending `sorted` values (0 when empty). */
export function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? 0;
}

/** The median of `values` (the mean of the middle two of an even count; 0 when empty). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

/** At most `max` evenly spaced values of `values`: enough for percentiles, small enough to send between processes. */
export function sample(values: number[], max: number): number[] {
  if (values.length <= max) return values;
  const step = values.length / max;
  return Array.from({ length: max }, (_, i) => values[Math.floor(i * step)]!);
}
