import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import pg from 'pg';
import { CounterSql } from '../../lib/counters/counter.sql.js';
import { SAFE_LIMIT } from '../../lib/counters/counter-value.js';
import { Column, DataSource, Entity, PrimaryColumn } from 'typeorm';
import { CounterService, TxLockModule } from '../../lib/index.js';
import { RoundTripLog } from '../../test/support/round-trips.js';
import type { BenchContext } from '../context.js';
import { localVariant, type RoundStats, type Variant } from '../harness.js';
import { pairedRatio } from '../runner.js';

const SCENARIO = '3. hot-key counter';
const POOL = 16;
const CALLER_COUNTS = [1, 16, 64];

/** The baseline of the counter scenario. */
export const RAW_UPSERT = 'raw pg single-row upsert';
/** Raw pg sending the very statement CounterService sends (windows, bounds and all): what is left is our own cost. */
export const RAW_SAME_STATEMENT = "raw pg, CounterService's own statement";
const SAME_STATEMENT = new CounterSql('"bench_raw_same"');
/** The seeds' hand-made fix, the second baseline. */
export const SEEDS_APPROACH = "seeds' advisory lock + read + update";
/** Ours, coalescing (the default). */
export const OURS_INCREMENT = 'CounterService.increment';
/** The best any coalescer could do here: batched statements back to back on one connection, nothing else. */
export const CEILING = 'ceiling: 1 connection, back-to-back batched UPDATE';

const CEILING_SQL = `UPDATE bench_ceiling SET value = value + $1 WHERE key = 'hot' RETURNING value`;

/** The naive path's row: a plain entity read, incremented in JavaScript and saved. */
@Entity('bench_naive_counter')
class NaiveCounter {
  @PrimaryColumn({ type: 'text' })
  key!: string;

  @Column({ type: 'bigint', transformer: { to: (v: number) => v, from: (v: string) => Number(v) } })
  value!: number;
}

/** Boots an app with CounterService (coalescing on or off) on its own pool. */
async function counterApp(url: string, coalesce: boolean) {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, entities: [NaiveCounter], synchronize: true, extra: { max: POOL } }),
      TxLockModule.forRoot({ counters: { autoCreate: true, coalesce } }),
    ],
  })
  class CounterBenchModule {}
  return NestFactory.createApplicationContext(CounterBenchModule, { logger: ['error'] });
}

/**
 * Counts what a variant's increments did between resets (settle run and timed round): the final count must
 * equal the increments made, and the values returned must all differ.
 */
class ExactCount {
  private made = 0;
  private values: number[] = [];
  private checked = 0;
  private lost = 0;
  private duplicates = false;

  constructor(
    private readonly reset: () => Promise<unknown>,
    private readonly final: () => Promise<number>,
  ) {}

  /** `op` counted: each call is `units()` increments, and its value (if any) is collected. */
  counted(op: () => Promise<number | undefined>, units: () => number = () => 1): () => Promise<void> {
    return async () => {
      const value = await op();
      this.made += units();
      if (value !== undefined) this.values.push(value);
    };
  }

  readonly beforeRound = async (): Promise<void> => {
    await this.reset();
    this.made = 0;
    this.values = [];
  };

  readonly afterRound = async (_stats: unknown, timed: boolean): Promise<void> => {
    if (!timed) return;
    const count = await this.final();
    this.checked += this.made;
    this.lost += this.made - count;
    if (new Set(this.values).size !== this.values.length) this.duplicates = true;
  };

  readonly note = (): string =>
    this.lost === 0 && !this.duplicates
      ? `exact (${this.checked} increments${this.values.length ? ', all values distinct' : ''})`
      : `LOST ${this.lost} of ${this.checked} increments${this.duplicates ? ', duplicate values' : ''}`;
}

/**
 * Scenario 3: increments of one key, at 1, 16 and 64 concurrent callers, each way; checks exactness. With
 * 16 and 64 callers, also the ceiling of any coalescer: one connection sending `UPDATE ... SET value = value
 * + n RETURNING value` back to back, n being the batch our coalescer formed in the round before.
 */
