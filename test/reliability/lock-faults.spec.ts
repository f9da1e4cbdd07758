import { beforeAll, describe, expect, it } from '@jest/globals';
import { DataSource } from 'typeorm';
import { LockService, LockTimeoutError, TransactionHost } from '../../lib/index.js';
import { concurrently } from '../support/concurrency.js';
import { expectAllReleased } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';
import { spawnWorker } from '../support/processes.js';
import { startWorkers } from '../support/start-line.js';
import type { LockedIncrementsInput } from './locked-increments.worker.js';
import { reportFaults } from './report.js';

const WORKER = 'test/reliability/locked-increments.worker.ts';

describe('locks under faults', () => {
  const testApp = useTestApp({ poolSize: 12 });
  let dataSource: DataSource;
  const points = async () => (await dataSource.query('SELECT points FROM player WHERE id = 1'))[0].points as number;
  const awarded = async () => (await dataSource.query('SELECT count(*)::int AS n FROM awarded'))[0].n as number;

  beforeAll(async () => {
    dataSource = testApp.dataSource;
    await dataSource.query('CREATE TABLE player (id int PRIMARY KEY, points int NOT NULL)');
    await dataSource.query('CREATE TABLE awarded (id serial PRIMARY KEY, worker int NOT NULL)');
  });

  it('a worker SIGKILLed while it holds the advisory lock and an open transaction: the lock frees, its transaction rolls back, the survivors finish, counts exact', async () => {
    await dataSource.query('TRUNCATE awarded');
    await dataSource.query('INSERT INTO player VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET points = 0');
    const survivors = [1, 2, 3].map((i) => spawnWorker(WORKER, testApp.db.url, { increments: 100 } satisfies LockedIncrementsInput, i));
    const victim = spawnWorker(WORKER, testApp.db.url, { increments: 100, stallAt: 20 } satisfies LockedIncrementsInput, 0);
    victim.result.catch(() => undefined);
    await startWorkers(dataSource, [...survivors, victim]);
    while (!victim.stdout().includes('holding')) await new Promise((resolve) => setTimeout(resolve, 10));
    victim.child.kill('SIGKILL');

    const done = (await Promise.all(survivors.map((w) => w.result))) as number[];
    expect(done).toEqual([100, 100, 100]);
    const byWorker = await dataSource.query('SELECT worker, count(*)::int AS n FROM awarded GROUP BY worker ORDER BY worker');
    // The victim's 19 committed awards stay; its 20th, written but never committed, is gone with its transaction.
    expect(byWorker).toEqual([{ worker: 0, n: 19 }, { worker: 1, n: 100 }, { worker: 2, n: 100 }, { worker: 3, n: 100 }]);
    expect(await points()).toBe(319);
    expect(await awarded()).toBe(319);
    reportFaults('SIGKILL of the lock holder', { tried: 320, succeeded: 319, failed: 1, lost: 319 - (await points()) });
  });

  it('lock timeouts under load: named errors, every success counted once, nothing half-committed, no leaked runner', async () => {
    await dataSource.query('TRUNCATE awarded');
    await dataSource.query('INSERT INTO player VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET points = 0');
    const locks = testApp.get(LockService);
    const tx = testApp.get(TransactionHost);
    // 40 callers queue on one key; each holds it ~20 ms, and waits at most 100 ms for it.
    const outcomes = await concurrently(40, (i) =>
      locks.withAdvisoryLock(
        'points:user-1',
        async () => {
          const [{ points: current }] = await tx.manager.query('SELECT points FROM player WHERE id = 1');
          await tx.manager.query('UPDATE player SET points = $1 WHERE id = 1', [current + 1]);
          await tx.manager.query('INSERT INTO awarded (worker) VALUES ($1)', [i]);
          await new Promise((resolve) => setTimeout(resolve, 20));
        },
        { timeoutMs: 100 },
      ),
    );
    const succeeded = outcomes.filter((o) => o.ok).length;
    const failed = outcomes.filter((o) => !o.ok);
    for (const failure of failed) expect((failure as { error: unknown }).error).toBeInstanceOf(LockTimeoutError);
    expect(failed.length).toBeGreaterThan(0);
    expect(await points()).toBe(succeeded);
    expect(await awarded()).toBe(succeeded);
    await expectAllReleased(dataSource);
    reportFaults('lock timeout under load', { tried: 40, succeeded, failed: failed.length, lost: succeeded - (await points()) });
  });
});
