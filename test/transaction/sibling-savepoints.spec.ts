import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Column, DataSource, Entity, PrimaryGeneratedColumn, type Repository } from 'typeorm';
import pg from 'pg';
import { advisoryLockKey, AtomicService, CounterService, LockService, TransactionHost } from '../../lib/index.js';
import { directUrl, expectAllReleased } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';

/** `k` is the get-or-create key; a second unique index on `v` (made below) makes some creations fail. */
@Entity('sibling_item')
class SiblingItem {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', unique: true })
  k!: string;

  @Column({ type: 'int', default: 0 })
  v!: number;
}

/** How long a sibling waits before it starts: it must be safe wherever it lands. */
const STARTS: [string, () => Promise<unknown> | undefined][] = [
  ['at once', () => undefined],
  ['after a microtask', () => Promise.resolve()],
  ['after setImmediate', () => new Promise((resolve) => setImmediate(resolve))],
  ['after a 1 ms timer', () => new Promise((resolve) => setTimeout(resolve, 1))],
];

// A savepoint that rolls back undoes the work issued inside its own scope only. Statements of the same
// transaction started next to it (Promise.all) wait for it or run before it, and are never undone by it.
describe('a savepoint that rolls back next to sibling statements of the same transaction', () => {
  const testApp = useTestApp({ entities: [SiblingItem], poolSize: 4, txlock: { counters: { autoCreate: true } } });
  let tx: TransactionHost;
  let atomic: AtomicService;
  let counters: CounterService;
  let dataSource: DataSource;
  let busyHolder: pg.Client;
  const repository = (): Repository<SiblingItem> => tx.getRepository(SiblingItem);
  const keys = async () => ((await dataSource.query('SELECT k FROM sibling_item ORDER BY k')) as { k: string }[]).map((r) => r.k);

  beforeAll(async () => {
    tx = testApp.get(TransactionHost);
    atomic = testApp.get(AtomicService);
    counters = testApp.get(CounterService);
    dataSource = testApp.dataSource;
    await dataSource.query('CREATE UNIQUE INDEX sibling_item_v ON sibling_item (v)');
    // Another session holds 'busy' throughout, so locking it with a timeout fails inside a lock savepoint.
    // Straight to the server: behind a transaction-mode pooler the session lock would stay on a pooled server
    // connection that the app's next transaction may get (and then take 'busy' again at once).
    busyHolder = new pg.Client({ connectionString: directUrl(testApp.db.url) });
    busyHolder.on('error', () => undefined); // the database is dropped under it at the end
    await busyHolder.connect();
    await busyHolder.query('SELECT pg_advisory_lock($1::bigint)', [advisoryLockKey('busy').toString()]);
  });
  afterAll(() => busyHolder.end().catch(() => undefined));
  beforeEach(async () => {
    await dataSource.query('TRUNCATE sibling_item');
    await dataSource.query(`INSERT INTO sibling_item (k, v) VALUES ('taken', 0)`); // v = 0 is taken: new rows with v = 0 fail
    await counters.reset('orders');
  });

  /** Each failing savepoint user, failing inside its savepoint; the transaction goes on after it. */
  const failing: [string, () => Promise<unknown>][] = [
    ['a NESTED call that throws', () => tx.run({ propagation: 'NESTED' }, async () => {
      await repository().insert({ k: 'nested', v: 7 });
      throw new Error('optional step failed');
    })],
    ['a NESTED call whose statement fails', () => tx.run({ propagation: 'NESTED' }, () => repository().insert({ k: 'nested', v: 0 }))],
    ["TypeORM's manager.transaction() that throws", () => tx.manager.transaction(async (manager) => {
      await manager.insert(SiblingItem, { k: 'typeorm', v: 8 });
      throw new Error('inner transaction failed');
    })],
    ['a lock that times out', () => testApp.get(LockService).withAdvisoryLock('busy', async () => 'ran', { timeoutMs: 20 })],
    ['a multi-key try that finds one key busy', async () => {
      const outcome = await testApp.get(LockService).tryAdvisoryLocks(['free', 'busy'], async () => 'ran');
      if (!outcome.ran) throw new Error('not run');
    }],
    ['getOrCreate', () => atomic.getOrCreate(SiblingItem, { k: 'goc' }, { v: 0 })],
    ['updateOrCreate', () => atomic.updateOrCreate(SiblingItem, { k: 'uoc' }, { v: 0 })],
    ['bulkGetOrCreate', () => atomic.bulkGetOrCreate(SiblingItem, [{ k: 'bulk-a', v: 20 }, { k: 'bulk-b', v: 0 }], { conflictColumns: ['k'] })],
  ];

  /** Each sibling, with what it must have left in the database after the commit. */
  const siblings: [string, (start: () => Promise<unknown> | undefined) => Promise<unknown>, () => Promise<void>][] = [
    ['a plain insert', async (start) => {
      await start();
      await tx.manager.query(`INSERT INTO sibling_item (k, v) VALUES ('sibling', 100)`);
    }, async () => expect(await keys()).toEqual(['sibling', 'taken'])],
    ["a repository's save()", async (start) => {
      await start();
      await repository().save(repository().create({ k: 'saved', v: 101 }));
    }, async () => expect(await keys()).toEqual(['saved', 'taken'])],
    ['a counter increment', async (start) => {
      await start();
      expect(await counters.increment('orders')).toBe(1);
    }, async () => expect(await counters.get('orders')).toBe(1)],
  ];

  for (const [failer, fail] of failing) {
    for (const [sibling, run, check] of siblings) {
      it(`${failer} does not undo ${sibling} started next to it`, async () => {
        for (const [when, start] of STARTS) {
          await dataSource.query(`DELETE FROM sibling_item WHERE k <> 'taken'`);
          await counters.reset('orders');
          const [failed, ran] = await tx.run(async () => {
            await tx.manager.query('SELECT 1'); // the transaction is running: the calls below use savepoints in it
            return Promise.allSettled([fail(), run(start)]);
          });
          expect([failer, when, failed.status, ran.status]).toEqual([failer, when, 'rejected', 'fulfilled']);
          await check();
        }
      });
    }
  }

  it('a sibling that fails inside a released NESTED call only undoes its own savepoint; the other branches commit', async () => {
    const outcome = await tx.run(async () => {
      await tx.manager.query('SELECT 1');
      return Promise.allSettled([
        tx.run({ propagation: 'NESTED' }, () => repository().insert({ k: 'a', v: 1 })),
        tx.run({ propagation: 'NESTED' }, () => repository().insert({ k: 'b', v: 0 })), // fails on v
        tx.run({ propagation: 'NESTED' }, () => repository().insert({ k: 'c', v: 3 })),
        repository().insert({ k: 'd', v: 4 }),
      ]);
    });
    expect(outcome.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(await keys()).toEqual(['a', 'c', 'd', 'taken']);
    await expectAllReleased(dataSource);
  });
});
