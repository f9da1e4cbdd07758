import { afterEach, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import { Column, Entity, PrimaryGeneratedColumn } from 'typeorm';
import {
  AtomicService,
  CounterService,
  LeaseService,
  LockService,
  ReadOnlyTransactionError,
  SingleFlightService,
  TableNotOnSearchPathError,
  TransactionHost,
  TransactionSerializationError,
  type TxLockModuleOptions,
} from '../../lib/index.js';
import { race } from '../../lib/testing/race.js';
import { createTestDatabase, poolerUrl, setDatabaseDefaults, type TestDatabase } from '../support/database.js';
import { eventually, gate } from '../support/gate.js';
import { createTestApp } from '../support/nest-app.js';

@Entity('setting_item')
class Item {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', unique: true })
  k!: string;
}

@Injectable()
class UsesEverything {
  constructor(
    readonly counters: CounterService,
    readonly leases: LeaseService,
    readonly flights: SingleFlightService,
  ) {}
}

const TABLES: TxLockModuleOptions = { counters: { autoCreate: true, coalesce: false }, leases: { autoCreate: true }, singleFlight: { autoCreate: true } };
const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** What a call gave: its value, or the class name and message of what it threw. */
async function outcome(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return await call();
  } catch (error) {
    return { threw: (error as Error).constructor.name, message: (error as Error).message };
  }
}

// Defaults a DBA or a platform sets on the database or the role (ALTER DATABASE/ROLE ... SET): every connection the
// app opens runs with them, the library's own statements included. Each test makes a database set one way.
// Database and role defaults reach new server sessions only: behind PgBouncer the pooled server connections were opened
// before the test's ALTER DATABASE, so these run on direct connections (the PgBouncer pass skips them).
const describeDirect = poolerUrl() !== undefined ? describe.skip : describe;

