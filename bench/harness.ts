import type { RoundTripLog } from '../test/support/round-trips.js';

/** How long and how hard each variant is measured. */
export interface BenchSettings {
  warmupMs: number;
  roundMs: number;
  rounds: number;
}

export const FULL: BenchSettings = { warmupMs: 400, roundMs: 1_500, rounds: 3 };
export const QUICK: BenchSettings = { warmupMs: 50, roundMs: 150, rounds: 1 };

/** One measured variant of a scenario. */
export interface BenchResult {
  scenario: string;
  variant: string;
  concurrency: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  roundTripsPerOp: number;
  /** The variant's ops/s divided by the baseline's; 1 for the baseline itself. */
  ratio?: number;
  baseline?: string;
  note?: string;
}

/**
 * Runs `op` from `concurrency` callers in a loop: a warm-up, then `rounds` timed rounds. Reports the median
 * round's throughput, latency percentiles over all rounds, and round trips per operation counted on the
 * pg clients (`log`).
 */
export async function measure(
  settings: BenchSettings,
  log: RoundTripLog,
  concurrency: number,
  op: (caller: number) => Promise<unknown>,
): Promise<Pick<BenchResult, 'opsPerSec' | 'p50Ms' | 'p99Ms' | 'roundTripsPerOp'>> {
  await runFor(settings.warmupMs, concurrency, op, []);
  const throughputs: number[] = [];
  const latencies: number[] = [];
  let ops = 0;
  log.reset();
  for (let round = 0; round < settings.rounds; round++) {
    const started = performance.now();
    const done = await runFor(settings.roundMs, concurrency, op, latencies);
    ops += done;
    throughputs.push(done / ((performance.now() - started) / 1000));
  }
  const roundTrips = log.count;
  latencies.sort((a, b) => a - b);
  return {
    opsPerSec: median(throughputs),
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    roundTripsPerOp: roundTrips / ops,
  };
}

async function runFor(ms: number, concurrency: number, op: (caller: number) => Promise<unknown>, latencies: number[]): Promise<number> {
  const deadline = performance.now() + ms;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, caller) => {
      while (performance.now() < deadline) {
        const start = performance.now();
        await op(caller);
        latencies.push(performance.now() - start);
        done++;
      }
    }),
  );
  return done;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

/** Fills in `ratio` against the variant named `baseline` of the same scenario and concurrency. */
export function withRatios(results: BenchResult[], baselineOf: (result: BenchResult) => string | undefined): BenchResult[] {
  return results.map((result) => {
    const baseline = baselineOf(result);
    const base = results.find((r) => r.scenario === result.scenario && r.concurrency === result.concurrency && r.variant === baseline);
    return base ? { ...result, baseline, ratio: result.opsPerSec / base.opsPerSec } : result;
  });
}

/** The results as a fixed-width table. */
export function formatTable(results: BenchResult[]): string {
  const header = ['scenario', 'variant', 'callers', 'ops/s', 'p50 ms', 'p99 ms', 'RT/op', 'ratio', 'note'];
  const rows = results.map((r) => [
    r.scenario,
    r.variant,
    String(r.concurrency),
    r.opsPerSec.toFixed(0),
    r.p50Ms.toFixed(2),
    r.p99Ms.toFixed(2),
    r.roundTripsPerOp.toFixed(2),
    r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x ${r.baseline === r.variant ? '(baseline)' : `vs ${r.baseline}`}`,
    r.note ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
