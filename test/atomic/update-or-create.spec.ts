import { describe, it, expect, beforeAll } from '@jest/globals';
import { DataSource, Repository } from 'typeorm';
import { AtomicService, GetOrCreateConflictError, InvalidOptionError, TransactionHost, TxLockError } from '../../lib/index.js';
import { sqlState } from '../../lib/transaction/sql-state.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { expectAllReleased } from '../support/database.js';
import { RoundTripLog } from '../support/round-trips.js';
import { useTestApp } from '../support/test-app.js';
import { ATOMIC_ENTITIES, Book, TenantSetting } from './entities.js';

const CALLERS = 20;

// Connections: one app with a pool of 25, plus one query runner at a time.
describe('updateOrCreate: partial updates, lookup columns in values, NOT NULL columns', () => {
  const testApp = useTestApp({ poolSize: 25, entities: ATOMIC_ENTITIES });
  let atomic: AtomicService;
  let tx: TransactionHost;
  let dataSource: DataSource;
  let books: Repository<Book>;

  beforeAll(async () => {
    atomic = testApp.get(AtomicService);
    tx = testApp.get(TransactionHost);
    dataSource = testApp.dataSource;
    books = dataSource.getRepository(Book);
  });

  /** A MissingColumnValueError (asserted by name and fields, so this file also loads where the class does not exist). */
  const expectMissingColumn = (error: unknown, column: string) => {
    expect(error).toBeInstanceOf(TxLockError);
    expect(error).toMatchObject({ name: 'MissingColumnValueError', entity: 'Book', column });
    expect(sqlState(error)).toBe('23502');
  };

  it('updates only the given columns of an existing row, found by primary key or by unique key', async () => {
    const book = await books.save(books.create({ isbn: 'partial', name: 'Dune' }));
    const byId = await atomic.updateOrCreate(Book, { id: book.id }, { publisherId: 5 });
    expect(byId).toMatchObject({ created: false, entity: { id: book.id, isbn: 'partial', name: 'Dune', publisherId: 5, version: 2 } });
    const byIsbn = await atomic.updateOrCreate(Book, { isbn: 'partial' }, { shelf: 'A' });
    expect(byIsbn).toMatchObject({ created: false, entity: { id: book.id, name: 'Dune', publisherId: 5, shelf: 'A', version: 3 } });
    expect(await books.findOneByOrFail({ id: book.id })).toMatchObject({ name: 'Dune', publisherId: 5, shelf: 'A', version: 3 });
    expect(await books.countBy({ isbn: 'partial' })).toBe(1);
  });

  it('is still one round trip, whether it updates or creates', async () => {
    await books.save(books.create({ isbn: 'trips', name: 'Emma' }));
    const log = RoundTripLog.attach(dataSource);
    const updated = await atomic.updateOrCreate(Book, { isbn: 'trips' }, { publisherId: 1 });
    const updates = log.count;
    log.reset();
    const created = await atomic.updateOrCreate(Book, { isbn: 'trips-new' }, { name: 'Persuasion' });
    const creates = log.count;
    log.stop();
    expect([updated.created, created.created]).toEqual([false, true]);
    expect([updates, creates]).toEqual([1, 1]);
  });

  it(`${CALLERS} concurrent partial updates of one existing row: all succeed, one row, every update applied`, async () => {
    const book = await books.save(books.create({ isbn: 'hot-partial', name: 'Ulysses' }));
    const results = valuesOf(await concurrently(CALLERS, (i) => atomic.updateOrCreate(Book, { isbn: 'hot-partial' }, { publisherId: i })));
    expect(await books.countBy({ isbn: 'hot-partial' })).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(0);
    const row = await books.findOneByOrFail({ isbn: 'hot-partial' });
    expect(row).toMatchObject({ id: book.id, name: 'Ulysses', version: 1 + CALLERS });
  });

  it(`${CALLERS} concurrent callers creating one key: exactly one row, one created, every update applied`, async () => {
    const results = valuesOf(await concurrently(CALLERS, (i) => atomic.updateOrCreate(Book, { isbn: 'hot-new' }, { name: 'Middlemarch', publisherId: i })));
    expect(await books.countBy({ isbn: 'hot-new' })).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.entity.id)).size).toBe(1);
    expect((await books.findOneByOrFail({ isbn: 'hot-new' })).version).toBe(CALLERS);
  });

  it('a new row without a NOT NULL column is MissingColumnValueError naming it, in all three calls; nothing is created', async () => {
    expectMissingColumn(await atomic.updateOrCreate(Book, { isbn: 'nameless' }, { publisherId: 1 }).catch((e: unknown) => e), 'name');
    expectMissingColumn(await atomic.getOrCreate(Book, { isbn: 'nameless' }, { publisherId: 1 }).catch((e: unknown) => e), 'name');
    expectMissingColumn(await atomic.bulkGetOrCreate(Book, [{ isbn: 'nameless' }], { conflictColumns: ['isbn'] }).catch((e: unknown) => e), 'name');
    expect(await books.countBy({ isbn: 'nameless' })).toBe(0);
    // An existing row is found without it.
    await books.save(books.create({ isbn: 'named', name: 'Emma' }));
    expect(await atomic.getOrCreate(Book, { isbn: 'named' })).toMatchObject({ created: false, entity: { name: 'Emma' } });
    // A NULL the caller gives explicitly is the caller's value: the database's own error, not "missing".
    const explicit = await atomic.updateOrCreate(Book, { isbn: 'named' }, { name: null as unknown as string }).catch((e: unknown) => e);
    expect(sqlState(explicit)).toBe('23502');
    expect((explicit as Error).name).not.toBe('MissingColumnValueError');
    expect(await books.findOneByOrFail({ isbn: 'named' })).toMatchObject({ name: 'Emma', version: 1 });
  });

  it('READ COMMITTED: a row committed after the statement snapshot is updated, never duplicated (full values: ON CONFLICT)', async () => {
    const runner = dataSource.createQueryRunner();
    await runner.connect();
    await runner.startTransaction();
    const [{ id }] = (await runner.query(`INSERT INTO atomic_book (isbn, name, version) VALUES ('late', 'Other', 1) RETURNING id`)) as { id: number }[];
    const pending = atomic.updateOrCreate(Book, { isbn: 'late' }, { name: 'Mine', publisherId: 9 });
    await waitForLockWait(dataSource);
    await runner.commitTransaction();
    await runner.release();
    expect(await pending).toMatchObject({ created: false, entity: { id, name: 'Mine', publisherId: 9, version: 2 } });
    expect(await books.countBy({ isbn: 'late' })).toBe(1);
  });

  it('READ COMMITTED: a partial update that meets a row committed after its snapshot takes it on a second statement', async () => {
    // PostgreSQL checks NOT NULL on the proposed row before it looks for the conflicting one. A BEFORE INSERT
    // trigger holds our INSERT (only ours: no name) on an advisory lock until the other row is committed.
    await dataSource.query(`CREATE FUNCTION atomic_book_hold() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.name IS NULL THEN PERFORM pg_advisory_xact_lock_shared(4242); END IF; RETURN NEW; END $$`);
    await dataSource.query(`CREATE TRIGGER atomic_book_hold BEFORE INSERT ON atomic_book FOR EACH ROW EXECUTE FUNCTION atomic_book_hold()`);
    const runner = dataSource.createQueryRunner();
    try {
      await runner.connect();
      await runner.startTransaction();
      const [{ id }] = (await runner.query(`INSERT INTO atomic_book (isbn, name, version) VALUES ('late-partial', 'Dune', 1) RETURNING id`)) as {
        id: number;
      }[];
      await runner.query('SELECT pg_advisory_lock(4242)');
      const pending = atomic.updateOrCreate(Book, { isbn: 'late-partial' }, { publisherId: 3 });
      await waitForLockWait(dataSource);
      await runner.commitTransaction();
      await runner.query('SELECT pg_advisory_unlock(4242)');
      expect(await pending).toMatchObject({ created: false, entity: { id, name: 'Dune', publisherId: 3, version: 2 } });
      expect(await books.countBy({ isbn: 'late-partial' })).toBe(1);
    } finally {
      await runner.release();
      await dataSource.query('DROP TRIGGER atomic_book_hold ON atomic_book; DROP FUNCTION atomic_book_hold()');
    }
  });

  it('a values entry for a where column outside the unique key is applied: found by the old value, set to the new one', async () => {
    await books.save(books.create({ isbn: 'move', name: 'Emma', shelf: 'A' }));
    const moved = await atomic.updateOrCreate(Book, { isbn: 'move', shelf: 'A' }, { name: 'Emma', shelf: 'B' });
    expect(await books.findOneByOrFail({ isbn: 'move' })).toMatchObject({ shelf: 'B', version: 2 });
    expect(moved).toMatchObject({ created: false, entity: { shelf: 'B', version: 2 } });
    // Created: the new value, not the lookup's.
    const created = await atomic.updateOrCreate(Book, { isbn: 'move-new', shelf: 'A' }, { name: 'Kim', shelf: 'B' });
    expect(await books.findOneByOrFail({ isbn: 'move-new' })).toMatchObject({ shelf: 'B' });
    expect(created).toMatchObject({ created: true, entity: { shelf: 'B' } });
    // Where the row no longer has the old value, nothing is overwritten: a named conflict (also when the
    // values could not create a row: the key is taken, so no INSERT is attempted).
    for (const values of [{ name: 'Emma', shelf: 'C' }, { shelf: 'C' }]) {
      await expect(atomic.updateOrCreate(Book, { isbn: 'move', shelf: 'A' }, values)).rejects.toBeInstanceOf(GetOrCreateConflictError);
    }
    expect(await books.findOneByOrFail({ isbn: 'move' })).toMatchObject({ shelf: 'B', version: 2 });
  });

  it('ON CONFLICT race path: the guard compares with the where value, and the new value is applied', async () => {
    for (const [isbn, committedShelf] of [
      ['race-move', 'A'],
      ['race-other', 'C'],
    ] as const) {
      const runner = dataSource.createQueryRunner();
      await runner.connect();
      await runner.startTransaction();
      await runner.query(`INSERT INTO atomic_book (isbn, name, shelf, version) VALUES ($1, 'Other', $2, 1)`, [isbn, committedShelf]);
      const pending = atomic.updateOrCreate(Book, { isbn, shelf: 'A' }, { name: 'Mine', shelf: 'B' }).catch((e: unknown) => e);
      await waitForLockWait(dataSource);
      await runner.commitTransaction();
      await runner.release();
      const outcome = await pending;
      if (committedShelf === 'A') expect(outcome).toMatchObject({ created: false, entity: { name: 'Mine', shelf: 'B' } });
      else expect(outcome).toBeInstanceOf(GetOrCreateConflictError);
      expect(await books.findBy({ isbn })).toMatchObject([committedShelf === 'A' ? { name: 'Mine', shelf: 'B' } : { name: 'Other', shelf: 'C' }]);
    }
  });

  it('a values entry that changes a unique key column is refused, naming it; the same value is fine', async () => {
    const book = await books.save(books.create({ isbn: 'key', name: 'Emma' }));
    const error = await atomic.updateOrCreate(Book, { isbn: 'key' }, { isbn: 'key-2', name: 'Changed' }).catch((e: unknown) => e);
    expect(await books.countBy({ isbn: 'key-2' })).toBe(0);
    expect(await books.findOneByOrFail({ id: book.id })).toMatchObject({ isbn: 'key', name: 'Emma', version: 1 });
    expect(error).toBeInstanceOf(InvalidOptionError);
    expect(error).toMatchObject({ option: 'values.isbn', value: 'key-2' });
    expect((error as Error).message).toContain('separate call');
    await expect(atomic.updateOrCreate(Book, { id: book.id }, { id: book.id + 1000 })).rejects.toMatchObject({ option: 'values.id' });
    const same = await atomic.updateOrCreate(Book, { isbn: 'key' }, { isbn: 'key', name: 'Same key' });
    expect(same).toMatchObject({ created: false, entity: { id: book.id, isbn: 'key', name: 'Same key', version: 2 } });
    expect(await atomic.updateOrCreate(Book, { id: book.id }, { id: String(book.id) as unknown as number })).toMatchObject({ created: false });
  });

  it('inside a transaction each call runs in its own savepoint: a failed one leaves the transaction usable', async () => {
    await books.save(books.create({ isbn: 'tx-existing', name: 'Emma' }));
    const log = RoundTripLog.attach(dataSource);
    const outcome = await tx.run(async () => {
      const partial = await atomic.updateOrCreate(Book, { isbn: 'tx-existing' }, { publisherId: 4 });
      const missing = await atomic.updateOrCreate(Book, { isbn: 'tx-missing' }, { publisherId: 4 }).catch((e: unknown) => e);
      const nullKey = await atomic.getOrCreate(TenantSetting, { tenant: null, name: 'tx' }).catch((e: unknown) => e);
      const created = await atomic.getOrCreate(Book, { isbn: 'tx-created' }, { name: 'Persuasion' });
      return { partial: partial.created, missing, nullKey, created: created.created };
    });
    log.stop();
    expect(outcome).toMatchObject({ partial: false, created: true });
    expectMissingColumn(outcome.missing, 'name');
    expect(outcome.nullKey).toBeInstanceOf(InvalidOptionError);
    expect(await books.findOneByOrFail({ isbn: 'tx-existing' })).toMatchObject({ publisherId: 4, version: 2 });
    expect(await books.countBy({ isbn: 'tx-missing' })).toBe(0);
    expect(await books.countBy({ isbn: 'tx-created' })).toBe(1);
    expect(log.sent.filter((sql) => /^SAVEPOINT /i.test(sql)).length).toBeGreaterThanOrEqual(4);
    expect(log.sent.filter((sql) => /^ROLLBACK TO SAVEPOINT /i.test(sql)).length).toBeGreaterThanOrEqual(2);
  });

  it('releases every connection', async () => {
    await expectAllReleased(dataSource);
  });
});

/** Resolves once some backend of this database waits for a lock. */
async function waitForLockWait(dataSource: DataSource): Promise<void> {
  for (;;) {
    const [row] = (await dataSource.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    )) as { n: number }[];
    if (row!.n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