export async function counterScenario({ url, runner }: BenchContext): Promise<void> {
  const coalescing = await counterApp(url, true);
  const plain = await counterApp(url, false);
  const rawPool = new pg.Pool({ connectionString: url, max: POOL });
  const ceilingClient = new pg.Client({ connectionString: url });
  try {
    await ceilingClient.connect();
    const dataSource = coalescing.get(DataSource);
    const typeormLog = RoundTripLog.attach(dataSource);
    const plainLog = RoundTripLog.attach(plain.get(DataSource));
    const rawLog = RoundTripLog.attach(rawPool);
    await rawPool.query('CREATE TABLE IF NOT EXISTS bench_raw_counter (key text PRIMARY KEY, value bigint NOT NULL)');
    await rawPool.query('CREATE TABLE IF NOT EXISTS bench_ceiling (key text PRIMARY KEY, value bigint NOT NULL)');
    await rawPool.query(SAME_STATEMENT.createTable);
    const lockKey = 4242; // any constant key: the seeds serialise every increment of the key on it
    const naive = dataSource.getRepository(NaiveCounter);
    const ours = coalescing.get(CounterService);
    const oursPlain = plain.get(CounterService);
    const rawValue = async () => Number((await rawPool.query(`SELECT value FROM bench_raw_counter WHERE key = 'hot'`)).rows[0]?.value ?? 0);
    const rawReset = () => rawPool.query('TRUNCATE bench_raw_counter');

    for (const callers of CALLER_COUNTS) {
      const variant = (name: string, log: RoundTripLog, count: ExactCount, op: () => Promise<number | undefined>): Variant =>
        localVariant({ scenario: SCENARIO, variant: name, callers, log, op: count.counted(op), beforeRound: count.beforeRound, afterRound: count.afterRound, note: count.note });
      // The batch our coalescer formed in its latest round: what the ceiling sends per statement.
      let batch = 1;
      const oursCount = new ExactCount(() => ours.delete('bench-hot'), async () => Number(await ours.get('bench-hot')));
      const variants = [
        variant(RAW_UPSERT, rawLog, new ExactCount(rawReset, rawValue), async () =>
          Number(
            (
              await rawPool.query(
                `INSERT INTO bench_raw_counter (key, value) VALUES ('hot', 1)
                 ON CONFLICT (key) DO UPDATE SET value = bench_raw_counter.value + 1 RETURNING value`,
              )
            ).rows[0].value,
          ),
        ),
        ...(callers === 1
          ? [
              variant(
                RAW_SAME_STATEMENT,
                rawLog,
                new ExactCount(
                  () => rawPool.query('TRUNCATE "bench_raw_same"'),
                  async () => Number((await rawPool.query(`SELECT value FROM "bench_raw_same" WHERE key = 'hot'`)).rows[0]?.value ?? 0),
                ),
                async () => Number((await rawPool.query(SAME_STATEMENT.add, ['hot', '1', SAFE_LIMIT.toString()])).rows[0].value),
              ),
            ]
          : []),
        variant(SEEDS_APPROACH, rawLog, new ExactCount(rawReset, rawValue), async () => {
          const client = await rawPool.connect();
          try {
            await client.query('BEGIN');
            await client.query('SELECT pg_advisory_xact_lock($1)', [lockKey]);
            const { rows } = await client.query(`SELECT value FROM bench_raw_counter WHERE key = 'hot'`);
            const next = Number(rows[0]?.value ?? 0) + 1;
            if (rows.length) await client.query(`UPDATE bench_raw_counter SET value = $1 WHERE key = 'hot'`, [next]);
            else await client.query(`INSERT INTO bench_raw_counter (key, value) VALUES ('hot', $1)`, [next]);
            await client.query('COMMIT');
            return next;
          } catch (error) {
            await client.query('ROLLBACK');
            throw error;
          } finally {
            client.release();
          }
        }),
        variant(
          'naive TypeORM findOne + save',
          typeormLog,
          new ExactCount(() => naive.clear(), async () => (await naive.findOneBy({ key: 'hot' }))?.value ?? 0),
          async () => {
            const row = (await naive.findOneBy({ key: 'hot' })) ?? naive.create({ key: 'hot', value: 0 });
            row.value += 1;
            await naive.save(row).catch(() => undefined); // a racing first insert fails on the key: counted as lost
            return undefined;
          },
        ),
        variant(
          'CounterService.increment (no coalescing)',
          plainLog,
          new ExactCount(() => oursPlain.delete('bench-hot'), async () => Number(await oursPlain.get('bench-hot'))),
          async () => Number(await oursPlain.increment('bench-hot')),
        ),
        {
          ...variant(OURS_INCREMENT, typeormLog, oursCount, async () => Number(await ours.increment('bench-hot'))),
          afterRound: async (stats: RoundStats, timed: boolean) => {
            batch = Math.max(1, Math.round(stats.ops / Math.max(1, stats.roundTrips)));
            await oursCount.afterRound(stats, timed);
          },
        },
      ];
      if (callers > 1) variants.push(ceilingVariant(ceilingClient, callers, () => batch));
      const results = await runner.group(variants, RAW_UPSERT);
      const oursResult = results.find((r) => r.variant === OURS_INCREMENT);
      const ceiling = results.find((r) => r.variant === CEILING);
      const vsCeiling = oursResult && ceiling && pairedRatio(oursResult, ceiling);
      if (vsCeiling) oursResult.note = `${oursResult.note}; ${vsCeiling.ratio.toFixed(2)}x (${vsCeiling.min.toFixed(2)}-${vsCeiling.max.toFixed(2)}) the ceiling`;
    }
  } finally {
    await ceilingClient.end();
    await rawPool.end();
    await coalescing.close();
    await plain.close();
  }
}

// One caller on one connection: no pool, no per-caller promises, no coalescing bookkeeping; each statement
// counts as the `batch()` increments it adds. Shown at the group's caller count it stands in for.
function ceilingVariant(client: pg.Client, callers: number, batch: () => number): Variant {
  const sizes = new Set<number>();
  const count = new ExactCount(
    () => client.query(`INSERT INTO bench_ceiling VALUES ('hot', 0) ON CONFLICT (key) DO UPDATE SET value = 0`),
    async () => Number((await client.query(`SELECT value FROM bench_ceiling WHERE key = 'hot'`)).rows[0].value),
  );
  const op = count.counted(async () => {
    await client.query(CEILING_SQL, [batch()]);
    return undefined;
  }, batch);
  return {
    ...localVariant({ scenario: SCENARIO, variant: CEILING, callers: 1, op, units: batch, beforeRound: count.beforeRound, afterRound: count.afterRound }),
    callers,
    afterRound: async (stats, timed) => {
      if (timed) sizes.add(batch());
      await count.afterRound(stats, timed);
    },
    note: () => `+n per statement, n = ${[...sizes].sort((a, b) => a - b).join('/')}, the batches ${OURS_INCREMENT} formed; ${count.note()}`,
  };
}
