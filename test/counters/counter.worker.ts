import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { CounterService, TxLockCounter, TxLockModule } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';

/** Input of one counting process. */
export interface CounterWorkerInput {
  key: string;
  /** Concurrent callers in this process, and increments each makes one after another. */
  callers: number;
  perCaller: number;
  /** ours: CounterService.increment; naive: SELECT the value, then UPDATE it to value + 1 (a cache's incr). */
  mode: 'ours' | 'naive';
  coalesce: boolean;
  /** ours only: spread the key over this many rows (increment's `shards`). */
  shards?: number;
}

/** Each process returns the value every one of its increments returned. */
workerMain<CounterWorkerInput, number[]>(async (input, { url }) => {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, entities: [TxLockCounter], extra: { max: 5 } }),
      TxLockModule.forRoot({ counters: { coalesce: input.coalesce } }),
    ],
  })
  class CounterWorkerModule {}

  const app = await NestFactory.createApplicationContext(CounterWorkerModule, { logger: ['error'] });
  const counters = app.get(CounterService);
  const dataSource = app.get(DataSource);
  const naive = async (): Promise<number> => {
    const [row] = (await dataSource.query('SELECT "value" FROM txlock_counters WHERE "key" = $1', [input.key])) as { value: string }[];
    const next = Number(row!.value) + 1;
    await dataSource.query('UPDATE txlock_counters SET "value" = $2 WHERE "key" = $1', [input.key, next]);
    return next;
  };
  const values: number[] = [];
  await Promise.all(
    Array.from({ length: input.callers }, async () => {
      for (let i = 0; i < input.perCaller; i++) {
        values.push(input.mode === 'ours' ? Number(await counters.increment(input.key, 1, { shards: input.shards })) : await naive());
      }
    }),
  );
  await app.close();
  return values;
});
