import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { getDataSourceToken, InjectRepository, TypeOrmModule } from '@nestjs/typeorm';
import { Column, DataSource, Entity, PrimaryGeneratedColumn, Repository } from 'typeorm';
import {
  AdvisoryLock,
  CounterService,
  getTxLockToken,
  InjectTxLock,
  LockService,
  Transactional,
  TransactionHost,
  TxLockConfigurationError,
  TxLockModule,
} from '../../lib/index.js';
import { createTestDatabase, expectAllReleased, poolerUrl, type TestDatabase } from '../support/database.js';
import { RoundTripLog } from '../support/round-trips.js';

@Entity('main_order')
class Order {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  label!: string;
}

@Entity('analytics_event')
class AnalyticsEvent {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  label!: string;
}

class Boom extends Error {}

/** Code of the app's two databases, written as users write it. */
@Injectable()
class Shop {
  constructor(
    @InjectRepository(Order) readonly orders: Repository<Order>,
    @InjectRepository(AnalyticsEvent, 'analytics') readonly events: Repository<AnalyticsEvent>,
    readonly tx: TransactionHost,
    @InjectTxLock(TransactionHost, 'analytics') readonly analyticsTx: TransactionHost,
  ) {}

  @Transactional({ dataSource: 'analytics' })
  async record(label: string, fail = false): Promise<void> {
    await this.events.insert({ label });
    if (fail) throw new Boom(label);
  }

  /** An order, with an analytics transaction nested inside the main one; either may fail alone. */
  @Transactional()
  async order(label: string, failOuter: boolean, failInner: boolean): Promise<{ mainActiveInside: boolean; analyticsActiveOutside: boolean }> {
    await this.orders.insert({ label });
    let mainActiveInside = false;
    await this.analyticsTx
      .run(async () => {
        mainActiveInside = this.tx.isActive;
        await this.orders.insert({ label: `${label}-from-inside-analytics` }); // still the main transaction's
        await this.events.insert({ label });
        if (failInner) throw new Boom('analytics');
      })
      .catch((error: unknown) => {
        if (!(error instanceof Boom)) throw error;
      });
    const analyticsActiveOutside = this.analyticsTx.isActive;
    if (failOuter) throw new Boom('main');
    return { mainActiveInside, analyticsActiveOutside };
  }

