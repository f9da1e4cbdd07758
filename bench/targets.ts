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
  /** Round trips per operation of ours and of what it is compared with, so the reader sees why. */
  roundTrips?: string;
}

type Row = [scenario: string, variant: string, callers: number];

interface RatioTarget {
  target: string;
  /** Ours, and what it is compared with: the ratio of the two rows, round by round. */
  ours: Row;
  versus: Row;
  /** At least this ratio; none for a comparison shown without a target. */
  goal?: number;
  /** Compare Node CPU µs/op instead of throughput: ours at most the other's. */
  cpu?: boolean;
}

const COUNTERS = '3. hot-key counter';
const PEERS = [CLS_PEER, TYPEORM_TRANSACTIONAL_PEER];
const peerName = (peer: string) => peer.replace('peer: ', '');
const plain = (variant: string): Row => [TRANSACTION_KINDS.plain, variant, 8];
const locked = (variant: string): Row => [TRANSACTION_KINDS.locked, variant, 8];
const strict = (variant: string): Row => [TRANSACTION_KINDS.strict, variant, 8];

// Issue 25's targets on localhost (and issue 16's where 25 did not replace them).
const LOCAL_TARGETS: RatioTarget[] = [
  { target: '@Transactional() >= 1.0x a hand-written query runner', ours: plain(OURS.plain), versus: plain(HAND_WRITTEN), goal: 1 },
  { target: '@Transactional() >= 0.95x raw pg BEGIN/COMMIT', ours: plain(OURS.plain), versus: plain(RAW_TRANSACTION), goal: 0.95 },
  { target: '@Transactional(): CPU µs/op <= hand-written', ours: plain(OURS.plain), versus: plain(HAND_WRITTEN), cpu: true },
  { target: '@AdvisoryLock + @Transactional >= 1.0x hand-written', ours: locked(OURS.locked), versus: locked(HAND_WRITTEN), goal: 1 },
  ...PEERS.map((peer): RatioTarget => ({ target: `@AdvisoryLock + @Transactional >= 1.1x ${peerName(peer)}`, ours: locked(OURS.locked), versus: locked(peer), goal: 1.1 })),
  { target: '@AdvisoryLock + @Transactional: CPU µs/op <= hand-written', ours: locked(OURS.locked), versus: locked(HAND_WRITTEN), cpu: true },
  ...PEERS.map((peer): RatioTarget => ({ target: `SERIALIZABLE + read only >= 1.15x ${peerName(peer)}`, ours: strict(OURS.strict), versus: strict(peer), goal: 1.15 })),
  { target: 'hot key, 64 callers >= 0.8x the coalescing ceiling', ours: [COUNTERS, OURS_INCREMENT, 64], versus: [COUNTERS, CEILING, 64], goal: 0.8 },
  { target: 'counter: increment, 1 caller >= 0.95x raw pg upsert', ours: [COUNTERS, OURS_INCREMENT, 1], versus: [COUNTERS, RAW_UPSERT, 1], goal: 0.95 },
  { target: 'getOrCreate of an existing row >= 0.9x naive findOne', ours: [SCENARIO_EXISTS, ATOMIC, 8], versus: [SCENARIO_EXISTS, NAIVE_GET_OR_CREATE, 8], goal: 0.9 },
  { target: 'hot key, 16 callers >= 3x the seeds\' lock + read + update', ours: [COUNTERS, OURS_INCREMENT, 16], versus: [COUNTERS, SEEDS_APPROACH, 16], goal: 3 },
  { target: 'repository call outside a transaction, DataSource joined >= 0.95x plain TypeORM', ours: [SCENARIO_REPOSITORY, JOINED_REPOSITORY, 8], versus: [SCENARIO_REPOSITORY, PLAIN_REPOSITORY, 8], goal: 0.95 },
  { target: '@AdvisoryLock + @Transactional, one write >= 0.9x raw pg', ours: ['2. advisory lock + transaction', '@AdvisoryLock + @Transactional', 8], versus: ['2. advisory lock + transaction', RAW_LOCKED, 8], goal: 0.9 },
  ...[4, 16].map(
    (shards): RatioTarget => ({
      target: `hot key at 4 processes: shards: ${shards} vs one row (no target)`,
      ours: ['5. hot key across processes', crossProcessVariant(4, shards), 256],
      versus: ['5. hot key across processes', crossProcessVariant(4), 256],
    }),
  ),
];

