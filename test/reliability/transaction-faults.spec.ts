import { beforeAll, describe, expect, it } from '@jest/globals';
import { DataSource } from 'typeorm';
import { TransactionHost, TransactionTimeoutError } from '../../lib/index.js';
import { concurrently } from '../support/concurrency.js';
import { expectAllReleased } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';
import { reportFaults } from './report.js';

describe('transactions under faults', () => {
  const testApp = useTestApp({ poolSize: 8 });
  let tx: TransactionHost;
  let dataSource: DataSource;

  beforeAll(async () => {
    tx = testApp.get(TransactionHost);
    dataSource = testApp.dataSource;
    await dataSource.query('CREATE TABLE ledger (id serial PRIMARY KEY, worker int NOT NULL)');
  });

  it('pg_terminate_backend mid-transaction: the caller gets an error, nothing of it commits, the runner is released, the pool recovers', async () => {
    const error = await tx
      .run(async () => {
        await tx.manager.query('INSERT INTO ledger (worker) VALUES (-1)');
        const [{ pid }] = await tx.manager.query('SELECT pg_backend_pid() AS pid');
        await dataSource.query('SELECT pg_terminate_backend($1)', [pid]);
        await tx.manager.query('INSERT INTO ledger (worker) VALUES (-2)');
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(String((error as Error).message)).toMatch(/terminat|Connection|closed/i);
    await expectAllReleased(dataSource);
    expect(await dataSource.query('SELECT count(*)::int AS n FROM ledger WHERE worker < 0')).toEqual([{ n: 0 }]);
    // The next transaction gets a healthy connection.
    await tx.run(() => tx.manager.query('INSERT INTO ledger (worker) VALUES (0)'));
    expect(await dataSource.query('SELECT count(*)::int AS n FROM ledger WHERE worker = 0')).toEqual([{ n: 1 }]);
  });

  it('statement timeouts under load: named errors, every success committed, no failure half-committed, no leaked runner', async () => {
    await dataSource.query('TRUNCATE ledger');
    // 40 transactions on 8 connections; every third one runs a statement longer than its timeout.
    const outcomes = await concurrently(40, (i) =>
      tx.run({ timeoutMs: 150 }, async () => {
        await tx.manager.query('INSERT INTO ledger (worker) VALUES ($1)', [i]);
        await tx.manager.query('SELECT pg_sleep($1)', [i % 3 === 0 ? 2 : 0.01]);
        return i;
      }),
    );
    const succeeded = outcomes.flatMap((o) => (o.ok ? [o.value] : []));
    const failed = outcomes.filter((o) => !o.ok);
    for (const failure of failed) expect((failure as { error: unknown }).error).toBeInstanceOf(TransactionTimeoutError);
    const committed = (await dataSource.query('SELECT worker FROM ledger ORDER BY worker')).map((r: { worker: number }) => r.worker);
    expect(committed).toEqual(succeeded.sort((a, b) => a - b));
    expect(failed).toHaveLength(14);
    reportFaults('statement timeout under load', { tried: 40, succeeded: succeeded.length, failed: failed.length, lost: 0 });
    await expectAllReleased(dataSource);
  });
});
