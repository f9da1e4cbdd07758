import { afterEach, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import pg from 'pg';
import {
  CounterService,
  IdleInTransactionTimeoutError,
  LeaseService,
  LockService,
  LockTimeoutError,
  ServerLockTimeoutError,
  ServerTimeoutError,
  TransactionHost,
} from '../../lib/index.js';
import { race } from '../../lib/testing/race.js';
import { createTestDatabase, directUrl, poolerUrl, setDatabaseDefaults, type TestDatabase } from '../support/database.js';
import { eventually, holding } from '../support/gate.js';
import { createTestApp } from '../support/nest-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Timeouts a DBA sets on the database or the role (ALTER DATABASE/ROLE ... SET): each test makes a database with one.
// Where a test waits, it waits several times the timeout set, so the server's timer has fired whatever the machine's speed.
// Database and role defaults reach new server sessions only: behind PgBouncer the pooled server connections were opened
// before the test's ALTER DATABASE, so these run on direct connections (the PgBouncer pass skips them).
const describeDirect = poolerUrl() !== undefined ? describe.skip : describe;

describeDirect('server, database and role timeouts', () => {
  let db: TestDatabase | undefined;
  let app: INestApplication | undefined;
  let other: pg.Client | undefined;

  const databaseWith = async (settings: Record<string, string>) => {
    db = await createTestDatabase();
    // Made before the timeouts apply: the app's own connections are opened after.
    app = await createTestApp({ url: db.url, txlock: { counters: { autoCreate: true, coalesce: false }, leases: { autoCreate: true } }, poolSize: 10 });
    await app.get(CounterService).set('row', 0);
    await setDatabaseDefaults(db.name, settings);
    await app.close();
    app = await createTestApp({ url: db.url, txlock: { counters: { coalesce: false } }, poolSize: 10 });
    const [{ setting }] = await app.get(TransactionHost).dataSource.query(`SELECT current_setting($1) AS setting`, [Object.keys(settings)[0]]);
    expect(setting).toBe(Object.values(settings)[0]);
    return app;
  };

  /** Another session holding the counter row `key` locked (an UPDATE in an open transaction), until the returned function. */
  const holdCounterRow = async (key: string): Promise<() => Promise<void>> => {
    other = new pg.Client({ connectionString: directUrl(db!.url) });
    await other.connect();
    await other.query(`SET lock_timeout = 0; SET statement_timeout = 0`);
    await other.query('BEGIN');
    await other.query(`UPDATE txlock_counters SET "value" = "value" + 100 WHERE "key" = $1`, [key]);
    return async () => {
      await other!.query('ROLLBACK');
      await other!.end();
      other = undefined;
    };
  };

  /** Increments the counter row another session holds locked: refused by `setting` with ServerTimeoutError, having changed nothing. */
  const expectRefusedWhileRowHeld = async (counters: CounterService, setting: 'lock_timeout' | 'statement_timeout') => {
    const release = await holdCounterRow('row');
    const error = await counters.increment('row').catch((e: unknown) => e);
    await release();
    expect(error).toBeInstanceOf(ServerTimeoutError);
    expect(error).toMatchObject({ setting, message: expect.stringContaining(`longer than ${setting}`) });
    expect(await counters.get('row')).toBe(0);
    expect(await counters.increment('row')).toBe(1);
  };

  /** Resolves once a statement of this database waits for a lock (another session's). */
  const someoneWaits = () =>
    eventually(async () => {
      const [{ n }] = await app!.get(TransactionHost).dataSource.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
      );
      return n > 0;
    });

  afterEach(async () => {
    await other?.end().catch(() => undefined);
    other = undefined;
    await app?.close();
    app = undefined;
    await db?.drop();
    db = undefined;
  });

  describe("lock_timeout = '100ms'", () => {
    it('a lock wait with no timeoutMs fails with ServerLockTimeoutError naming lock_timeout (transaction and session scope), having run nothing', async () => {
      const locks = (await databaseWith({ lock_timeout: '100ms' })).get(LockService);
      let ran = 0;
      const release = await holding((body) => locks.withAdvisoryLock('busy', body));
      for (const scope of ['transaction', 'session'] as const) {
        const error = await locks.withAdvisoryLock('busy', () => ran++, { scope }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ServerLockTimeoutError);
        expect(error).toBeInstanceOf(LockTimeoutError);
        expect(error).toMatchObject({ setting: 'lock_timeout', timeoutMs: Number.POSITIVE_INFINITY, message: expect.stringContaining("PostgreSQL's lock_timeout ended the wait") });
      }
      expect(await locks.tryAdvisoryLock('busy', () => ran++, { timeoutMs: 50 })).toEqual({ ran: false, reason: 'timeout' });
      await release();
      expect(ran).toBe(0);
    });

    it("a lock call's own timeoutMs replaces it: the call waits past the database's lock_timeout and gets the lock", async () => {
      const locks = (await databaseWith({ lock_timeout: '100ms' })).get(LockService);
      const release = await holding((body) => locks.withAdvisoryLock('slow', body));
      const waiter = locks.withAdvisoryLock('slow', () => 'ran', { timeoutMs: 30_000 });
      await someoneWaits();
      await sleep(500);
      await release();
      expect(await waiter).toBe('ran');
    });

    it('a counter increment kept waiting for its row past lock_timeout is sent again, then fails with ServerTimeoutError naming it, having changed nothing', async () => {
      const counters = (await databaseWith({ lock_timeout: '100ms' })).get(CounterService);
      await expectRefusedWhileRowHeld(counters, 'lock_timeout');
    });

    it('lease calls never fail on it: one winner among 20 callers per name, renewals and releases go through', async () => {
      const leases = (await databaseWith({ lock_timeout: '1ms' })).get(LeaseService);
      for (let round = 0; round < 5; round++) {
        const { values, errors } = await race(20, () => leases.acquire(`job-${round}`, { atMostForMs: 60_000 }));
        expect(errors).toEqual([]);
        const [winner, ...others] = values.filter((lease) => lease !== null);
        expect(others).toEqual([]);
        await Promise.all([leases.extend(winner!, 60_000), leases.extend(winner!, 60_000)]);
        await leases.release(winner!);
      }
    });
  });

  describe("statement_timeout = '200ms'", () => {
    it('a lock wait past it fails with ServerLockTimeoutError naming statement_timeout, with or without a longer timeoutMs', async () => {
      const locks = (await databaseWith({ statement_timeout: '200ms' })).get(LockService);
      let ran = 0;
      const release = await holding((body) => locks.withAdvisoryLock('busy', body));
      for (const options of [{}, { timeoutMs: 30_000 }, { scope: 'session' as const }]) {
        const error = await locks.withAdvisoryLock('busy', () => ran++, options).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ServerLockTimeoutError);
        expect(error).toMatchObject({ setting: 'statement_timeout', message: expect.stringContaining("PostgreSQL's statement_timeout ended the wait") });
      }
      await release();
      expect(ran).toBe(0);
    });

    it('a counter increment cancelled by it fails with ServerTimeoutError naming it, having changed nothing; leases and counters work otherwise', async () => {
      const app = await databaseWith({ statement_timeout: '200ms' });
      const counters = app.get(CounterService);
      await expectRefusedWhileRowHeld(counters, 'statement_timeout');
      const leases = app.get(LeaseService);
      expect(await leases.run('job', (lease) => leases.extend(lease, 1_000).then(() => 'renewed'), { atMostForMs: 1_000 })).toEqual({ ran: true, value: 'renewed' });
    });
  });

  describe('idle_in_transaction_session_timeout', () => {
    it('a transaction whose body waits on I/O between statements fails with IdleInTransactionTimeoutError: rolled back, not retried', async () => {
      const app = await databaseWith({ idle_in_transaction_session_timeout: '200ms' });
      const tx = app.get(TransactionHost);
      await tx.dataSource.query('CREATE TABLE notes (body text)');
      let attempts = 0;
      const error = await tx
        .run({ retries: 3 }, async () => {
          attempts++;
          await tx.manager.query(`INSERT INTO notes VALUES ('before the wait')`);
          await sleep(1_000); // an HTTP call, a file read...
          await tx.manager.query(`INSERT INTO notes VALUES ('after the wait')`);
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdleInTransactionTimeoutError);
      expect((error as Error).message).toContain('idle_in_transaction_session_timeout');
      expect(attempts).toBe(1);
      expect(await tx.dataSource.query('SELECT body FROM notes')).toEqual([]);
    });

    it('one that waits before COMMIT fails the same way, as a rollback (its afterRollback hooks run), never as an unknown outcome', async () => {
      const app = await databaseWith({ idle_in_transaction_session_timeout: '200ms' });
      const tx = app.get(TransactionHost);
      const counters = app.get(CounterService);
      const hooks: string[] = [];
      const error = await tx
        .run(async () => {
          await counters.increment('row');
          tx.afterCommit(() => void hooks.push('afterCommit'));
          tx.afterRollback(() => void hooks.push('afterRollback'));
          await sleep(1_000);
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(IdleInTransactionTimeoutError);
      expect(hooks).toEqual(['afterRollback']);
      expect(await counters.get('row')).toBe(0);
    });

    // On pg's native client the server's reason never reaches us and is inferred from how long the transaction idled
    // (native-idle-timeout.ts): a session ended sooner, by pg_terminate_backend(), must stay a lost connection there too.
    it('a session an administrator ends while its transaction idles, before that timeout, is a lost connection: retried, then committed', async () => {
      const app = await databaseWith({ idle_in_transaction_session_timeout: '1s' });
      const tx = app.get(TransactionHost);
      const counters = app.get(CounterService);
      let attempts = 0;
      await tx.run({ retries: 1 }, async () => {
        attempts++;
        await counters.increment('row');
        if (attempts > 1) return;
        const [{ pid }] = await tx.manager.query('SELECT pg_backend_pid() AS pid');
        await tx.dataSource.query('SELECT pg_terminate_backend($1)', [pid]);
        await sleep(300);
        await counters.increment('row');
      });
      expect(attempts).toBe(2);
      expect(await counters.get('row')).toBe(1);
    });
  });
});
