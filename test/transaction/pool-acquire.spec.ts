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
    await ds.query('INSERT INTO pool_row VALUES (1, 0), (2, 0)');
    const both = gate();
    const ready = [gate(), gate()];
    // Each outer transaction locks its own row, and its inner one updates the other's: whichever inner transaction
    // pg-pool hands the idle connection to waits for the other outer's row lock, a deadlock unless the other inner
    // one's wait for a connection ends (which of the two gets it varies from run to run, and with the Node version).
    const outer = (index: number) =>
      tx
        .run(async () => {
          await tx.manager.query('UPDATE pool_row SET v = v + 1 WHERE id = $1', [index + 1]);
          ready[index]!.open();
          await both.opened;
          await tx.run({ propagation: 'REQUIRES_NEW' }, () => tx.manager.query('UPDATE pool_row SET v = v + 1 WHERE id = $1', [2 - index]));
        })
        .then(
          () => 'done',
          (error: unknown) => error,
        );
    const results = Promise.all([outer(0), outer(1)]);
    await Promise.all(ready.map((g) => g.opened));
    both.open();
    const outcomes = await results;
    expect(outcomes.filter((outcome) => outcome === 'done')).toHaveLength(1);
    const refused = outcomes.find((outcome) => outcome !== 'done');
    expect(refused).toBeInstanceOf(PoolExhaustedError);
    expect((refused as PoolExhaustedError).holding).toBe(true);
    expect((refused as Error).message).toMatch(/All 3 pooled connections stayed busy for 300 ms/);
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
