import { beforeAll, describe, expect, it } from '@jest/globals';
import { QueryFailedError } from 'typeorm';
import { TransactionHost } from '../../lib/index.js';
import { expectAllReleased } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';

// A constraint checked at COMMIT (DEFERRABLE INITIALLY DEFERRED) fails the COMMIT itself. The error must have
// the shape every failed statement has (TypeORM's QueryFailedError with driverError and code), so one
// exception filter that maps 23505 handles both.
describe('an error raised by COMMIT', () => {
  const testApp = useTestApp();
  let tx: TransactionHost;

  beforeAll(async () => {
    tx = testApp.get(TransactionHost);
    await testApp.dataSource.query('CREATE TABLE deferred_key (k int, CONSTRAINT deferred_key_unique UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)');
    await testApp.dataSource.query('INSERT INTO deferred_key VALUES (1)');
  });

  it('a deferred unique violation is a QueryFailedError with code 23505; the rollback hooks run; nothing is committed', async () => {
    const hooks: string[] = [];
    const error = await tx
      .run(async () => {
        await tx.manager.query('INSERT INTO deferred_key VALUES (1)'); // accepted for now: checked at COMMIT
        tx.afterCommit(() => void hooks.push('afterCommit'));
        tx.afterRollback(() => void hooks.push('afterRollback'));
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QueryFailedError);
    const failed = error as QueryFailedError & { code?: string; constraint?: string };
    expect((failed.driverError as { code?: string }).code).toBe('23505');
    expect(failed.code).toBe('23505');
    expect(failed.constraint).toBe('deferred_key_unique');
    expect(failed.query).toBe('COMMIT');
    expect(hooks).toEqual(['afterRollback']);
    expect(await testApp.dataSource.query('SELECT count(*)::int AS n FROM deferred_key')).toEqual([{ n: 1 }]);
    await expectAllReleased(testApp.dataSource);
  });
});