// Issue 25's targets with a round trip of 0.5 ms (--rtt 0.5), and the localhost comparisons shown without one.
const NETWORK_TARGETS: RatioTarget[] = [
  ...PEERS.flatMap((peer): RatioTarget[] => [
    { target: `SERIALIZABLE + read only >= 1.15x ${peerName(peer)}`, ours: strict(OURS.strict), versus: strict(peer), goal: 1.15 },
    { target: `@AdvisoryLock + @Transactional >= 1.15x ${peerName(peer)}`, ours: locked(OURS.locked), versus: locked(peer), goal: 1.15 },
  ]),
  { target: '@Transactional() >= 0.97x raw pg BEGIN/COMMIT', ours: plain(OURS.plain), versus: plain(RAW_TRANSACTION), goal: 0.97 },
  { target: '@Transactional() vs a hand-written query runner (no target)', ours: plain(OURS.plain), versus: plain(HAND_WRITTEN) },
  { target: '@AdvisoryLock + @Transactional vs hand-written (no target)', ours: locked(OURS.locked), versus: locked(HAND_WRITTEN) },
  { target: 'SERIALIZABLE + read only vs hand-written (no target)', ours: strict(OURS.strict), versus: strict(HAND_WRITTEN) },
  { target: 'hot key, 64 callers vs the coalescing ceiling (no target)', ours: [COUNTERS, OURS_INCREMENT, 64], versus: [COUNTERS, CEILING, 64] },
  { target: 'counter: increment, 1 caller vs raw pg upsert (no target)', ours: [COUNTERS, OURS_INCREMENT, 1], versus: [COUNTERS, RAW_UPSERT, 1] },
];

/** Every target this run has the rows for, and the leak checks. `rttMs`: the round trip --rtt added (the network profile's targets). */
export function evaluateTargets(results: BenchResult[], memory: MemoryReport[], rttMs?: number): TargetOutcome[] {
  const find = ([scenario, variant, callers]: Row) => results.find((r) => r.scenario === scenario && r.variant === variant && r.concurrency === callers && r.opsPerSec > 0);
  const outcomes = (rttMs ? NETWORK_TARGETS : LOCAL_TARGETS).flatMap(({ target, ours, versus, goal, cpu }): TargetOutcome[] => {
    const a = find(ours);
    const b = find(versus);
    if (!a || !b) return [];
    const roundTrips = `${a.roundTripsPerOp.toFixed(2)} vs ${b.roundTripsPerOp.toFixed(2)}`;
    if (cpu) {
      const measured = `${a.cpuUsPerOp!.toFixed(1)} vs ${b.cpuUsPerOp!.toFixed(1)} µs/op (${(a.cpuUsPerOp! / b.cpuUsPerOp!).toFixed(2)}x)`;
      return [{ target, measured, verdict: a.cpuUsPerOp! <= b.cpuUsPerOp! ? 'met' : 'missed', roundTrips }];
    }
    const paired = pairedRatio(a, b);
    if (!paired) return [];
    const range = Number.isFinite(paired.min) ? ` (${paired.min.toFixed(2)}-${paired.max.toFixed(2)})` : '';
    const measured = `${paired.ratio.toFixed(2)}x${range}`;
    if (goal === undefined) return [{ target, measured, verdict: '', roundTrips }];
    const verdict = paired.ratio < goal ? 'missed' : paired.min < goal ? 'met by the median; the range crosses it' : 'met in every round';
    return [{ target, measured, verdict, roundTrips }];
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
