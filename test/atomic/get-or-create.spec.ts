import { describe, it, expect, beforeAll } from '@jest/globals';
import { DataSource } from 'typeorm';
import {
  AdvisoryIsolationError,
  AtomicService,
  GetOrCreateConflictError,
  GetOrCreateSerializationError,
  InvalidOptionError,
  IsolationLevel,
  MissingUniqueConstraintError,
  Propagation,
  TransactionHost,
} from '../../lib/index.js';
import { sqlState } from '../../lib/transaction/sql-state.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { expectAllReleased } from '../support/database.js';
import { RoundTripLog } from '../support/round-trips.js';
import { ATOMIC_ENTITIES, LooseSession, Session, Setting } from './entities.js';
import { useTestApp } from '../support/test-app.js';

const CALLERS = 200;

// Connections: one app with a pool of 20.
describe('AtomicService.getOrCreate / updateOrCreate', () => {
  const testApp = useTestApp({ poolSize: 20, entities: ATOMIC_ENTITIES, txlock: { acquireTimeoutMs: 30_000 } });
  let atomic: AtomicService;
  let tx: TransactionHost;
  let dataSource: DataSource;

  beforeAll(async () => {
    atomic = testApp.get(AtomicService);
    tx = testApp.get(TransactionHost);
    dataSource = testApp.dataSource;
  });

  const sessionsWithKey = (key: string) => dataSource.getRepository(Session).countBy({ key });

  it('creates once, then gets; defaults, class initialisers and database defaults apply; where wins over defaults', async () => {
    const first = await atomic.getOrCreate(Session, { key: 'basic' }, { userId: 7, key: 'ignored' });
    expect(first.created).toBe(true);
    expect(first.entity).toBeInstanceOf(Session);
    expect(first.entity).toMatchObject({ key: 'basic', userId: 7, origin: 'web', data: {}, token: null });
    expect(first.entity.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(first.entity.createdAt).toBeInstanceOf(Date);
    const second = await atomic.getOrCreate(Session, { key: 'basic' }, { userId: 8 });
    expect(second).toEqual({ entity: first.entity, created: false });
  });

  it('takes one round trip when the row exists', async () => {
    await atomic.getOrCreate(Session, { key: 'one-trip' });
    const log = RoundTripLog.attach(dataSource);
    const { created } = await atomic.getOrCreate(Session, { key: 'one-trip' });
    log.stop();
    expect(created).toBe(false);
    expect(log.count).toBe(1);
  });

  it(`${CALLERS} concurrent callers: one row, one created: true, one id for all`, async () => {
    const results = valuesOf(await concurrently(CALLERS, () => atomic.getOrCreate(Session, { key: 'hot' }, { data: { n: 1 } })));
    expect(await sessionsWithKey('hot')).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.entity.id)).size).toBe(1);
    console.log(`[getOrCreate] ours, ${CALLERS} concurrent: rows 1, created 1, ids ${new Set(results.map((r) => r.entity.id)).size}`);
  });

  it('control: the naive findOne + save get-or-create duplicates the row in the same test', async () => {
    const repo = dataSource.getRepository(LooseSession);
    const results = valuesOf(
      await concurrently(CALLERS, async () => (await repo.findOneBy({ key: 'hot' })) ?? (await repo.save(repo.create({ key: 'hot' })))),
    );
    const rows = await repo.countBy({ key: 'hot' });
    console.log(`[getOrCreate] naive findOne+save, ${CALLERS} concurrent: rows ${rows}, distinct ids ${new Set(results.map((r) => r.id)).size}`);
    expect(rows).toBeGreaterThan(1);
  });

  it(`${CALLERS} concurrent callers, each in its own REPEATABLE READ transaction with retries: one row, one created, one id`, async () => {
    let attempts = 0;
    const results = valuesOf(
      await concurrently(CALLERS, () =>
        tx.run({ isolation: IsolationLevel.REPEATABLE_READ, retries: 20 }, async () => {
          attempts++;
          // A statement first, so the snapshot is older than the other callers' inserts.
          await tx.manager.query('SELECT 1');
          return atomic.getOrCreate(Session, { key: 'rr' });
        }),
      ),
    );
    expect(await sessionsWithKey('rr')).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.entity.id)).size).toBe(1);
    console.log(`[getOrCreate] REPEATABLE READ, ${CALLERS} concurrent: ${attempts} attempts (retries = serialization errors raised)`);
  });

  it('REPEATABLE READ: losing to a row the snapshot cannot see is a retryable named error, and the transaction stays usable', async () => {
    const outcome = await tx.run({ isolation: IsolationLevel.REPEATABLE_READ }, async () => {
      await tx.manager.query('SELECT 1');
      await tx.run({ propagation: Propagation.NOT_SUPPORTED }, () => atomic.getOrCreate(Session, { key: 'invisible' }));
      const error = await atomic.getOrCreate(Session, { key: 'invisible' }).catch((e: unknown) => e);
      const [row] = (await tx.manager.query('SELECT 2 AS two')) as { two: number }[];
      return { error, two: row!.two };
    });
    expect(outcome.error).toBeInstanceOf(GetOrCreateSerializationError);
    expect(sqlState(outcome.error)).toBe('40001');
    expect(outcome.two).toBe(2);
  });

  it('READ COMMITTED: an insert that waited on a row committed after its snapshot re-reads it (created: false, same id)', async () => {
    const runner = dataSource.createQueryRunner();
    await runner.connect();
    await runner.startTransaction();
    const [{ id }] = (await runner.query(`INSERT INTO atomic_session (key, origin) VALUES ('late', 'other') RETURNING id`)) as { id: string }[];
    const pending = atomic.getOrCreate(Session, { key: 'late' });
    await waitForLockWait(dataSource);
    await runner.commitTransaction();
    await runner.release();
    const result = await pending;
    expect(result.created).toBe(false);
    expect(result.entity).toMatchObject({ id, origin: 'other' });
  });

  it('inside a transaction a failure does not abort it (savepoint), and only the expected conflict is absorbed', async () => {
    await atomic.getOrCreate(Session, { key: 'holder' }, { token: 'taken' });
    const outcome = await tx.run(async () => {
      const created = await atomic.getOrCreate(Session, { key: 'in-tx' });
      // Another unique column clashes: a real error, surfaced, and the transaction goes on.
      const error = await atomic.getOrCreate(Session, { key: 'clash' }, { token: 'taken' }).catch((e: unknown) => e);
      const after = await atomic.getOrCreate(Session, { key: 'in-tx-2' });
      return { created: created.created, error, after: after.created };
    });
    expect(outcome.created).toBe(true);
    expect(outcome.after).toBe(true);
    expect((outcome.error as { code?: string }).code ?? (outcome.error as { driverError?: { code?: string } }).driverError?.code).toBe('23505');
    expect(await sessionsWithKey('in-tx')).toBe(1);
    expect(await sessionsWithKey('clash')).toBe(0);
  });

  it('a getOrCreate inside a transaction that rolls back leaves no row', async () => {
    await expect(
      tx.run(async () => {
        expect((await atomic.getOrCreate(Session, { key: 'rolled' })).created).toBe(true);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await sessionsWithKey('rolled')).toBe(0);
  });

  it('without a unique constraint: a named error naming the constraint to add', async () => {
    const error = await atomic.getOrCreate(LooseSession, { key: 'x' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MissingUniqueConstraintError);
    expect(String((error as Error).message)).toContain(`@Unique(['key'])`);
    expect(String((error as Error).message)).toContain('CREATE UNIQUE INDEX ON "atomic_loose_session" (key)');
  });

  it(`{ lock: 'advisory' } serialises callers when there is no unique constraint: ${CALLERS} concurrent → one row`, async () => {
    const results = valuesOf(await concurrently(CALLERS, () => atomic.getOrCreate(LooseSession, { key: 'locked' }, {}, { lock: 'advisory' })));
    expect(await dataSource.getRepository(LooseSession).countBy({ key: 'locked' })).toBe(1);
    expect(results.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(results.map((r) => r.entity.id)).size).toBe(1);
    await expect(
      tx.run({ isolation: IsolationLevel.REPEATABLE_READ }, () => atomic.getOrCreate(LooseSession, { key: 'rr' }, {}, { lock: 'advisory' })),
    ).rejects.toBeInstanceOf(AdvisoryIsolationError);
    await expect(atomic.getOrCreate(LooseSession, { key: 'x' }, {}, { lock: 'table' as 'advisory' })).rejects.toBeInstanceOf(InvalidOptionError);
  });

  it('binds hostile values; refuses unknown properties and empty where', async () => {
    const evil = `'); DELETE FROM atomic_session; --`;
    const { entity } = await atomic.getOrCreate(Session, { key: evil }, { data: { evil } });
    expect(entity).toMatchObject({ key: evil, data: { evil } });
    expect(await dataSource.getRepository(Session).count()).toBeGreaterThan(3);
    await expect(atomic.getOrCreate(Session, { ['key" = key --' as 'key']: 'x' })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(atomic.getOrCreate(Session, {})).rejects.toBeInstanceOf(InvalidOptionError);
  });

  it('updateOrCreate: one statement that creates, then updates; concurrent callers leave one row and one created', async () => {
    const log = RoundTripLog.attach(dataSource);
    const created = await atomic.updateOrCreate(Setting, { userId: 1, name: 'theme' }, { value: 'dark' });
    log.stop();
    expect(log.count).toBe(1);
    expect(created).toMatchObject({ created: true, entity: { userId: 1, name: 'theme', value: 'dark', version: 1 } });
    const updated = await atomic.updateOrCreate(Setting, { userId: 1, name: 'theme' }, { value: 'light' });
    expect(updated).toMatchObject({ created: false, entity: { id: created.entity.id, value: 'light', version: 2 } });
    const results = valuesOf(await concurrently(100, (i) => atomic.updateOrCreate(Setting, { userId: 2, name: 'lang' }, { value: `v${i}` })));
    expect(results.filter((r) => r.created)).toHaveLength(1);
    const row = await dataSource.getRepository(Setting).findOneByOrFail({ userId: 2, name: 'lang' });
    expect(row.version).toBe(100);
    expect(await atomic.updateOrCreate(Setting, { userId: 2, name: 'lang' }, {})).toMatchObject({ created: false, entity: { id: row.id } });
  });

  it('a where that matches the unique key but not another where column is a named conflict, not a wrong row', async () => {
    await atomic.getOrCreate(Session, { key: 'owned' }, { userId: 1 });
    await expect(atomic.getOrCreate(Session, { key: 'owned', userId: 2 })).rejects.toBeInstanceOf(GetOrCreateConflictError);
  });

  it('releases every connection', async () => {
    await expectAllReleased(dataSource);
  });
});

/** Resolves once some backend of this database waits for a lock (our INSERT waiting on the open transaction). */
async function waitForLockWait(dataSource: DataSource): Promise<void> {
  for (;;) {
    const [row] = (await dataSource.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    )) as { n: number }[];
    if (row!.n > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
