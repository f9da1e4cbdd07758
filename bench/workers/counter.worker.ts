import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { CounterService, TxLockModule } from '../../lib/index.js';
import { serveRounds } from '../remote.js';
import { SHARD_COUNTS, hotKey, valueRuns } from '../scenarios/cross-process-key.js';

/** One replica of an app incrementing a hot key: operation `shards-N` increments the key spread over N rows. */
serveRounds(async (url) => {
  @Module({
    imports: [
      // The coalescer keeps one statement per key in flight, so a few connections are plenty.
      TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 4 } }),
      TxLockModule.forRoot({ counters: { autoCreate: true } }),
    ],
  })
  class CounterWorkerModule {}

  const app = await NestFactory.createApplicationContext(CounterWorkerModule, { logger: ['error'] });
  const counters = app.get(CounterService);
  let values: number[] = [];
  const ops = Object.fromEntries(
    SHARD_COUNTS.map((shards) => [
      `shards-${shards}`,
      async () => void values.push(Number(await counters.increment(hotKey(shards), 1, shards > 1 ? { shards } : {}))),
    ]),
  );
  return {
    ops,
    calls: {
      // Every value this process got since the last call, as runs (the checks need them all, across processes).
      takeValues: () => {
        const runs = valueRuns(values);
        values = [];
        return runs;
      },
    },
    close: () => app.close(),
  };
});
