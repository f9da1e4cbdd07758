import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Injectable, Param, type INestApplication } from '@nestjs/common';
import request from 'supertest';
import { Column, DataSource, Entity, PrimaryGeneratedColumn, TransactionNotStartedError, type Repository } from 'typeorm';
import {
  CounterService,
  InjectTxRepository,
  LockService,
  RollbackOnlyError,
  SingleFlightService,
  Transactional,
  TransactionHost,
  TransactionTimeoutError,
} from '../../lib/index.js';
import { beginTestTransaction, useRollbackPerTest } from '../../lib/testing/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import pg from 'pg';

@Entity('fidelity_item')
class FidelityItem {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  k!: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const outcome = (promise: Promise<unknown>): Promise<string> =>
  promise.then(
    () => 'ok',
    (error: unknown) => (error as Error).constructor.name,
  );

@Injectable()
class Items {
  readonly late: Promise<string>[] = [];

  constructor(
    readonly ds: DataSource,
    @InjectTxRepository(FidelityItem) readonly viaTx: Repository<FidelityItem>,
    readonly counters: CounterService,
    readonly flights: SingleFlightService,
    readonly tx: TransactionHost,
    readonly locks: LockService,
  ) {}

  /** Records an entry a little after the call returns (an audit, a debounced save): work that outlives its caller. */
  recordSoon(k: string, delayMs: number): void {
    this.late.push(outcome(sleep(delayMs).then(() => this.ds.getRepository(FidelityItem).insert({ k }))));
  }

  @Transactional({ readOnly: true })
  async readOnlyThatWrites(): Promise<void> {
    await this.ds.getRepository(FidelityItem).insert({ k: 'written in a read-only transaction' });
  }

  @Transactional({ timeoutMs: 200 })
  async slow(): Promise<void> {
    await this.ds.query('SELECT pg_sleep(0.5)');
  }

  /** Catches a failed statement and goes on: production's COMMIT then rolls back (RollbackOnlyError). */
  @Transactional()
  async catchesAFailedStatement(): Promise<void> {
    await this.ds.query('SELECT 1/0').catch(() => undefined);
  }

  /** The same in a read-only transaction, with a write it refuses. */
  @Transactional({ readOnly: true })
  async catchesARefusedWrite(): Promise<void> {
    await this.ds.getRepository(FidelityItem).insert({ k: 'refused' }).catch(() => undefined);
  }

  /** Records outside its transaction (NOT_SUPPORTED) what must not depend on it: each statement there is autocommit's. */
  @Transactional()
  async recordsOutside(): Promise<string[]> {
    const outside = await this.tx.run({ propagation: 'NOT_SUPPORTED' }, async () => [
      await outcome(this.ds.query('SELECT 1/0')),
      await outcome(this.readOnlyThatWrites()),
      await outcome(this.ds.getRepository(FidelityItem).insert({ k: 'recorded outside' })),
    ]);
    await this.viaTx.insert({ k: 'inside' });
    return outside;
  }

  @Transactional({ timeoutMs: 5_000 })
  async withinTimeout(): Promise<string> {
    await this.ds.query('SELECT 1');
    return ((await this.ds.query(`SELECT current_setting('statement_timeout') AS t`)) as { t: string }[])[0]!.t;
  }
}

@Controller('views')
class Views {
  constructor(private readonly items: Items) {}

  /** Answers at once; counts the views (and writes a row) a little later. */
  @Get(':id')
  view(@Param('id') id: string): { ok: true } {
    setTimeout(() => {
      for (let i = 0; i < 5; i++) this.items.late.push(outcome(this.items.counters.increment(`views:${id}`)));
      this.items.late.push(outcome(this.items.viaTx.insert({ k: `viewed ${id}` })));
    }, 100);
    return { ok: true };
  }
}

async function committed(db: TestDatabase): Promise<{ items: string[]; counters: number }> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const items = (await client.query<{ k: string }>('SELECT k FROM fidelity_item ORDER BY k')).rows.map((row) => row.k);
    const counters = Number((await client.query<{ n: string }>('SELECT coalesce(sum(value), 0) AS n FROM txlock_counters')).rows[0]!.n);
    return { items, counters };
  } finally {
    await client.end();
  }
}

