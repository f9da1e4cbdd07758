import type { MemoryReport } from './context.js';
import type { BenchResult } from './harness.js';
import { LAYERS } from './profile.js';
import { formatRatio, rate } from './runner.js';
import type { TargetOutcome } from './targets.js';

/** What a run writes to bench/results/*.json (and --compare reads; older files lack the newer fields). */
export interface ResultsFile {
  date: string;
  quick: boolean;
  machine: string;
  server?: string;
  results: BenchResult[];
  targets?: TargetOutcome[];
  memory?: MemoryReport[];
  /** Average share of the machine's CPU other processes used during the timed rounds, %. */
  othersPercent?: number;
  /** --rtt: the round trip the relay added (ms), and the hold it measured each way. */
  rttMs?: number;
  relayMeanHoldMs?: number;
}

/** Rows of cells as a fixed-width table. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** The results table: throughput with the range of its rounds, latency, round trips, CPU, the ratio with its range. */
export function formatResults(results: BenchResult[]): string {
  // The relay's column only with --rtt.
  const relay = results.some((r) => r.relayCpuUsPerOp !== undefined);
  const header = ['scenario', 'variant', 'callers', 'ops/s', 'rounds min-max', 'p50 ms', 'p99 ms', 'RT/op', 'CPU µs/op', 'node CPU', 'db µs/op', ...(relay ? ['relay µs/op'] : []), 'ratio (per-round range)', 'note'];
  return table(
    header,
    results.map((r) => [
      r.scenario,
      r.variant,
      String(r.concurrency),
      r.opsPerSec.toFixed(0),
      r.minOpsPerSec === undefined ? '' : `${r.minOpsPerSec.toFixed(0)}-${r.maxOpsPerSec!.toFixed(0)}`,
      r.p50Ms.toFixed(2),
      r.p99Ms.toFixed(2),
      r.roundTripsPerOp.toFixed(2),
      r.cpuUsPerOp === undefined || !r.opsPerSec ? '' : r.cpuUsPerOp.toFixed(1),
      r.cpuPercent === undefined || !r.opsPerSec ? '' : `${r.cpuPercent.toFixed(0)}%`,
      r.dbCpuUsPerOp === undefined ? '' : r.dbCpuUsPerOp.toFixed(1),
      ...(relay ? [r.relayCpuUsPerOp === undefined ? '' : r.relayCpuUsPerOp.toFixed(1)] : []),
      r.ratio === undefined ? '' : r.variant === r.baseline ? '1.00x (baseline)' : formatRatio(r),
      r.note ?? '',
    ]),
  );
}

/** The leak check: heap and RSS after the first and the last tenth of each long run. */
export function formatMemory(reports: MemoryReport[]): string {
  return table(
    ['variant', 'operations', 'ops/s', 'heap MiB 10% -> 100%', 'RSS MiB 10% -> 100%', 'verdict'],
    reports.map((m) => [
      m.variant,
      m.operations.toLocaleString('en-US'),
      m.opsPerSec.toFixed(0),
      `${m.heapMiB[0]!.toFixed(1)} -> ${m.heapMiB.at(-1)!.toFixed(1)}`,
      `${m.rssMiB[0]!.toFixed(0)} -> ${m.rssMiB.at(-1)!.toFixed(0)}`,
      m.note ?? '',
    ]),
  );
}

/** The targets (issues 16, 25 and 27) and where this run stands, with the round trips per operation of both sides. */
export function formatTargets(targets: TargetOutcome[]): string {
  return table(
    ['target', 'measured (per-round range)', 'RT/op ours vs theirs', 'verdict'],
    targets.map((t) => [t.target, t.measured, t.roundTrips ?? '', t.verdict]),
  );
}

/**
 * Each row of `current` beside the same row of `old`: throughput, change, and whether the change is larger
 * than the rounds' spread (the ranges do not overlap), plus the ratio then and now.
 */
