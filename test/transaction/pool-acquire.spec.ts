import { beforeAll, describe, expect, it } from '@jest/globals';
import { PoolExhaustedError, TransactionHost } from '../../lib/index.js';
import { expectAllReleased, poolOf } from '../support/database.js';
import { gate } from '../support/gate.js';
import { useTestApp } from '../support/test-app.js';

// Every wait for a pooled connection is bounded by acquireTimeoutMs, whether or not the pool had an idle
// connection when the call started (pg-pool hands idle ones out on a later tick, to one caller only).
describe('waiting for a pooled connection', () => {
  const testApp = useTestApp({ poolSize: 3, txlock: { acquireTimeoutMs: 300 } });
  let tx: TransactionHost;

  beforeAll(() => {
    tx = testApp.get(TransactionHost);
  });

  it('two REQUIRES_NEW callers asking at once for the one idle connection of a warm pool: one gets it, the other PoolExhaustedError (r07)', async () => {
    const ds = testApp.dataSource;
    await Promise.all([1, 2, 3].map(() => ds.query('SELECT pg_sleep(0.02)'))); // warm: 3 connections, all idle
    expect(poolOf(ds).idleCount).toBe(3);
    await ds.query('CREATE TABLE pool_row (id int PRIMARY KEY, v int)');
    await ds.query('INSERT INTO pool_row VALUES (1, 0)');
    const both = gate();
    const ready = [gate(), gate()];
    const outer = (index: number, first: string) =>
      tx
        .run(async () => {
          await tx.manager.query(first);
          // Outer 1 waits on `both` only after outer 0 does, so once `both` opens outer 0 resumes first and its
          // inner asks for the idle connection first (pg-pool serves waiters in order). The other order would
          // be a self-deadlock nothing ends: outer 1's inner holding the last connection and waiting for the
          // row lock of outer 1 itself. Which outer's first statement ends first must not decide it.
          if (index === 1) await ready[0]!.opened;
          ready[index]!.open();
          await both.opened;
          await tx.run({ propagation: 'REQUIRES_NEW' }, () => tx.manager.query('UPDATE pool_row SET v = v + 1 WHERE id = 1'));
        })
        .then(
          () => 'done',
          (error: unknown) => error,
        );
    // The second outer holds the row lock, so the first one's inner transaction waits for it: a deadlock
    // unless the second one's wait for a connection ends.
    const results = Promise.all([outer(0, 'SELECT 1'), outer(1, 'UPDATE pool_row SET v = v + 1 WHERE id = 1')]);
    await Promise.all(ready.map((g) => g.opened));
    both.open();
    // Both inners ask in the microtasks that follow, before pg-pool's next tick hands the idle connection out:
    // the pool's counts on the first tick show both waiting while the connection is still idle (r07's case).
    const asked = await new Promise<{ idle: number; waiting: number }>((resolve) =>
      process.nextTick(() => resolve({ idle: poolOf(ds).idleCount, waiting: poolOf(ds).waitingCount })),
    );
    expect(asked).toEqual({ idle: 1, waiting: 2 });
    const [first, second] = await results;
    expect(first).toBe('done');
    expect(second).toBeInstanceOf(PoolExhaustedError);
    expect((second as PoolExhaustedError).holding).toBe(true);
    expect((second as Error).message).toMatch(/All 3 pooled connections stayed busy for 300 ms/);
    await expectAllReleased(ds);
  });

  it('plain exhaustion names the pool and the wait, and does not blame REQUIRES_NEW', async () => {
    const release = gate();
    const held = [gate(), gate(), gate()];
    const holders = held.map((started) =>
      tx.run(async () => {
        await tx.manager.query('SELECT 1');
        started.open();
        await release.opened;
      }),
    );
    await Promise.all(held.map((g) => g.opened));
    const error = await tx.run(() => tx.manager.query('SELECT 1')).catch((caught: unknown) => caught);
    release.open();
    await Promise.all(holders);
    expect(error).toBeInstanceOf(PoolExhaustedError);
    expect((error as PoolExhaustedError).holding).toBe(false);
    expect((error as Error).message).toMatch(/^All 3 pooled connections stayed busy for 300 ms/);
    expect((error as Error).message).not.toMatch(/REQUIRES_NEW/);
    await expectAllReleased(testApp.dataSource);
  });
});