describeDirect('the library keeps its promises under server and role defaults', () => {
  let db: TestDatabase | undefined;
  const apps: INestApplication[] = [];

  /** A database with `settings` as its defaults, and `instances` apps on it (two replicas when 2). */
  const databaseWith = async (settings: Record<string, string>, options: { txlock?: TxLockModuleOptions; instances?: number; before?: (url: string) => Promise<void> } = {}) => {
    db = await createTestDatabase();
    await options.before?.(db.url);
    await setDatabaseDefaults(db.name, settings);
    for (let i = 0; i < (options.instances ?? 1); i++) {
      apps.push(await createTestApp({ url: db.url, entities: [Item], providers: [UsesEverything], txlock: options.txlock ?? TABLES, poolSize: 10 }));
    }
    return apps;
  };

  afterEach(async () => {
    for (const app of apps.splice(0)) await app.close();
    await db?.drop();
    db = undefined;
  });

  describe("default_transaction_isolation = 'serializable'", () => {
    it('outside transactions: 60 concurrent increments of one key (coalesce: false), 60 getOrCreate over 3 keys, and 20 acquires of one lease from two app instances all keep their contracts', async () => {
      const [a, b] = await databaseWith({ default_transaction_isolation: 'serializable' }, { instances: 2 });
      const [{ isolation }] = await a!.get(TransactionHost).dataSource.query(`SELECT current_setting('transaction_isolation') AS isolation`);
      expect(isolation).toBe('serializable');

      const increments = await race(60, () => a!.get(CounterService).increment('hot'));
      expect(increments.errors).toEqual([]);
      expect(increments.values.map(Number).sort((x, y) => x - y)).toEqual(range(60));
      expect(await a!.get(CounterService).get('hot')).toBe(60);

      const created = await race(60, (i) => a!.get(AtomicService).getOrCreate(Item, { k: `key-${i % 3}` }));
      expect(created.errors).toEqual([]);
      expect(created.values.filter((r) => r.created)).toHaveLength(3);
      expect(new Set(created.values.map((r) => r.entity.id)).size).toBe(3);

      for (let round = 0; round < 5; round++) {
        const acquired = await race(20, (i) => (i % 2 ? a! : b!).get(LeaseService).acquire(`job-${round}`, { atMostForMs: 60_000 }));
        expect(acquired.errors).toEqual([]);
        expect(acquired.values.filter((lease) => lease !== null)).toHaveLength(1);
      }
    });

    it('inside a transaction the statements join it; a conflict says "retry the transaction", keeps 40001 for the retries option, and retries apply', async () => {
      const [app] = await databaseWith({ default_transaction_isolation: 'serializable' });
      const tx = app!.get(TransactionHost);
      const counters = app!.get(CounterService);
      await counters.set('shared', 0);
      const waitingForRowLock = () =>
        eventually(async () => {
          const [{ n }] = await tx.dataSource.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
          return n > 0;
        });
      // Two transactions increment the same counter; the second one's statement waits for the first's row lock and, at
      // SERIALIZABLE, cannot apply on top of a change its snapshot does not see.
      const conflict = async (retries: number) => {
        const [firstIncremented, firstDone] = [gate(), gate()];
        const first = tx.run(async () => {
          await counters.increment('shared');
          firstIncremented.open();
          await firstDone.opened;
        });
        await firstIncremented.opened;
        let attempts = 0;
        const second = tx.run({ retries }, async () => {
          attempts++;
          return counters.increment('shared');
        });
        await waitingForRowLock();
        firstDone.open();
        await first;
        return { second: await second.catch((error: unknown) => error), attempts };
      };
      const failed = await conflict(0);
      expect(failed).toEqual({ second: expect.any(TransactionSerializationError), attempts: 1 });
      expect(failed.second).toMatchObject({ code: '40001', message: expect.stringContaining('Retry the transaction: @Transactional({ retries: 3 })') });
      expect(await counters.get('shared')).toBe(1);

      const retried = await conflict(2);
      expect(retried).toEqual({ second: 3, attempts: 2 });
      expect(await counters.get('shared')).toBe(3);
    });

    it("an advisory lock's read-modify-write: at the server's SERIALIZABLE it fails with 40001 rather than lose an update; with the module's isolation READ COMMITTED it is exact", async () => {
      const readModifyWrite = async (app: INestApplication) => {
        const tx = app.get(TransactionHost);
        await tx.dataSource.query('CREATE TABLE IF NOT EXISTS account (id int PRIMARY KEY, balance int NOT NULL); TRUNCATE account; INSERT INTO account VALUES (1, 0)');
        const { values, errors } = await race(20, () =>
          app.get(LockService).withAdvisoryLock(['account', 1], async () => {
            const [{ balance }] = await tx.manager.query('SELECT balance FROM account WHERE id = 1');
            await tx.manager.query('UPDATE account SET balance = $1 WHERE id = 1', [balance + 1]);
          }),
        );
        const [{ balance }] = await tx.dataSource.query('SELECT balance FROM account WHERE id = 1');
        return { done: values.length, failed: errors.map((error) => (error as { driverError?: { code?: string } }).driverError?.code), balance };
      };
      const [serializable] = await databaseWith({ default_transaction_isolation: 'serializable' });
      const atDefault = await readModifyWrite(serializable!);
      expect(atDefault.failed.length).toBeGreaterThan(0);
      expect(new Set(atDefault.failed)).toEqual(new Set(['40001']));
      expect(atDefault.balance).toBe(atDefault.done);
      apps.push(await createTestApp({ url: db!.url, txlock: { isolation: 'READ COMMITTED' }, poolSize: 10 }));
      expect(await readModifyWrite(apps.at(-1)!)).toEqual({ done: 20, failed: [], balance: 20 });
    });
  });

  it("default_transaction_read_only = on: reads and locks work, every write is refused with ReadOnlyTransactionError naming the setting", async () => {
    const [app] = await databaseWith(
      { default_transaction_read_only: 'on' },
      {
        txlock: { counters: { coalesce: false } },
        before: async () => {
          // The tables and a counter exist from before the database became read-only (a replica, a maintenance window).
          const writer = await createTestApp({ url: db!.url, entities: [Item], providers: [UsesEverything], txlock: TABLES });
          await writer.get(CounterService).set('seen', 7);
          await writer.close();
        },
      },
    );
    const counters = app!.get(CounterService);
    const tx = app!.get(TransactionHost);
    expect(await counters.get('seen')).toBe(7);
    expect(await app!.get(LeaseService).holders()).toEqual([]);
    expect(await app!.get(LockService).withAdvisoryLock('read-only', () => 'locked')).toBe('locked');
    expect(await app!.get(LockService).tryAdvisoryLock('read-only', () => 'tried')).toEqual({ ran: true, value: 'tried' });

    const refused = { threw: 'ReadOnlyTransactionError', message: expect.stringContaining('default_transaction_read_only') };
    expect({
      increment: await outcome(() => counters.increment('seen')),
      acquire: await outcome(() => app!.get(LeaseService).acquire('job', { atMostForMs: 1_000 })),
      getOrCreate: await outcome(() => app!.get(AtomicService).getOrCreate(Item, { k: 'new' })),
      inTransaction: await outcome(() => tx.run(() => counters.increment('seen'))),
    }).toEqual({ increment: refused, acquire: refused, getOrCreate: refused, inTransaction: refused });
    expect(new ReadOnlyTransactionError().message).toMatch(/readOnly transaction/);
    expect(await counters.get('seen')).toBe(7);
  });

  it("default_transaction_deferrable = on (with SERIALIZABLE): every feature works, and readOnly transactions read a consistent value while increments run", async () => {
    const [app] = await databaseWith({ default_transaction_isolation: 'serializable', default_transaction_deferrable: 'on' });
    const counters = app!.get(CounterService);
    const tx = app!.get(TransactionHost);
    const reads: number[] = [];
    const { errors } = await race(40, async (i) => {
      if (i % 4 !== 0) return counters.increment('mixed');
      // SERIALIZABLE READ ONLY DEFERRABLE: waits for a safe snapshot, then can never fail.
      return tx.run({ readOnly: true }, async () => {
        const [first, second] = [await counters.get('mixed'), await counters.get('mixed')];
        reads.push(first, second - first);
        return first;
      });
    });
    expect(errors).toEqual([]);
    expect(await counters.get('mixed')).toBe(30);
    expect(reads.filter((_, i) => i % 2 === 1)).toEqual(Array(10).fill(0));
    expect((await app!.get(AtomicService).getOrCreate(Item, { k: 'one' })).created).toBe(true);
    expect(await app!.get(LeaseService).run('deferrable', () => 'ran', { atMostForMs: 1_000 })).toEqual({ ran: true, value: 'ran' });
    expect(await app!.get(SingleFlightService).run('flight', () => 42, { ttlMs: 1_000 })).toBe(42);
    expect(await app!.get(LockService).withAdvisoryLock('deferrable', () => 'locked')).toBe('locked');
  });

  describe('a search_path without public', () => {
    // The tables were created in public (by autoCreate or TxLockTablesMigration) before the search_path left it out.
    // Then the schema the search_path names is made.
    const tablesInPublic = async () => {
      const app = await createTestApp({ url: db!.url, entities: [Item], providers: [UsesEverything], txlock: TABLES });
      await app.get(CounterService).set('kept', 5);
      await app.get(TransactionHost).dataSource.query('CREATE SCHEMA app');
      await app.close();
    };

    it('fails at bootstrap with TableNotOnSearchPathError, naming the search_path, the schema and the table option', async () => {
      db = await createTestDatabase();
      await tablesInPublic();
      await setDatabaseDefaults(db.name, { search_path: 'app' });
      const booted = await outcome(() => createTestApp({ url: db!.url, providers: [UsesEverything], txlock: {} }));
      expect(booted).toEqual({ threw: 'TableNotOnSearchPathError', message: expect.stringContaining("search_path (app)") });
      expect((booted as { message: string }).message).toContain(`{ counters: { table: 'public.txlock_counters' } }`);
      expect(new TableNotOnSearchPathError('"t"', 'S', 'o', ['public'], 'app')).toBeInstanceOf(Error);
    });

    it('works with the tables named with their schema, and autoCreate creates missing ones on the search_path', async () => {
      db = await createTestDatabase();
      await tablesInPublic();
      await setDatabaseDefaults(db.name, { search_path: 'app' });
      const qualified = await createTestApp({
        url: db.url,
        providers: [UsesEverything],
        txlock: { counters: { table: 'public.txlock_counters', coalesce: false }, leases: { table: 'public.txlock_leases' }, singleFlight: { table: 'public.txlock_single_flight' } },
      });
      apps.push(qualified);
      expect(await qualified.get(CounterService).increment('kept')).toBe(6);
      expect((await qualified.get(LeaseService).acquire('job', { atMostForMs: 1_000 }))?.token).toBe(1);
      expect(await qualified.get(SingleFlightService).run('flight', () => 1, { ttlMs: 1_000 })).toBe(1);

      const created = await createTestApp({ url: db.url, providers: [UsesEverything], txlock: TABLES });
      apps.push(created);
      expect(await created.get(CounterService).increment('kept')).toBe(1);
      const [{ schema }] = await created.get(TransactionHost).dataSource.query(`SELECT schemaname AS schema FROM pg_tables WHERE tablename = 'txlock_counters' AND schemaname <> 'public'`);
      expect(schema).toBe('app');
    });
  });
});
