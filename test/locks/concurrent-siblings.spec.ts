import { beforeAll, describe, expect, it } from '@jest/globals';
import { DataSource } from 'typeorm';
import { LockService, TransactionHost } from '../../lib/index.js';
import { expectAllReleased } from '../support/database.js';
import { holding } from '../support/gate.js';
import { useTestApp } from '../support/test-app.js';

// A lock taken inside a running transaction uses a savepoint; statements of the same transaction started
// at the same moment (Promise.all) must never land inside it, where a ROLLBACK TO SAVEPOINT would undo them.
describe('locks next to concurrent statements of the same transaction', () => {
  const testApp = useTestApp({ poolSize: 4 });
  let locks: LockService;
  let tx: TransactionHost;
  let dataSource: DataSource;

  beforeAll(async () => {
    locks = testApp.get(LockService);
    tx = testApp.get(TransactionHost);
    dataSource = testApp.dataSource;
    await dataSource.query('CREATE TABLE sibling_rows (name text PRIMARY KEY)');
  });

  it('a failed multi-key try does not undo a sibling insert; a timed-out table lock does not cut a sibling short', async () => {
    const release = await holding((body) => locks.withAdvisoryLock('busy-b', body, { propagation: 'REQUIRES_NEW' }));
    const insert = (name: string) => tx.manager.query('INSERT INTO sibling_rows (name) VALUES ($1)', [name]);
    const outcome = await tx.run(async () => {
      await tx.manager.query('SELECT 1'); // the transaction is running: the locks below join it with a savepoint
      const [tried] = await Promise.all([
        locks.tryAdvisoryLocks(['free-a', 'busy-b'], async () => 'ran'),
        insert('first'),
        insert('second'),
      ]);
      const [table] = await Promise.all([
        locks.lockTables('sibling_rows', 'EXCLUSIVE', { timeoutMs: 1_000 }).then(() => 'locked'),
        insert('third'),
      ]);
      return { tried, table };
    });
    await release();
    expect(outcome).toEqual({ tried: { ran: false, reason: 'locked' }, table: 'locked' });
    expect((await dataSource.query('SELECT name FROM sibling_rows ORDER BY name')).map((r: { name: string }) => r.name)).toEqual(['first', 'second', 'third']);
    await expectAllReleased(dataSource);
  });
});
