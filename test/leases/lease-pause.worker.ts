import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { LeaseService, TransactionHost, TxLockModule } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';

/** Input of the paused holder. */
export interface PauseInput {
  /** How the holder guards its write: fence() in the UPDATE, or assertToken() first, in the same transaction. */
  check: 'fence' | 'assertToken';
  /** The lease it takes, which must run out while it is stopped. */
  atMostForMs: number;
}

/** What the paused holder saw. */
export interface PauseOutput {
  token: number;
  affected: number;
  committed: boolean;
  error?: string;
}

// A lease holder that writes `report` row 1 under its lease inside a transaction, then prints "paused" and
// stops itself with SIGSTOP before COMMIT (as a GC pause, a VM freeze or a debugger would) until the test
// sends SIGCONT.
workerMain<PauseInput, PauseOutput>(async (input, { url }) => {
  @Module({ imports: [TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 2 } }), TxLockModule.forRoot({})] })
  class HolderModule {}

  const app = await NestFactory.createApplicationContext(HolderModule, { logger: ['error'] });
  try {
    const leases = app.get(LeaseService);
    const tx = app.get(TransactionHost);
    const lease = await leases.acquire('job', { atMostForMs: input.atMostForMs });
    if (!lease) throw new Error('the lease was not free');
    let affected = 0;
    try {
      await tx.run(async () => {
        const body = `A (token ${lease.token})`;
        if (input.check === 'assertToken') {
          await leases.assertToken(lease.name, lease.token);
          [, affected] = await tx.manager.query('UPDATE report SET body = $1 WHERE id = 1', [body]);
        } else {
          const fence = leases.fence(lease, 2);
          [, affected] = await tx.manager.query(`UPDATE report SET body = $1 WHERE id = 1 AND ${fence.condition}`, [body, ...fence.params]);
        }
        await new Promise((resolve) => process.stdout.write('paused\n', resolve));
        process.kill(process.pid, 'SIGSTOP');
      });
    } catch (error) {
      return { token: lease.token, affected, committed: false, error: String(error) };
    }
    return { token: lease.token, affected, committed: true };
  } finally {
    await app.close();
  }
});