export function formatComparison(old: ResultsFile, current: ResultsFile): string {
  const key = (r: BenchResult) => `${r.scenario}\u0000${r.variant}\u0000${r.concurrency}`;
  const before = new Map(old.results.map((r) => [key(r), r]));
  const rows = current.results.flatMap((now) => {
    const then = before.get(key(now));
    if (!then || !then.opsPerSec || !now.opsPerSec) return [];
    const change = (now.opsPerSec / then.opsPerSec - 1) * 100;
    return [[now.scenario, now.variant, String(now.concurrency), spread(then), spread(now), `${change >= 0 ? '+' : ''}${change.toFixed(1)}%`, verdict(then, now), ratioText(then), ratioText(now)]];
  });
  const unmatched = current.results.length - rows.length;
  return [
    `old: ${old.date}${old.quick ? ' (--quick)' : ''}, ${old.machine}${old.server ? `, ${old.server}` : ''}`,
    `new: ${current.date}${current.quick ? ' (--quick)' : ''}, ${current.machine}${current.server ? `, ${current.server}` : ''}`,
    '',
    table(['scenario', 'variant', 'callers', 'old ops/s (rounds)', 'new ops/s (rounds)', 'change', 'beyond the spread?', 'old ratio', 'new ratio'], rows),
    unmatched ? `\n${unmatched} row(s) of the new run have no counterpart in the old file.` : '',
  ].join('\n');
}

function spread(r: BenchResult): string {
  return r.minOpsPerSec === undefined ? rate(r.opsPerSec) : `${rate(r.opsPerSec)} (${rate(r.minOpsPerSec)}-${rate(r.maxOpsPerSec!)})`;
}

function verdict(then: BenchResult, now: BenchResult): string {
  if (then.minOpsPerSec === undefined || now.minOpsPerSec === undefined) return 'no spread in one file';
  if (now.minOpsPerSec > then.maxOpsPerSec!) return 'faster';
  if (now.maxOpsPerSec! < then.minOpsPerSec) return 'slower';
  return 'within the spread';
}

function ratioText(r: BenchResult): string {
  if (r.ratio === undefined) return '';
  return r.variant === r.baseline ? 'baseline' : `${r.ratio.toFixed(2)}x`;
}

// Short column names for the layer table.
function shortVariant(variant: string): string {
  if (variant.startsWith('raw pg')) return 'raw pg';
  if (variant.includes('hand-written')) return 'hand-written';
  if (variant.startsWith('peer: @nestjs-cls')) return 'nestjs-cls';
  if (variant.startsWith('peer: typeorm-transactional')) return 'typeorm-transactional';
  if (variant.startsWith('@') || variant.startsWith('CounterService') || variant.startsWith('Atomic')) return `ours: ${variant}`;
  return variant;
}

/**
 * Node CPU µs/op split by layer, one table per scenario group that was profiled (--layers, --profile): a row per
 * layer any variant spent at least 0.05 µs/op in, a column per profiled variant, and the total (the CPU µs/op column).
 */
export function formatLayers(results: BenchResult[]): string {
  const groups = new Map<string, BenchResult[]>();
  for (const r of results) {
    if (!r.layers) continue;
    const key = `${r.scenario}, ${r.concurrency} callers`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  return [...groups]
    .map(([group, rows]) => {
      const layers = LAYERS.filter((layer) => rows.some((r) => (r.layers![layer] ?? 0) >= 0.05));
      const body = layers.map((layer) => [layer, ...rows.map((r) => (r.layers![layer] ?? 0).toFixed(1))]);
      body.push(['total (CPU µs/op)', ...rows.map((r) => r.cpuUsPerOp!.toFixed(1))]);
      return `${group}:\n\n${table(['layer, Node CPU µs/op', ...rows.map((r) => shortVariant(r.variant))], body)}`;
    })
    .join('\n\n');
}
