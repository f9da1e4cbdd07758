import 'reflect-metadata';
import { DataSource } from 'typeorm';
import { RoundTripLog } from '../../test/support/round-trips.js';
import { serveRounds } from '../remote.js';
import { CALLERS, randomRow, runStatements, type TransactionKind } from '../scenarios/transaction-work.js';

// typeorm-transactional patches TypeORM's classes for the whole process (EntityManager.getRepository,
// Repository.manager), so it is measured here, in a process of its own, and never slows or speeds up the
// variants in the bench's process.
serveRounds(async (url) => {
  const peer = await import('typeorm-transactional');
  peer.initializeTransactionalContext({ storageDriver: peer.StorageDriver.ASYNC_LOCAL_STORAGE });
  const dataSource = peer.addTransactionalDataSource(new DataSource({ type: 'postgres', url, extra: { max: CALLERS } }));
  await dataSource.initialize();
  // Inside runInTransaction, the patched DataSource.manager is the transaction's.
  const query = (sql: string, params: unknown[]) => dataSource.manager.query(sql, params);
  // Prove it really wraps the statements in one transaction before timing it.
  const txids = await peer.runInTransaction(async () => [await query('SELECT txid_current() AS t', []), await query('SELECT txid_current() AS t', [])]);
  const [first, second] = txids as { t: string }[][];
  if (first![0]!.t !== second![0]!.t) throw new Error('statements did not share one transaction');

  const transaction = (kind: TransactionKind, options?: Parameters<typeof peer.runInTransaction>[1]) => () =>
    peer.runInTransaction(() => runStatements(query, randomRow(), kind), options);
  return {
    ops: {
      plain: transaction('plain'),
      strict: transaction('strict', { isolationLevel: peer.IsolationLevel.SERIALIZABLE }),
      locked: transaction('locked'),
    },
    log: RoundTripLog.attach(dataSource),
    close: () => dataSource.destroy(),
  };
});
