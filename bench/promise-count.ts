import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { createHook } from 'node:async_hooks';
import type { Pool } from 'pg';
import { DataSource } from 'typeorm';
import { CounterService, TxLockModule } from '../lib/index.js';
import { createTestDatabase } from '../test/support/database.js';
import { handWritten, OurTransactions } from './scenarios/transactions.js';
import { createRows } from './scenarios/transaction-work.js';

// `node .build/bench/promise-count.js` (after one `npm run bench`; DATABASE_URL names the server): how many promises
// one call of ours and of its baselines (the hand-written TypeORM runner, pg's own pool.query()) creates, counted
// with an async_hooks init hook over 300 calls one after another (the hook slows every promise, so this run's times
// mean nothing). With AsyncLocalStorage on promise hooks (Node 20, 22), every promise pays them: fewer promises is
// less CPU.

const CALLS = 300;
// scenario 3's raw baseline: one upsert through pg's own pool.
const RAW_UPSERT = `INSERT INTO promise_count_raw (key, value) VALUES ('hot', 1) ON CONFLICT (key) DO UPDATE SET value = promise_count_raw.value + 1 RETURNING value`;

async function main(): Promise<void> {
  process.env.TXLOCK_TEST_ADMIN_URL = process.env.DATABASE_URL;
  const database = await createTestDatabase();
  @Module({
    imports: [TypeOrmModule.forRoot({ type: 'postgres', url: database.url, extra: { max: 8 } }), TxLockModule.forRoot({ counters: { autoCreate: true } })],
    providers: [OurTransactions],
  })
  class PromiseCountModule {}
  const app = await NestFactory.createApplicationContext(PromiseCountModule, { logger: ['error'] });
  try {
    const dataSource = app.get(DataSource);
    await createRows((sql, params) => dataSource.query(sql, params));
    const ours = app.get(OurTransactions);
    const counters = app.get(CounterService);
    const rawPool = (dataSource.driver as unknown as { master: Pool }).master;
    await rawPool.query('CREATE TABLE IF NOT EXISTS promise_count_raw (key text PRIMARY KEY, value bigint NOT NULL)');
    let promises = 0;
    const hook = createHook({
      init(_id, type) {
        if (type === 'PROMISE') promises++;
      },
    });
    const count = async (op: () => Promise<unknown>, calls: number, together = false): Promise<number> => {
      for (let i = 0; i < 20; i++) await op();
      promises = 0;
      hook.enable();
      if (together) await Promise.all(Array.from({ length: calls }, op));
      else for (let i = 0; i < calls; i++) await op();
      hook.disable();
      return promises / calls;
    };
    const rows: [string, number][] = [
      ['@Transactional(), 3 statements', await count(() => ours.plain(5), CALLS)],
      ['hand-written TypeORM runner, 3 statements', await count(() => handWritten(dataSource, 5, 'plain'), CALLS)],
      ['@AdvisoryLock + @Transactional, 3 statements', await count(() => ours.locked(5), CALLS)],
      ['hand-written TypeORM runner, lock + 3 statements', await count(() => handWritten(dataSource, 5, 'locked'), CALLS)],
      ['CounterService.increment, 64 at once (coalesced)', await count(() => counters.increment('promise-count'), 64, true)],
      ['CounterService.increment, 1 caller', await count(() => counters.increment('promise-count'), CALLS)],
      ['raw pg upsert (pool.query()), 1 caller', await count(() => rawPool.query(RAW_UPSERT), CALLS)],
    ];
    console.log(`Node ${process.version}, promises created per call:`);
    for (const [what, perCall] of rows) console.log(`  ${perCall.toFixed(1).padStart(6)}  ${what}`);
  } finally {
    await app.close();
    await database.drop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
