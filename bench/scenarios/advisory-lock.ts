import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { AdvisoryLock, Transactional, TransactionHost, TxLockModule, advisoryLockKey } from '../../lib/index.js';
import { RoundTripLog } from '../../test/support/round-trips.js';
import type { BenchContext } from '../context.js';
import { localVariant } from '../harness.js';

const SCENARIO = '2. advisory lock + transaction';
const CALLERS = 8;
const ROWS = 1_000;
const WORK = 'UPDATE bench_locked_row SET n = n + 1 WHERE id = $1';

/** The baseline of the advisory lock scenario. */
export const RAW_LOCKED = 'raw pg BEGIN; lock; work; COMMIT';

@Injectable()
class LockedWork {
  constructor(private readonly tx: TransactionHost) {}

  @AdvisoryLock({ key: (id: number) => ['bench-row', id] })
  @Transactional()
  async update(id: number): Promise<void> {
    await this.tx.manager.query(WORK, [id]);
  }
}

/** Scenario 2: a per-row advisory lock around one write, with the decorators and by hand on raw pg. */
export async function advisoryLockScenario({ url, runner }: BenchContext): Promise<void> {
  @Module({
    imports: [TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: CALLERS } }), TxLockModule.forRoot({})],
    providers: [LockedWork],
  })
  class AdvisoryBenchModule {}

  const app = await NestFactory.createApplicationContext(AdvisoryBenchModule, { logger: ['error'] });
  const rawPool = new pg.Pool({ connectionString: url, max: CALLERS });
  try {
    const dataSource = app.get(DataSource);
    await dataSource.query('CREATE TABLE IF NOT EXISTS bench_locked_row (id int PRIMARY KEY, n int NOT NULL)');
    await dataSource.query('INSERT INTO bench_locked_row SELECT g, 0 FROM generate_series(1, $1) g ON CONFLICT DO NOTHING', [ROWS]);
    const id = () => 1 + Math.floor(Math.random() * ROWS);
    const locked = app.get(LockedWork);
    const raw = async () => {
      const row = id();
      const client = await rawPool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock($1)', [advisoryLockKey(['bench-row', row]).toString()]);
        await client.query(WORK, [row]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    };
    await runner.group(
      [
        localVariant({ scenario: SCENARIO, variant: RAW_LOCKED, callers: CALLERS, log: RoundTripLog.attach(rawPool), op: raw }),
        localVariant({ scenario: SCENARIO, variant: '@AdvisoryLock + @Transactional', callers: CALLERS, log: RoundTripLog.attach(dataSource), op: () => locked.update(id()) }),
      ],
      RAW_LOCKED,
    );
  } finally {
    await rawPool.end();
    await app.close();
  }
}
