import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import {
  CounterService,
  LeaseService,
  LockService,
  MissingTableError,
  ScheduledLock,
  SingleFlight,
  TxLockModule,
  TxLockTablesMigration,
  type TxLockModuleOptions,
} from '../../lib/index.js';
import { createTestDatabase, directUrl, type TestDatabase } from '../support/database.js';

@Injectable()
class UsesCounters {
  constructor(readonly counters: CounterService) {}
}

@Injectable()
class NightlyJob {
  @ScheduledLock('nightly', { atMostForMs: 60_000 })
  async run(): Promise<string> {
    return 'ran';
  }
}

@Injectable()
class Reports {
  @SingleFlight({ ttlMs: 1_000 })
  async summary(): Promise<number> {
    return 42;
  }
}

@Injectable()
class Neutral {}

const tables = async (url: string): Promise<string[]> => {
  const dataSource = await new DataSource({ type: 'postgres', url }).initialize();
  try {
    const rows = (await dataSource.query(`SELECT tablename FROM pg_tables WHERE tablename LIKE 'txlock%' ORDER BY tablename`)) as { tablename: string }[];
    return rows.map((row) => row.tablename);
  } finally {
    await dataSource.destroy();
  }
};

// The library's tables are checked at bootstrap for the features the app uses; a missing one fails with a
// message that gives both fixes (autoCreate, or the exported migration), never "relation does not exist" later.
describe("the library's tables", () => {
  let db: TestDatabase;
  let app: INestApplication | undefined;

  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await app?.close().catch(() => undefined);
    app = undefined;
    await db.drop();
  });

  const boot = async (providers: unknown[], txlock: TxLockModuleOptions = {}, extra: Record<string, unknown> = {}, url = db.url) => {
    const moduleRef = await Test.createTestingModule({
      imports: [TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 3 }, ...extra }), TxLockModule.forRoot(txlock)],
      providers: providers as never[],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    return app;
  };

  for (const [feature, provider, table] of [
    ['a provider that injects CounterService', UsesCounters, 'txlock_counters'],
    ['@ScheduledLock()', NightlyJob, 'txlock_leases'],
    ['@SingleFlight()', Reports, 'txlock_single_flight'],
  ] as const) {
    it(`${feature} on a database without ${table}: bootstrap fails with MissingTableError naming both fixes`, async () => {
      const error = await boot([provider]).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(MissingTableError);
      expect((error as Error).message).toContain(`"${table}"`);
      expect((error as Error).message).toMatch(/TxLockModule\.forRoot\(\{ autoCreate: true \}\)/);
      expect((error as Error).message).toMatch(/TxLockTablesMigration/);
    });
  }

  it('an app that uses none of those features boots without any of the tables', async () => {
    await boot([Neutral]);
    expect(await tables(db.url)).toEqual([]);
  });

  it('a service reached another way fails at its first call with the same MissingTableError, not "relation does not exist"', async () => {
    const booted = await boot([Neutral]);
    const counters = booted.get(ModuleRef).get(CounterService, { strict: false });
    await expect(counters.increment('visits')).rejects.toBeInstanceOf(MissingTableError);
    await expect(booted.get(LeaseService).acquire('job', { atMostForMs: 1_000 })).rejects.toBeInstanceOf(MissingTableError);
  });

  it('autoCreate: true creates every table the library uses; the per-feature flags override it', async () => {
    await boot([UsesCounters, NightlyJob, Reports], { autoCreate: true, singleFlight: { autoCreate: false } }).catch(() => undefined);
    expect(await tables(db.url)).toEqual(['txlock_counters', 'txlock_leases']);
    await app?.close();
    app = undefined;
    await boot([UsesCounters, NightlyJob, Reports], { autoCreate: true });
    expect(await tables(db.url)).toEqual(['txlock_counters', 'txlock_leases', 'txlock_single_flight']);
    expect(await app!.get(NightlyJob).run()).toBe('ran');
  });

  it("TxLockTablesMigration, run by TypeORM's migration runner, creates them, and down() drops them", async () => {
    const booted = await boot([UsesCounters, NightlyJob, Reports], {}, { migrations: [TxLockTablesMigration], migrationsRun: true });
    expect(await tables(db.url)).toEqual(['txlock_counters', 'txlock_leases', 'txlock_single_flight']);
    expect(await booted.get(CounterService).increment('visits')).toBe(1);
    await booted.get(DataSource).undoLastMigration();
    expect(await tables(db.url)).toEqual([]);
  });

  // r30: CREATE TABLE IF NOT EXISTS was sent at every bootstrap, and PostgreSQL checks the right to create (and
  // read-only mode) before it sees that the table exists: apps whose migrations run as another role could not boot.
  describe('autoCreate when the tables exist (made by the owner, as a migration does)', () => {
    // Straight to the server: the role below is not in the test pooler's user list, and a pooler's server
    // connections opened before ALTER DATABASE would keep the old default.
    const owner = () => directUrl(db.url);
    const migrate = async () => {
      const dataSource = await new DataSource({ type: 'postgres', url: owner(), migrations: [TxLockTablesMigration] }).initialize();
      try {
        await dataSource.runMigrations();
        // Nobody but the owner may create tables in the schema, whatever the server version's default.
        await dataSource.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
      } finally {
        await dataSource.destroy();
      }
    };
    const asOwner = async (sql: string) => {
      const dataSource = await new DataSource({ type: 'postgres', url: owner() }).initialize();
      try {
        await dataSource.query(sql);
      } finally {
        await dataSource.destroy();
      }
    };

    it('a role with SELECT, INSERT, UPDATE and DELETE only boots with autoCreate and uses every feature', async () => {
      await migrate();
      const role = `txlock_dml_${randomBytes(4).toString('hex')}`;
      const password = randomBytes(12).toString('hex');
      await asOwner(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
      try {
        await asOwner(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}`);
        const url = new URL(owner());
        [url.username, url.password] = [role, password];
        const booted = await boot([UsesCounters, NightlyJob, Reports], { autoCreate: true }, {}, url.toString());
        expect(await booted.get(CounterService).increment('visits')).toBe(1);
        expect(await booted.get(NightlyJob).run()).toBe('ran');
        expect(await booted.get(Reports).summary()).toBe(42);
        // The role really may not create tables: what autoCreate used to send is refused.
        await expect(booted.get(DataSource).query('CREATE TABLE IF NOT EXISTS "txlock_counters" ("key" text PRIMARY KEY)')).rejects.toThrow(/permission denied/);
      } finally {
        await app?.close();
        app = undefined;
        await asOwner(`DROP OWNED BY ${role}; DROP ROLE ${role}`);
      }
    });

    it('a read-only database (default_transaction_read_only) boots with autoCreate and serves reads and locks', async () => {
      await migrate();
      await asOwner(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', current_database()); END $$`);
      const booted = await boot([UsesCounters, NightlyJob, Reports], { autoCreate: true }, {}, owner());
      const counters = booted.get(CounterService);
      expect(await booted.get(LockService).withAdvisoryLock('report', () => counters.get('visits'))).toBe(0);
      expect(await booted.get(DataSource).query('SHOW default_transaction_read_only')).toEqual([{ default_transaction_read_only: 'on' }]);
    });
  });
});
