import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { LockService, TxLockModule } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';

/** Input: the key to wait for, in which scope. */
export interface VanishedClientWaiterInput {
  key: string;
  scope: 'transaction' | 'session';
}

/** Output: when (epoch ms, this machine's clock) the lock was granted to this process. */
export interface VanishedClientWaiterOutput {
  acquiredAt: number;
}

// Another replica: waits (no timeout) for the lock a holder in the test process has, which vanished behind a frozen
// relay; says "waiting" first. It reaches PostgreSQL directly.
workerMain<VanishedClientWaiterInput, VanishedClientWaiterOutput>(async (input, { url }) => {
  @Module({ imports: [TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 2 } }), TxLockModule.forRoot({})] })
  class WaiterModule {}
  const app = await NestFactory.createApplicationContext(WaiterModule, { logger: ['error'] });
  try {
    process.stdout.write('waiting\n');
    const acquiredAt = await app.get(LockService).withAdvisoryLock(input.key, () => Date.now(), { scope: input.scope });
    return { acquiredAt };
  } finally {
    await app.close();
  }
});
