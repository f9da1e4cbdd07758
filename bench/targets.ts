import type { MemoryReport } from './context.js';
import type { BenchResult } from './harness.js';
import { pairedRatio } from './runner.js';
import { CEILING, OURS_INCREMENT, RAW_UPSERT, SEEDS_APPROACH } from './scenarios/counters.js';
import { crossProcessVariant } from './scenarios/cross-process.js';
import { ATOMIC, NAIVE_GET_OR_CREATE, SCENARIO_EXISTS } from './scenarios/get-or-create.js';
import { OUTBOX_DELIVERY, OUTBOX_LATENCY, OUTBOX_SCENARIO } from './scenarios/outbox.js';
import { RAW_LOCKED } from './scenarios/advisory-lock.js';
import { JOINED_REPOSITORY, PLAIN_REPOSITORY, SCENARIO_REPOSITORY } from './scenarios/repository-calls.js';
import { CLS_PEER, HAND_WRITTEN, OURS, RAW_TRANSACTION, TYPEORM_TRANSACTIONAL_PEER } from './scenarios/transactions.js';
import { TRANSACTION_KINDS } from './scenarios/transaction-work.js';

/** One target and where this run stands against it. */
export interface TargetOutcome {
  target: string;
  measured: string;
  verdict: string;
}

type Row = [scenario: string, variant: string, callers: number];

interface RatioTarget {
  target: string;
  /** Ours, and what it is compared with: the ratio of the two rows, round by round. */
  ours: Row;
  versus: Row;
  /** At least this ratio; none for a comparison shown without a target. */
  goal?: number;
}

const COUNTERS = '3. hot-key counter';

const RATIO_TARGETS: RatioTarget[] = [
  { target: 'transaction: @Transactional() >= 0.95x raw pg BEGIN/COMMIT', ours: [TRANSACTION_KINDS.plain, OURS.plain, 8], versus: [TRANSACTION_KINDS.plain, RAW_TRANSACTION, 8], goal: 0.95 },
  { target: 'transaction: @Transactional() >= 0.95x a hand-written query runner', ours: [TRANSACTION_KINDS.plain, OURS.plain, 8], versus: [TRANSACTION_KINDS.plain, HAND_WRITTEN, 8], goal: 0.95 },
  { target: 'counter: increment, 1 caller >= 0.9x raw pg upsert', ours: [COUNTERS, OURS_INCREMENT, 1], versus: [COUNTERS, RAW_UPSERT, 1], goal: 0.9 },
  { target: 'getOrCreate of an existing row >= 0.9x naive findOne', ours: [SCENARIO_EXISTS, ATOMIC, 8], versus: [SCENARIO_EXISTS, NAIVE_GET_OR_CREATE, 8], goal: 0.9 },
  { target: 'hot key, 64 callers >= 0.8x the coalescing ceiling', ours: [COUNTERS, OURS_INCREMENT, 64], versus: [COUNTERS, CEILING, 64], goal: 0.8 },
  { target: 'hot key, 16 callers >= 3x the seeds\' lock + read + update', ours: [COUNTERS, OURS_INCREMENT, 16], versus: [COUNTERS, SEEDS_APPROACH, 16], goal: 3 },
  { target: 'repository call outside a transaction, DataSource joined >= 0.95x plain TypeORM', ours: [SCENARIO_REPOSITORY, JOINED_REPOSITORY, 8], versus: [SCENARIO_REPOSITORY, PLAIN_REPOSITORY, 8], goal: 0.95 },
  { target: '@AdvisoryLock + @Transactional >= 0.9x raw pg', ours: ['2. advisory lock + transaction', '@AdvisoryLock + @Transactional', 8], versus: ['2. advisory lock + transaction', RAW_LOCKED, 8], goal: 0.9 },
  ...[CLS_PEER, TYPEORM_TRANSACTIONAL_PEER].flatMap((peer): RatioTarget[] => [
    { target: `SERIALIZABLE + read only >= 1.15x ${peer.replace('peer: ', '')}`, ours: [TRANSACTION_KINDS.strict, OURS.strict, 8], versus: [TRANSACTION_KINDS.strict, peer, 8], goal: 1.15 },
    { target: `advisory lock in the transaction >= 1.3x ${peer.replace('peer: ', '')}`, ours: [TRANSACTION_KINDS.locked, OURS.locked, 8], versus: [TRANSACTION_KINDS.locked, peer, 8], goal: 1.3 },
  ]),
  ...[4, 16].map(
    (shards): RatioTarget => ({
      target: `hot key at 4 processes: shards: ${shards} vs one row (no target)`,
      ours: ['5. hot key across processes', crossProcessVariant(4, shards), 256],
      versus: ['5. hot key across processes', crossProcessVariant(4), 256],
    }),
  ),
];

/** Every target this run has the rows for, and the leak checks. */
export function evaluateTargets(results: BenchResult[], memory: MemoryReport[]): TargetOutcome[] {
  const find = ([scenario, variant, callers]: Row) => results.find((r) => r.scenario === scenario && r.variant === variant && r.concurrency === callers && r.opsPerSec > 0);
  const outcomes = RATIO_TARGETS.flatMap(({ target, ours, versus, goal }): TargetOutcome[] => {
    const a = find(ours);
    const b = find(versus);
    const paired = a && b && pairedRatio(a, b);
    if (!paired) return [];
    const range = Number.isFinite(paired.min) ? ` (${paired.min.toFixed(2)}-${paired.max.toFixed(2)})` : '';
    const measured = `${paired.ratio.toFixed(2)}x${range}`;
    if (goal === undefined) return [{ target, measured, verdict: '' }];
    const verdict = paired.ratio < goal ? 'missed' : paired.min < goal ? 'met by the median; the range crosses it' : 'met in every round';
    return [{ target, measured, verdict }];
  });
  outcomes.push(...outboxTargets(results));
  for (const report of memory) {
    outcomes.push({ target: `memory: no growth after ${report.operations.toLocaleString('en-US')} x ${report.variant}`, measured: report.note ?? '', verdict: report.note?.startsWith('no growth') ? 'met' : 'missed' });
  }
  return outcomes;
}

// Issue 27's targets for this 2-core machine: absolute figures, not ratios.
function outboxTargets(results: BenchResult[]): TargetOutcome[] {
  const find = (variant: string) => results.find((r) => r.scenario === OUTBOX_SCENARIO && r.variant === variant);
  const outcomes: TargetOutcome[] = [];
  const one = find(OUTBOX_DELIVERY(1));
  if (one) {
    const range = one.minOpsPerSec === undefined ? '' : ` (rounds ${one.minOpsPerSec.toFixed(0)}-${one.maxOpsPerSec!.toFixed(0)})`;
    outcomes.push({ target: 'outbox: >= 3,000 events/s delivered with 1 replica', measured: `${one.opsPerSec.toFixed(0)} events/s${range}`, verdict: one.opsPerSec >= 3_000 ? 'met' : 'missed' });
  }
  const four = find(OUTBOX_DELIVERY(4));
  if (four) outcomes.push({ target: 'outbox: events/s delivered with 4 replicas (no target)', measured: `${four.opsPerSec.toFixed(0)} events/s`, verdict: '' });
  const latency = find(OUTBOX_LATENCY);
  if (latency) {
    outcomes.push({
      target: 'outbox: p50 commit-to-handler <= 10 ms with NOTIFY',
      measured: `p50 ${latency.p50Ms.toFixed(2)} ms, p99 ${latency.p99Ms.toFixed(2)} ms`,
      verdict: latency.p50Ms <= 10 ? 'met' : 'missed',
    });
  }
  return outcomes;
}
