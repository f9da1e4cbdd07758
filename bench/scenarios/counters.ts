import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import pg from 'pg';
import { Column, DataSource, Entity, PrimaryColumn } from 'typeorm';
import { CounterService, TxLockModule } from '../../lib/index.js';
import { RoundTripLog } from '../../test/support/round-trips.js';
import { measure, type BenchResult, type BenchSettings } from '../harness.js';

const SCENARIO = '3. hot-key counter';
const POOL = 16;
const CALLER_COUNTS = [1, 16, 64];

/** The baseline of the counter scenario. */
export const RAW_UPSERT = 'raw pg single-row upsert';
/** The seeds' hand-made fix, the second baseline. */
export const SEEDS_APPROACH = "seeds' advisory lock + read + update";

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

/** Scenario 3: increments of one key, at 1, 16 and 64 concurrent callers, each way; checks exactness. */
export async function counterScenario(url: string, settings: BenchSettings): Promise<BenchResult[]> {
  const coalescing = await counterApp(url, true);
  const plain = await counterApp(url, false);
  const rawPool = new pg.Pool({ connectionString: url, max: POOL });
  const dataSource = coalescing.get(DataSource);
  const plainDataSource = plain.get(DataSource);
  const typeormLog = RoundTripLog.attach(dataSource);
  const plainLog = RoundTripLog.attach(plainDataSource);
  const rawLog = RoundTripLog.attach(rawPool);
  await rawPool.query('CREATE TABLE IF NOT EXISTS bench_raw_counter (key text PRIMARY KEY, value bigint NOT NULL)');
  const lockKey = 4242; // any constant key: the seeds serialise every increment of the key on it
  const naive = dataSource.getRepository(NaiveCounter);

  // Each variant: the operation (returning the new value when it has one) and how to read the final count.
  const variants: [string, RoundTripLog, () => Promise<number | undefined>, () => Promise<number>, () => Promise<unknown>][] = [
    [
      RAW_UPSERT,
      rawLog,
      async () =>
        Number(
          (
            await rawPool.query(
              `INSERT INTO bench_raw_counter (key, value) VALUES ('hot', 1)
               ON CONFLICT (key) DO UPDATE SET value = bench_raw_counter.value + 1 RETURNING value`,
            )
          ).rows[0].value,
        ),
      async () => Number((await rawPool.query(`SELECT value FROM bench_raw_counter WHERE key = 'hot'`)).rows[0]?.value ?? 0),
      () => rawPool.query('TRUNCATE bench_raw_counter'),
    ],
    [
      SEEDS_APPROACH,
      rawLog,
      async () => {
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
      },
      async () => Number((await rawPool.query(`SELECT value FROM bench_raw_counter WHERE key = 'hot'`)).rows[0]?.value ?? 0),
      () => rawPool.query('TRUNCATE bench_raw_counter'),
    ],
    [
      'naive TypeORM findOne + save',
      typeormLog,
      async () => {
        const row = (await naive.findOneBy({ key: 'hot' })) ?? naive.create({ key: 'hot', value: 0 });
        row.value += 1;
        await naive.save(row).catch(() => undefined); // a racing first insert fails on the key: counted as lost
        return undefined;
      },
      async () => (await naive.findOneBy({ key: 'hot' }))?.value ?? 0,
      () => naive.clear(),
    ],
    [
      'CounterService.increment (no coalescing)',
      plainLog,
      async () => Number(await plain.get(CounterService).increment('bench-hot')),
      async () => Number(await plain.get(CounterService).get('bench-hot')),
      () => plain.get(CounterService).delete('bench-hot'),
    ],
    [
      'CounterService.increment',
      typeormLog,
      async () => Number(await coalescing.get(CounterService).increment('bench-hot')),
      async () => Number(await coalescing.get(CounterService).get('bench-hot')),
      () => coalescing.get(CounterService).delete('bench-hot'),
    ],
  ];

  const results: BenchResult[] = [];
  try {
    for (const callers of CALLER_COUNTS) {
      for (const [variant, log, op, final, reset] of variants) {
        await reset();
        let ops = 0;
        const values: number[] = [];
        const measured = await measure(settings, log, callers, async () => {
          const value = await op();
          ops++;
          if (value !== undefined) values.push(value);
        });
        const count = await final();
        const distinct = new Set(values).size === values.length;
        const note =
          count === ops && (values.length === 0 || distinct)
            ? `exact (${ops} increments${values.length ? ', all values distinct' : ''})`
            : `LOST ${ops - count} of ${ops} increments${distinct ? '' : ', duplicate values'}`;
        results.push({ scenario: SCENARIO, variant, concurrency: callers, ...measured, note });
      }
    }
    return results;
  } finally {
    await rawPool.end();
    await coalescing.close();
    await plain.close();
  }
}
