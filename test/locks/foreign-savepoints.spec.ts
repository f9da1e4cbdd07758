import { beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { advisoryLockKey, LockService, TransactionHost } from '../../lib/index.js';
import { expectAllReleased } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';

// A savepoint that rolls back releases the advisory locks taken inside it (PostgreSQL semantics), whoever made
// the savepoint. Re-entrancy bookkeeping may skip a lock statement only while the lock is provably held.
describe('advisory locks and savepoints the lock call did not make', () => {
  const testApp = useTestApp({ poolSize: 4 });
  let tx: TransactionHost;
  let locks: LockService;

  beforeAll(() => {
    tx = testApp.get(TransactionHost);
    locks = testApp.get(LockService);
  });

  /** Whether another session can take the key right now (it gives it back at once). */
  const freeElsewhere = async (key: string): Promise<boolean> => {
    const client = new pg.Client({ connectionString: testApp.db.url });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [advisoryLockKey(key).toString()]);
      return rows[0].ok as boolean;
    } finally {
      await client.end();
    }
  };

  /** Each way of opening a savepoint, locking inside it and rolling it back, inside the current transaction. */
  const rolledBackSavepoints: [string, (key: string) => Promise<unknown>][] = [
    ['a NESTED call that throws', (key) =>
      tx.run({ propagation: 'NESTED' }, () => locks.withAdvisoryLock(key, async () => { throw new Error('inner'); })).catch(() => undefined)],
    ["TypeORM's manager.transaction() that throws", (key) =>
      tx.manager.transaction(async () => {
        await locks.withAdvisoryLock(key, async () => 'locked');
        throw new Error('inner failed');
      }).catch(() => undefined)],
    ['raw SAVEPOINT / ROLLBACK TO SAVEPOINT statements', async (key) => {
      await tx.manager.query('SAVEPOINT app_savepoint');
      await locks.withAdvisoryLock(key, async () => 'locked');
      await tx.manager.query('ROLLBACK TO SAVEPOINT app_savepoint');
    }],
    ["the query runner's own startTransaction() / rollbackTransaction()", async (key) => {
      await tx.queryRunner!.startTransaction();
      await locks.withAdvisoryLock(key, async () => 'locked');
      await tx.queryRunner!.rollbackTransaction();
    }],
  ];

  for (const [savepoint, lockInside] of rolledBackSavepoints) {
    it(`after ${savepoint} rolled back, locking the key again really takes it`, async () => {
      const key = `acct:${savepoint}`;
      const seen = await tx.run(async () => {
        await tx.manager.query('SELECT 1');
        await lockInside(key);
        const releasedBySavepoint = await freeElsewhere(key);
        const heldAgain = await locks.withAdvisoryLock(key, async () => !(await freeElsewhere(key)));
        return { releasedBySavepoint, heldAgain };
      });
      expect(seen).toEqual({ releasedBySavepoint: true, heldAgain: true });
      await expectAllReleased(testApp.dataSource);
    });
  }
});
