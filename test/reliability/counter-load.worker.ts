import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { CounterService, TxLockModule } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';

/**
 * What one loader did: how many calls it made, the values its successful increments returned, and how many calls
 * failed, by error class; `recovered` when a call succeeded after one had failed (the server came back).
 */
export interface LoadOutcome {
  tried: number;
  values: number[];
  failed: number;
  errors: Record<string, number>;
  recovered: boolean;
}

// A loader that never sees the server go away stops after this long all the same (the test then fails on it).
const MAX_LOAD_MS = 60_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Increments one key from `callers` concurrent callers, counting what succeeded and what failed: at least `calls`
// times, and on until a call succeeded after one failed, so the load is still running whenever the restart comes (a
// fixed count alone finished first on a fast machine).
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
  const outcome: LoadOutcome = { tried: 0, values: [], failed: 0, errors: {}, recovered: false };
  const deadline = Date.now() + MAX_LOAD_MS;
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while ((outcome.tried < calls || !outcome.recovered) && Date.now() < deadline) {
        outcome.tried++;
        try {
          outcome.values.push(Number(await counters.increment('through-restart')));
          if (outcome.failed > 0) outcome.recovered = true;
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
