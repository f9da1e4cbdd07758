import { beforeAll, describe, expect, it } from '@jest/globals';
import { LockService, TransactionHost } from '../../lib/index.js';
import { RoundTripLog } from '../support/round-trips.js';
import { useTestApp } from '../support/test-app.js';

// A NESTED savepoint is held back like BEGIN: it travels with the first statement sent inside it, and one that ends
// before anything was sent in it costs nothing (peers send SAVEPOINT, then ROLLBACK TO SAVEPOINT, for a call that throws).
describe('round trips of NESTED calls', () => {
  const testApp = useTestApp({ poolSize: 3 });
  let tx: TransactionHost;
  let locks: LockService;

  beforeAll(() => {
    tx = testApp.get(TransactionHost);
    locks = testApp.get(LockService);
  });

  const sent = async (body: () => Promise<unknown>): Promise<string[]> => {
    const log = RoundTripLog.attach(testApp.dataSource);
    await tx.run(body);
    log.stop();
    return log.sent.map((sql) => sql.replace(/txlock_sp_\d+/g, 'sp').split(';\n').map((part) => part.trim().split(/\s+/).slice(0, 3).join(' ')).join(' + '));
  };

  it('a NESTED call that throws before any statement sends nothing for its savepoint', async () => {
    expect(
      await sent(async () => {
        await tx.manager.query('SELECT 1');
        await tx.run({ propagation: 'NESTED' }, async () => Promise.reject(new Error('no'))).catch(() => undefined);
        await tx.manager.query('SELECT 2');
      }),
    ).toEqual(['BEGIN', 'SELECT 1', 'SELECT 2', 'COMMIT']);
  });

  it("a NESTED lock call's SAVEPOINT travels with its lock statement; its failure is one round trip", async () => {
    expect(
      await sent(async () => {
        await tx.manager.query('SELECT 1');
        await locks.withAdvisoryLock('nested-round-trips', async () => Promise.reject(new Error('no')), { propagation: 'NESTED' }).catch(() => undefined);
      }),
    ).toEqual(['BEGIN', 'SELECT 1', expect.stringMatching(/^SAVEPOINT sp \+ SELECT pg_advisory_xact_lock\(/) as unknown as string, 'ROLLBACK TO SAVEPOINT + RELEASE SAVEPOINT sp', 'COMMIT']);
  });
});