// nestjs-txlock/testing: a test sees what production sees, and nothing it writes survives it (#23, #28).
for (const joinDataSource of [true, false]) {
  describe(`the testing kit, joinDataSource: ${joinDataSource}`, () => {
    let db: TestDatabase;
    let app: INestApplication;
    let items: Items;

    beforeAll(async () => {
      db = await createTestDatabase();
      app = await createTestApp({
        url: db.url,
        entities: [FidelityItem],
        providers: [Items],
        controllers: [Views],
        http: true,
        txlock: { joinDataSource, counters: { autoCreate: true }, singleFlight: { autoCreate: true } },
      });
      items = app.get(Items);
    });
    afterAll(async () => {
      await app?.close();
      await db?.drop();
    });

    describe('with useRollbackPerTest()', () => {
      useRollbackPerTest(() => app);

      it('test 1 starts work that lands after it ended (r20)', async () => {
        items.late.length = 0;
        // Late enough to start after test 1's afterEach began on a loaded machine (work already running when a test
        // ends is UnfinishedTestWorkError, a failure of test 1 by design).
        items.recordSoon('late, between tests', 150);
        items.recordSoon('late, during the next test', 400);
        await items.viaTx.insert({ k: "test 1's own" });
      });

      it('test 2 sees none of it, and the late writes were refused (r20)', async () => {
        await sleep(600);
        expect(await items.viaTx.find()).toEqual([]);
        // Each landed in test 1 before its rollback (a slow teardown), or was refused: never in test 2, never committed.
        for (const late of await Promise.all(items.late)) expect(['ok', 'TransactionEndedError']).toContain(late);
        expect(await Promise.all(items.late)).toContain('TransactionEndedError');
      });

      it('test 3: nothing of tests 1 and 2 was committed', async () => {
        expect((await committed(db)).items).toEqual([]);
      });

      it('a test leaves a session-scope lock call for after it ended', async () => {
        items.late.length = 0;
        items.late.push(outcome(sleep(50).then(() => items.locks.withAdvisoryLock('late-session-lock', async () => undefined, { scope: 'session' }))));
      });

      it('which is refused like its statements, not taken on a connection of its own (found by the kit oracle)', async () => {
        expect(await Promise.all(items.late)).toEqual(['TransactionEndedError']);
      });

      it('a session-scope lock on a key a transaction-scope lock of the test took runs, as in production (found by the kit oracle)', async () => {
        // It waited for ever: the session lock took a pooled connection of its own, and the test's transaction holds a
        // transaction-scope lock until the test ends. Now it is taken in the test's transaction too.
        const order: string[] = [];
        await items.locks.withAdvisoryLock('shared-key', async () => void order.push('transaction lock'));
        await items.locks.withAdvisoryLock('shared-key', async () => {
          order.push('session lock');
          expect(items.locks.sessionLockSignal()?.aborted).toBe(false);
          await items.viaTx.insert({ k: 'under the session lock' });
        }, { scope: 'session' });
        // Concurrent calls of the test on the key still take turns, whichever their scope.
        let inside = 0;
        let most = 0;
        const critical = async () => {
          most = Math.max(most, ++inside);
          await sleep(5);
          inside--;
        };
        await Promise.all([0, 1, 2, 3].map((i) => items.locks.withAdvisoryLock('shared-key', critical, { scope: i % 2 === 0 ? 'session' : 'transaction' })));
        expect({ order, most, rows: await items.viaTx.count() }).toEqual({ order: ['transaction lock', 'session lock'], most: 1, rows: 1 });
      });

      it('a NOT_SUPPORTED body inside an app transaction runs outside it, as in production: a failing statement undoes only itself, a readOnly transaction there is its own', async () => {
        // The kit ran the body in the caller's savepoint: the division aborted it (the caller's insert then failed, its
        // commit with RollbackOnlyError) and the readOnly transaction joined the caller's, its write let through.
        expect(await items.recordsOutside()).toEqual(['QueryFailedError', 'QueryFailedError', 'ok']);
        expect((await items.viaTx.find({ order: { k: 'ASC' } })).map((item) => item.k)).toEqual(['inside', 'recorded outside']);
      });

      it('writes through @InjectTxRepository, TransactionHost.getRepository()/manager and the DataSource are rolled back (r31)', async () => {
        await items.viaTx.insert({ k: 'via @InjectTxRepository' });
        await items.tx.getRepository(FidelityItem).insert({ k: 'via TransactionHost.getRepository()' });
        await items.tx.manager.insert(FidelityItem, { k: 'via TransactionHost.manager' });
        await items.ds.getRepository(FidelityItem).insert({ k: 'via the DataSource' });
        await items.counters.increment('visits');
        expect(await items.viaTx.count()).toBe(4);
      });

      it('the test after sees none of them, and none was committed (r31)', async () => {
        expect(await items.viaTx.count()).toBe(0);
        expect(await items.counters.get('visits')).toBe(0);
        expect(await committed(db)).toEqual({ items: [], counters: 0 });
      });

      it('readOnly and timeoutMs of app transactions apply, with the errors production gives (r32)', async () => {
        const readOnly = await items.readOnlyThatWrites().catch((error: unknown) => error);
        expect((readOnly as { driverError?: { code?: string } }).driverError?.code).toBe('25006');
        await expect(items.slow()).rejects.toBeInstanceOf(TransactionTimeoutError);
        expect(await items.withinTimeout()).toBe('5s');
        // After them, the test's own statements run with neither setting.
        await items.viaTx.insert({ k: 'after' });
        expect(((await items.ds.query(`SELECT current_setting('statement_timeout') AS t`)) as { t: string }[])[0]!.t).toBe('0');
      });

      it('an app transaction whose failed statement was caught fails with RollbackOnlyError, as its COMMIT does in production (found by the kit oracle)', async () => {
        // It was a raw QueryFailedError (25P02) from RELEASE SAVEPOINT, and a read-only one reported success.
        await expect(items.catchesAFailedStatement()).rejects.toBeInstanceOf(RollbackOnlyError);
        if (joinDataSource) await expect(items.catchesARefusedWrite()).rejects.toBeInstanceOf(RollbackOnlyError);
        // With joinDataSource: false the repository call is not the read-only transaction's in production (a connection
        // of its own): the transaction commits. Under the kit it stands apart from that transaction too, so its refusal
        // there does not fail the commit.
        else await expect(items.catchesARefusedWrite()).resolves.toBeUndefined();
        await items.viaTx.insert({ k: 'the test goes on' });
        expect(await items.viaTx.count()).toBe(1);
      });

      it("TypeORM's own transaction API outside the app's transactions answers as in production (found by the kit oracle)", async () => {
        // A stray end is refused as TypeORM refuses it outside any transaction (it was StrayTransactionEndError), and a
        // transaction asking for a level runs at the test transaction's (it was WeakerIsolationError).
        const runner = items.ds.createQueryRunner();
        try {
          await expect(runner.commitTransaction()).rejects.toBeInstanceOf(TransactionNotStartedError);
        } finally {
          await runner.release();
        }
        await items.ds.transaction('SERIALIZABLE', (manager) => manager.insert(FidelityItem, { k: 'serializable' }));
        expect(await items.viaTx.count()).toBe(1);
      });

      it('a stream outside the app transactions is read to the end, and the test still rolls back (r21)', async () => {
        await items.ds.query(`INSERT INTO fidelity_item (k) SELECT 'row ' || g FROM generate_series(1, 300) g`);
        const stream = await items.ds.getRepository(FidelityItem).createQueryBuilder('i').stream();
        let read = 0;
        for await (const row of stream) if (row) read++;
        expect(read).toBe(300);
        expect(await items.viaTx.count()).toBe(300);
      });

      it('two requests of one test that share a single flight, one of them transactional, both get the value (r26)', async () => {
        const report = () => items.flights.run('daily-report', async () => (await sleep(20), 42), { ttlMs: 60_000 });
        const placeOrder = () =>
          items.tx.run(async () => {
            await items.ds.query('SELECT 1');
            return report();
          });
        const stillWaiting = new Promise<string>((resolve) => setTimeout(resolve, 5_000, 'STILL WAITING').unref());
        const both = await Promise.race([Promise.all([report(), placeOrder()]), stillWaiting]);
        expect(both).toEqual([42, 42]);
      });

      it("a request's late increments and insert are refused alike once its test ended (r34)", async () => {
        items.late.length = 0;
        await request(app.getHttpServer()).get('/views/7').expect(200);
      });

      it('the test after sees neither (r34)', async () => {
        await sleep(300);
        expect(await items.counters.get('views:7')).toBe(0);
        expect(await items.viaTx.count()).toBe(0);
        expect(await Promise.all(items.late)).toEqual(Array(6).fill('TransactionEndedError'));
        expect(await committed(db)).toEqual({ items: [], counters: 0 });
      });
    });

    it('un-awaited coalesced increments issued as a test ends belong to it: rolled back or refused, never seen by the next test (r34)', async () => {
      const test1 = await beginTestTransaction(app);
      await items.counters.increment('coalesced');
      const late = Array.from({ length: 20 }, () => outcome(items.counters.increment('coalesced')));
      await expect(test1.rollback()).rejects.toThrow('still running');
      const test2 = await beginTestTransaction(app);
      await sleep(100);
      const seen = await items.counters.get('coalesced');
      await test2.rollback();
      expect(seen).toBe(0);
      expect((await committed(db)).counters).toBe(0);
      for (const result of await Promise.all(late)) expect(['ok', 'TransactionEndedError']).toContain(result);
    });

    it('with beginTestTransaction(): work a test left running after its rollback is refused, never committed (r20)', async () => {
      const test = await beginTestTransaction(app);
      items.late.length = 0;
      items.recordSoon('late', 100);
      await test.rollback();
      await sleep(200);
      expect(await Promise.all(items.late)).toEqual(['TransactionEndedError']);
      expect((await committed(db)).items).toEqual([]);
    });
  });
}
