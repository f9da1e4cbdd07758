import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { CounterService, TxLockModule } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';

/** What one loader did: the values its successful increments returned, and how many calls failed, by error class. */
export interface LoadOutcome {
  values: number[];
  failed: number;
  errors: Record<string, number>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Increments one key `calls` times from `callers` concurrent callers, counting what succeeded and what failed.
workerMain<{ calls: number; callers: number }, LoadOutcome>(async ({ calls, callers }, { url }) => {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 4, connectionTimeoutMillis: 2_000 }, retryAttempts: 20 }),
      TxLockModule.forRoot({ counters: { autoCreate: true } }),
    ],
  })
  class LoaderModule {}

  const app = await NestFactory.createApplicationContext(LoaderModule, { logger: false });
  const counters = app.get(CounterService);
  process.stdout.write('ready\n');
  const outcome: LoadOutcome = { values: [], failed: 0, errors: {} };
  let next = 0;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (next < calls) {
        next++;
        try {
          outcome.values.push(Number(await counters.increment('through-restart')));
        } catch (error) {
          outcome.failed++;
          const name = error instanceof Error ? error.constructor.name : typeof error;
          outcome.errors[name] = (outcome.errors[name] ?? 0) + 1;
          await sleep(20); // the server is down: do not spin
        }
      }
    }),
  );
  await app.close().catch(() => undefined);
  return outcome;
});