  @AdvisoryLock({ key: 'analytics-job', dataSource: 'analytics' })
  async analyticsJob(): Promise<number> {
    const [{ n }] = await this.events.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`);
    return n as number;
  }
}

async function appOver(main: TestDatabase, analytics: TestDatabase, txlockOnAnalytics: boolean): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url: main.url, entities: [Order], synchronize: true, extra: { max: 6 } }),
      TypeOrmModule.forRoot({ name: 'analytics', type: 'postgres', url: analytics.url, entities: [AnalyticsEvent], synchronize: true, extra: { max: 6 } }),
      TypeOrmModule.forFeature([Order]),
      TypeOrmModule.forFeature([AnalyticsEvent], 'analytics'),
      TxLockModule.forRoot({ counters: { autoCreate: true } }),
      ...(txlockOnAnalytics ? [TxLockModule.forRoot({ dataSource: 'analytics', counters: { autoCreate: true } })] : []),
    ],
    providers: txlockOnAnalytics ? [Shop] : [],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: ['error', 'warn'] });
  await app.init();
  return app;
}

// Two TypeORM DataSources in one app (a second database on the same server). A transaction on one never
// captures the other's statements; each commits or rolls back on its own (this is not a distributed transaction).
describe('several DataSources in one app', () => {
  let main: TestDatabase;
  let analytics: TestDatabase;

  beforeAll(async () => {
    main = await createTestDatabase();
    analytics = await createTestDatabase();
  });
  afterAll(async () => {
    await main?.drop();
    await analytics?.drop();
  });

  describe('with the module on both', () => {
    let app: INestApplication;
    let shop: Shop;
    let mainDs: DataSource;
    let analyticsDs: DataSource;
    const labels = async (ds: DataSource, table: string) =>
      ((await ds.query(`SELECT label FROM ${table} ORDER BY id`)) as { label: string }[]).map((r) => r.label);

    beforeAll(async () => {
      app = await appOver(main, analytics, true);
      shop = app.get(Shop);
      mainDs = app.get(DataSource);
      analyticsDs = app.get<DataSource>(getDataSourceToken('analytics'));
    });
    afterAll(() => app?.close());
    beforeEach(async () => {
      await mainDs.query('TRUNCATE main_order');
      await analyticsDs.query('TRUNCATE analytics_event');
    });

    it('@Transactional({ dataSource }) runs on that DataSource and rolls back there', async () => {
      await shop.record('kept');
      await expect(shop.record('dropped', true)).rejects.toBeInstanceOf(Boom);
      expect(await labels(analyticsDs, 'analytics_event')).toEqual(['kept']);
    });

    it('REQUIRED then REQUIRES_NEW on the second DataSource, with no statement in the outer call, sends only the inner transaction', async () => {
      for (const outerOnMain of [false, true]) {
        const log = RoundTripLog.attach(analyticsDs);
        const run = () => shop.analyticsTx.run(() => shop.analyticsTx.run({ propagation: 'REQUIRES_NEW' }, () => shop.events.insert({ label: 'inner' })));
        await (outerOnMain ? shop.tx.run(run) : run());
        log.stop();
        expect(log.sent.map((sql) => sql.split(/\s+/)[0])).toEqual(['BEGIN', 'INSERT', 'COMMIT']);
      }
    });

    it('nested across DataSources, each commits or rolls back on its own, and each context stays its own', async () => {
      expect(await shop.order('both', false, false)).toEqual({ mainActiveInside: true, analyticsActiveOutside: false });
      await expect(shop.order('main-fails', true, false)).rejects.toBeInstanceOf(Boom);
      await shop.order('analytics-fails', false, true);
      expect(await labels(mainDs, 'main_order')).toEqual(['both', 'both-from-inside-analytics', 'analytics-fails', 'analytics-fails-from-inside-analytics']);
      expect(await labels(analyticsDs, 'analytics_event')).toEqual(['both', 'main-fails']); // committed before main failed
      await expectAllReleased(mainDs);
      await expectAllReleased(analyticsDs);
    });

    it("each registration's services work on their own DataSource: counters, locks", async () => {
      const mainCounters = app.get(CounterService);
      const analyticsCounters = app.get<CounterService>(getTxLockToken(CounterService, 'analytics'));
      await mainCounters.increment('visits', 2);
      await analyticsCounters.increment('visits', 5);
      expect([await mainCounters.get('visits'), await analyticsCounters.get('visits')]).toEqual([2, 5]);
      const [{ value }] = await analyticsDs.query(`SELECT value::int FROM txlock_counters WHERE key = 'visits'`);
      expect(value).toBe(5);
      expect(app.get(getTxLockToken(LockService, 'analytics'))).not.toBe(app.get(LockService));
      expect(await shop.analyticsJob()).toBe(1); // @AdvisoryLock({ dataSource }) locked on the analytics backend
    });

    // Found by the model checker: a session lock on one DataSource made the same key look held on the other, so two
    // transactions there both entered; and a session lock on the other DataSource reused the first one's connection.
    // Session-scope locks need a direct connection: behind .ci/pgbouncer.sh's pooler they are refused (asserted there).
    (poolerUrl() ? it.skip : it)("a session lock on one DataSource neither covers nor carries the other's locks on the same key", async () => {
      const mainLocks = app.get(LockService);
      const analyticsLocks = app.get<LockService>(getTxLockToken(LockService, 'analytics'));
      const advisoryLocksOn = async (ds: DataSource) =>
        ((await ds.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)) as { n: number }[])[0]!.n;
      let inside = 0;
      let most = 0;
      const critical = () =>
        analyticsLocks.withAdvisoryLock('shared-name', async () => {
          most = Math.max(most, ++inside);
          await new Promise((resolve) => setTimeout(resolve, 30));
          inside--;
        });
      const seen = await mainLocks.withAdvisoryLock(
        'shared-name',
        async () => {
          await Promise.all([critical(), critical(), critical()]);
          return analyticsLocks.withAdvisoryLock('shared-name', () => advisoryLocksOn(analyticsDs), { scope: 'session' });
        },
        { scope: 'session' },
      );
      expect(most).toBe(1);
      expect(seen).toBe(1); // the analytics session lock is on the analytics database, not on main's pinned connection
      expect([await advisoryLocksOn(mainDs), await advisoryLocksOn(analyticsDs)]).toEqual([0, 0]);
      await expectAllReleased(mainDs);
      await expectAllReleased(analyticsDs);
    });

    // Found by the model checker (test/model/found-programs.spec.ts, seed 1375241282): the session lock call gave its
    // body's promise a second consumer, which hid the call chain above it, so the re-entry looked like detached work
    // waiting for its own holder, and failed with LockTimeoutError after 10 s.
    (poolerUrl() ? it.skip : it)('a lock re-entered inside a session lock of the other DataSource is let in at once', async () => {
      const mainLocks = app.get(LockService);
      const analyticsLocks = app.get<LockService>(getTxLockToken(LockService, 'analytics'));
      const path: string[] = [];
      await mainLocks.withAdvisoryLock('re-entered', () =>
        analyticsLocks.withAdvisoryLock(
          'between',
          () => mainLocks.withAdvisoryLock('re-entered', () => void path.push('inner'), { timeoutMs: 5_000 }),
          { scope: 'session' },
        ),
      );
      expect(path).toEqual(['inner']);
      await expectAllReleased(mainDs);
      await expectAllReleased(analyticsDs);
    });
  });

  describe('with the module on the main DataSource only', () => {
    let app: INestApplication;

    beforeAll(async () => {
      app = await appOver(main, analytics, false);
    });
    afterAll(() => app?.close());

    it('leaves the other DataSource alone: its calls inside a main transaction commit on their own', async () => {
      const tx = app.get(TransactionHost);
      const analyticsDs = app.get<DataSource>(getDataSourceToken('analytics'));
      await analyticsDs.query('TRUNCATE analytics_event');
      await expect(
        tx.run(async () => {
          await analyticsDs.getRepository(AnalyticsEvent).insert({ label: 'independent' });
          throw new Boom('main rolls back');
        }),
      ).rejects.toBeInstanceOf(Boom);
      expect(await analyticsDs.query('SELECT label FROM analytics_event')).toEqual([{ label: 'independent' }]);
    });
  });

  it('registering the module twice for the same DataSource fails at bootstrap, naming the fix', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        TypeOrmModule.forRoot({ type: 'postgres', url: main.url, entities: [Order], extra: { max: 2 } }),
        TxLockModule.forRoot(),
        TxLockModule.forRoot({ dataSource: 'default' }),
      ],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await expect(app.init()).rejects.toThrow(TxLockConfigurationError);
    await expect(app.init()).rejects.toThrow(/registered twice for the same DataSource/);
    await app.close();
  });
});
