import { join } from 'node:path';
import { median, percentile, type BenchResult, type BenchSettings, type RoundStats, type Variant } from './harness.js';
import type { MachineCpu } from './machine-cpu.js';
import { formatProfile, layerCosts, mergeFrames, type FrameStat } from './profile.js';

/** What to run and how: the command line's filters and modes. */
export interface RunnerOptions {
  settings: BenchSettings;
  /** --variant=a,b: only variants whose name contains one of these (case-insensitive); each group's baseline still runs. */
  variants?: string[];
  /** --callers=1,64: only groups with these many callers. */
  callers?: number[];
  /** --profile: a V8 CPU profile of every timed round of the selected variants. */
  profile: boolean;
  cpu: MachineCpu;
}

interface Measured {
  variant: Variant;
  rounds: RoundStats[];
  dbUs: number[];
  relayUs: number[];
  othersPercent: number[];
  profile: FrameStat[];
}

/**
 * Measures groups of variants (one scenario at one number of callers) and prints progress as it goes. The
 * variants of a group take turns: round 1 of each, then round 2 of each (starting one further along every
 * time), so a slow spell of the shared machine hits them all alike, and round i of a variant and of its
 * baseline make a fair pair: the ratio's spread is the range of those per-round ratios.
 */
export class BenchRunner {
  readonly results: BenchResult[] = [];
  private readonly started = performance.now();

  constructor(private readonly options: RunnerOptions) {}

  /** Prints a progress line (stderr, so the table on stdout stays clean), stamped with the time elapsed. */
  progress(line: string): void {
    const s = Math.round((performance.now() - this.started) / 1000);
    process.stderr.write(`[${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}] ${line}\n`);
  }

  /** True when the command line's --callers filter keeps groups of `callers`. */
  wantsCallers(callers: number): boolean {
    return !this.options.callers || this.options.callers.includes(callers);
  }

  /** True when the command line's --variant filter keeps `variant` (every variant when there is none). */
  wantsVariant(variant: string): boolean {
    return !this.options.variants || this.options.variants.some((part) => variant.toLowerCase().includes(part.toLowerCase()));
  }

  /** Adds a row for a variant that could not run, saying why (a peer that cannot express an option, a failed start). */
  unavailable(scenario: string, variant: string, callers: number, reason: string): void {
    if (!this.wantsCallers(callers) || !this.wantsVariant(variant)) return;
    this.progress(`   ${variant}: not measured, ${reason}`);
    this.results.push({ scenario, variant, concurrency: callers, opsPerSec: 0, p50Ms: 0, p99Ms: 0, roundTripsPerOp: 0, note: reason });
  }

  /** Measures `variants` (one scenario, usually at one caller count) against the one named `baseline`. */
  async group(variants: Variant[], baseline: string): Promise<BenchResult[]> {
    const { settings } = this.options;
    const first = variants[0];
    if (!first || !this.wantsCallers(first.callers)) return [];
    const chosen = variants.filter((v) => v.variant === baseline || this.wantsVariant(v.variant));
    if (!chosen.some((v) => v.variant !== baseline || this.wantsVariant(baseline))) return [];
    const perVariantMs = settings.warmupMs + settings.rounds * (settings.settleMs + settings.roundMs);
    const callers = [...new Set(chosen.map((v) => v.callers))];
    this.progress(
      `${first.scenario}, ${callers.join('/')} caller${callers.join() === '1' ? '' : 's'}: ${chosen.length} variants x ${settings.rounds} rounds, about ${Math.ceil((chosen.length * perVariantMs) / 1000)} s`,
    );
    this.progress(`   ${chosen.map((v, i) => `(${i + 1}) ${v.variant}`).join('  ')}`);
    const measured: Measured[] = chosen.map((variant) => ({ variant, rounds: [], dbUs: [], relayUs: [], othersPercent: [], profile: [] }));

    for (const { variant } of measured) {
      await variant.beforeRound?.();
      await variant.afterRound?.(await variant.round(settings.warmupMs), false);
    }
    for (let round = 0; round < settings.rounds; round++) {
      for (let turn = 0; turn < measured.length; turn++) {
        await this.measureRound(measured[(round + turn) % measured.length]!, round);
      }
      const rates = measured.map((m, i) => `(${i + 1}) ${rate(opsPerSec(m.rounds[round]!))}`).join('  ');
      const others = measured.map((m) => m.othersPercent[round]).filter((p): p is number => p !== undefined);
      this.progress(`   round ${round + 1}/${settings.rounds}: ${rates} ops/s${others.length ? `  (other processes: ${Math.round(Math.max(...others))}% of the machine)` : ''}`);
    }

    const results = withRatios(measured.map(summarise), baseline);
    for (const [i, result] of results.entries()) {
      if (measured[i]!.profile.length) result.layers = layerCosts(measured[i]!.profile, result.cpuUsPerOp!);
      const ratio = result.ratio === undefined ? '' : result.variant === baseline ? '  baseline' : `  ${formatRatio(result)}`;
      this.progress(`   (${i + 1}) ${rate(result.opsPerSec)} ops/s (${rate(result.minOpsPerSec!)}-${rate(result.maxOpsPerSec!)}), ${result.cpuUsPerOp!.toFixed(1)} µs CPU/op${ratio}  ${result.variant}${result.note ? `: ${result.note}` : ''}`);
      const profile = measured[i]!.profile;
      if (profile.length) this.progress(`   CPU profile of (${i + 1}), every timed round (files in .build/profiles/):\n${formatProfile(profile)}`);
    }
    this.results.push(...results);
    return results;
  }

