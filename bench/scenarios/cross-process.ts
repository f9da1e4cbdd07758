import pg from 'pg';
import { SHARD_SEPARATOR } from '../../lib/counters/counter-shards.js';
import type { BenchContext } from '../context.js';
import type { RoundStats, Variant } from '../harness.js';
import { BenchWorker, remoteVariant } from '../remote.js';
import { pairedRatio } from '../runner.js';
import { hotKey } from './cross-process-key.js';

const SCENARIO = '5. hot key across processes';
const CALLERS_EACH = 64;
const PROCESS_COUNTS = [1, 2, 4];
const MAX_PROCESSES = 4;
const SHARDED = [4, 16];

/** The name of the variant with `processes` processes on the key spread over `shards` rows. */
export function crossProcessVariant(processes: number, shards = 1): string {
  return `${processes} process${processes === 1 ? '' : 'es'} x ${CALLERS_EACH} callers${shards > 1 ? `, shards: ${shards}` : ''}`;
}

/**
 * Checks a round across processes: every value each process got, against the rows of the key. Each row
 * counts on its own, so the values handed out must be exactly 1..v for each row's final value v, none
 * missing or repeated (for an unsharded key: exactly 1..total), and the rows must add up to the increments.
 */
class CrossProcessCheck {
  private checked = 0;
  private failures: string[] = [];

  constructor(
    private readonly pool: pg.Pool,
    private readonly workers: BenchWorker[],
    private readonly key: string,
    private readonly shards: number,
  ) {}

  readonly beforeRound = async (): Promise<void> => {
    await this.pool.query(`DELETE FROM txlock_counters WHERE "key" = $1 OR left("key", length($1) + 1) = $1 || $2`, [this.key, SHARD_SEPARATOR]);
    await Promise.all(this.workers.map((w) => w.call('takeValues')));
  };

  readonly afterRound = async (_stats: RoundStats, timed: boolean): Promise<void> => {
    const runs = (await Promise.all(this.workers.map((w) => w.call<number[]>('takeValues')))).flat();
    if (!timed) return;
    const { rows } = await this.pool.query<{ value: string }>(
      `SELECT "value" FROM txlock_counters WHERE "key" = $1 OR left("key", length($1) + 1) = $1 || $2`,
      [this.key, SHARD_SEPARATOR],
    );
    const finals = rows.map((row) => Number(row.value));
    const top = Math.max(0, ...finals);
    const seen = new Int32Array(top + 2);
    let made = 0;
    for (let i = 0; i < runs.length; i += 2) {
      const [first, length] = [runs[i]!, runs[i + 1]!];
      made += length;
      for (let v = first; v < first + length; v++) seen[Math.min(Math.max(v, 0), top + 1)]!++;
    }
    const expected = new Int32Array(top + 2);
    for (const last of finals) for (let v = 1; v <= last; v++) expected[v]!++;
    this.checked += made;
    const total = finals.reduce((a, b) => a + b, 0);
    if (total !== made) this.failures.push(`${made} increments, rows add up to ${total}`);
    else if (!seen.every((n, v) => n === expected[v])) this.failures.push('values missing or repeated within a row');
  };

  readonly note = (): string =>
    this.failures.length
      ? `NOT EXACT: ${this.failures[0]}`
      : `exact (${this.checked} increments; ${this.shards === 1 ? 'values exactly 1..n' : `each of its ${this.shards} rows gap-free`})`;
}

/**
 * Scenario 5: one hot key incremented by 1, 2 and 4 Node processes (replicas) at once, each with 64 callers
 * and its own coalescer; then the same key spread over 4 and 16 rows (`increment(key, 1, { shards })`) at 4
 * processes. Reports total increments/s and checks every value handed out in every process.
 */
export async function crossProcessScenario({ url, runner }: BenchContext): Promise<void> {
  const names = [...PROCESS_COUNTS.map((n) => crossProcessVariant(n)), ...SHARDED.map((s) => crossProcessVariant(MAX_PROCESSES, s))];
  if (!names.some((name) => runner.wantsVariant(name)) || !runner.wantsCallers(CALLERS_EACH)) return;
  runner.progress(`${SCENARIO}: starting ${MAX_PROCESSES} worker processes`);
  const started = await Promise.allSettled(Array.from({ length: MAX_PROCESSES }, () => BenchWorker.start('counter.worker', url, null)));
  const workers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  try {
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    const variant = (processes: number, shards: number): Variant => {
      const check = new CrossProcessCheck(pool, workers.slice(0, processes), hotKey(shards), shards);
      return remoteVariant({
        scenario: SCENARIO,
        variant: crossProcessVariant(processes, shards),
        workers: workers.slice(0, processes),
        op: `shards-${shards}`,
        callersEach: CALLERS_EACH,
        beforeRound: check.beforeRound,
        afterRound: check.afterRound,
        note: check.note,
      });
    };
    const results = await runner.group(
      [...PROCESS_COUNTS.map((n) => variant(n, 1)), ...SHARDED.map((s) => variant(MAX_PROCESSES, s))],
      crossProcessVariant(1),
    );
    const unsharded = results.find((r) => r.variant === crossProcessVariant(MAX_PROCESSES));
    for (const sharded of results.filter((r) => r.variant.includes('shards'))) {
      const vs = unsharded && pairedRatio(sharded, unsharded);
      if (vs) sharded.note = `${sharded.note}; ${vs.ratio.toFixed(2)}x (${vs.min.toFixed(2)}-${vs.max.toFixed(2)}) the unsharded key at ${MAX_PROCESSES} processes`;
    }
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await pool.end();
  }
}
