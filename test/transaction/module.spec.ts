import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DataSource } from 'typeorm';
import {
  PoolExhaustedError,
  Transactional,
  TransactionHost,
  TxLockConfigurationError,
  TxLockModule,
  UnsupportedDriverError,
} from '../../lib/index.js';
import { concurrently } from '../support/concurrency.js';
import { createTestDatabase, expectAllReleased, openDataSource, type TestDatabase } from '../support/database.js';

@Injectable()
class Jobs {
  constructor(readonly tx: TransactionHost) {}

  @Transactional()
  async outerWithIndependentAudit(hold: Promise<void>): Promise<string> {
    await this.tx.manager.query('SELECT 1');
    await hold;
    return this.audit();
  }

  @Transactional({ propagation: 'REQUIRES_NEW' })
  async audit(): Promise<string> {
    const [{ txid }] = await this.tx.manager.query('SELECT txid_current()::text AS txid');
    return txid;
  }
}

async function bootstrap(dataSource: DataSource, acquireTimeoutMs?: number) {
  const moduleRef = await Test.createTestingModule({
    imports: [TxLockModule.forRoot({ dataSource, acquireTimeoutMs })],
    providers: [Jobs],
  }).compile();
  return moduleRef.init();
}

describe('TxLockModule bootstrap and pool limits', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(() => db?.drop());

  it('fails at bootstrap with UnsupportedDriverError on a DataSource that is not PostgreSQL', async () => {
    // CockroachDB speaks the pg protocol, so the driver loads; it still is not PostgreSQL (no advisory locks).
    const cockroach = new DataSource({ type: 'cockroachdb', url: db.url, timeTravelQueries: false });
    await expect(bootstrap(cockroach)).rejects.toBeInstanceOf(UnsupportedDriverError);
    await expect(bootstrap(cockroach)).rejects.toThrow(/supports PostgreSQL only.*"cockroachdb"/);
  });

  it('fails at bootstrap with a clear error when there is no DataSource at all', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [TxLockModule.forRoot({})] }).compile();
    await expect(moduleRef.init()).rejects.toThrow(TxLockConfigurationError);
    await expect(moduleRef.init()).rejects.toThrow(/TypeOrmModule\.forRoot\(\)/);
  });

  it('throws when @Transactional() decorates something that is not a method', () => {
    expect(() => Transactional()({}, 'field', { value: 42 })).toThrow(TxLockConfigurationError);
  });

  it('explains that a decorated class must be created by Nest', async () => {
    await expect(new Jobs(undefined as never).audit()).rejects.toThrow(/create it through Nest/);
  });

  it('REQUIRES_NEW with every connection held by outer transactions fails with PoolExhaustedError, never deadlocks, leaks nothing', async () => {
    const dataSource = await openDataSource(db.url, { poolSize: 2 });
    const app = await bootstrap(dataSource, 300);
    try {
      const jobs = app.get(Jobs);
      let release!: () => void;
      const hold = new Promise<void>((resolve) => (release = resolve));
      // Four outer transactions want the 2 connections; the two that get them each need a third for REQUIRES_NEW.
      const running = concurrently(4, () => jobs.outerWithIndependentAudit(hold));
      setTimeout(release, 50);
      const outcomes = await running;
      const failures = outcomes.filter((o) => !o.ok).map((o) => (o as { error: unknown }).error);
      expect(failures.length).toBeGreaterThan(0);
      for (const error of failures) expect(error).toBeInstanceOf(PoolExhaustedError);
      await expectAllReleased(dataSource);
      // The pool recovered: with no outer transaction holding a connection, REQUIRES_NEW works.
      await expect(jobs.audit()).resolves.toMatch(/^\d+$/);
      await expectAllReleased(dataSource);
    } finally {
      await app.close();
      await dataSource.destroy();
    }
  });

  it('uses the DataSource provided by forRootAsync', async () => {
    const dataSource = await openDataSource(db.url, { poolSize: 2 });
    @Module({ providers: [{ provide: 'DS', useValue: dataSource }], exports: ['DS'] })
    class DataSourceModule {}
    const moduleRef = await Test.createTestingModule({
      imports: [TxLockModule.forRootAsync({ imports: [DataSourceModule], inject: ['DS'], useFactory: (ds: DataSource) => ({ dataSource: ds }) })],
      providers: [Jobs],
    }).compile();
    const app = await moduleRef.init();
    try {
      expect(app.get(TransactionHost).dataSource).toBe(dataSource);
      await expect(app.get(Jobs).audit()).resolves.toMatch(/^\d+$/);
    } finally {
      await app.close();
      await dataSource.destroy();
    }
  });
});