  private async measureRound(measured: Measured, round: number): Promise<void> {
    const { settings, cpu, profile } = this.options;
    const { variant } = measured;
    await variant.beforeRound?.();
    if (settings.settleMs > 0) await variant.round(settings.settleMs);
    const profileFile = profile && this.wantsVariant(variant.variant) ? join(process.cwd(), '.build', 'profiles', `${slug(variant)}.round${round + 1}.cpuprofile`) : undefined;
    const mark = await cpu.mark();
    const own = process.cpuUsage();
    const stats = await variant.round(settings.roundMs, { profileFile });
    const ownUsed = process.cpuUsage(own);
    const spent = await cpu.since(mark);
    await variant.afterRound?.(stats, true);
    measured.rounds.push(stats);
    if (spent.dbUs !== undefined) measured.dbUs.push(spent.dbUs);
    if (spent.relayUs !== undefined) measured.relayUs.push(spent.relayUs);
    if (spent.machineBusyUs !== undefined && spent.machineTotalUs) {
      const ours = ownUsed.user + ownUsed.system + (variant.remote ? stats.cpuUs : 0) + (spent.dbUs ?? 0) + (spent.relayUs ?? 0);
      measured.othersPercent.push(Math.max(0, ((spent.machineBusyUs - ours) / spent.machineTotalUs) * 100));
    }
    if (stats.profile) measured.profile = mergeFrames([...measured.profile, ...stats.profile]);
  }
}

function summarise({ variant, rounds, dbUs, relayUs, othersPercent }: Measured): BenchResult {
  const ops = rounds.reduce((sum, r) => sum + r.ops, 0);
  const cpuUs = rounds.reduce((sum, r) => sum + r.cpuUs, 0);
  const wallUs = rounds.reduce((sum, r) => sum + r.wallMs, 0) * 1000;
  const latencies = rounds.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
  const perRound = rounds.map(opsPerSec);
  return {
    scenario: variant.scenario,
    variant: variant.variant,
    concurrency: variant.callers,
    opsPerSec: median(perRound),
    minOpsPerSec: Math.min(...perRound),
    maxOpsPerSec: Math.max(...perRound),
    rounds: perRound,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    roundTripsPerOp: ops ? rounds.reduce((sum, r) => sum + r.roundTrips, 0) / ops : 0,
    cpuUsPerOp: ops ? cpuUs / ops : 0,
    cpuPercent: wallUs ? (cpuUs / wallUs) * 100 : 0,
    dbCpuUsPerOp: dbUs.length === rounds.length && ops ? dbUs.reduce((a, b) => a + b, 0) / ops : undefined,
    relayCpuUsPerOp: relayUs.length === rounds.length && ops ? relayUs.reduce((a, b) => a + b, 0) / ops : undefined,
    othersPercent: othersPercent.length ? othersPercent.reduce((a, b) => a + b, 0) / othersPercent.length : undefined,
    note: variant.note?.(),
  };
}

/** Per-round ratios of `result` to `base` (round i with round i): their median and range. */
export function pairedRatio(result: BenchResult, base: BenchResult): { ratio: number; min: number; max: number } | undefined {
  const a = result.rounds;
  const b = base.rounds;
  if (!a?.length || !b?.length || a.length !== b.length || b.some((x) => x === 0)) {
    return base.opsPerSec ? { ratio: result.opsPerSec / base.opsPerSec, min: NaN, max: NaN } : undefined;
  }
  const ratios = a.map((x, i) => x / b[i]!);
  return { ratio: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
}

function withRatios(results: BenchResult[], baseline: string): BenchResult[] {
  const base = results.find((r) => r.variant === baseline);
  if (!base) return results;
  return results.map((result) => {
    const paired = pairedRatio(result, base);
    return paired ? { ...result, baseline, ratio: paired.ratio, ratioMin: paired.min, ratioMax: paired.max } : result;
  });
}

/** `1.95x (1.80-2.10) vs baseline`: the ratio with the range of its per-round ratios. */
export function formatRatio(result: BenchResult): string {
  if (result.ratio === undefined) return '';
  const spread = Number.isFinite(result.ratioMin) ? ` (${result.ratioMin!.toFixed(2)}-${result.ratioMax!.toFixed(2)})` : '';
  return `${result.ratio.toFixed(2)}x${spread} vs ${result.baseline}`;
}

function opsPerSec(stats: RoundStats): number {
  return stats.wallMs ? stats.ops / (stats.wallMs / 1000) : 0;
}

/** 143372 as "143k", 2787 as "2.79k". */
export function rate(value: number): string {
  if (value >= 100_000) return `${Math.round(value / 1000)}k`;
  if (value >= 10_000) return `${(value / 1000).toFixed(1)}k`;
  if (value >= 1_000) return `${(value / 1000).toFixed(2)}k`;
  return value.toFixed(0);
}

function slug(variant: Variant): string {
  return `${variant.scenario}-${variant.variant}-${variant.callers}`.replace(/[^A-Za-z0-9]+/g, '-').replace(/^-|-$/g, '');
}
