import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { TypeOrmModule } from '@nestjs/typeorm';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { AdvisoryLock, InvalidOptionError, LockService, SessionLockPoolerError, TxLockModule, type TxLockModuleOptions } from '../../lib/index.js';
import { race } from '../../lib/testing/race.js';
import { createTestDatabase, directUrl, expectAllReleased, poolerUrl, type TestDatabase } from '../support/database.js';
import { nativePg } from '../support/native-client.js';
import { createTestApp } from '../support/nest-app.js';
import { RoundTripLog } from '../support/round-trips.js';

// The r05 repro (../shared/repros/r05-pgbouncer.ts) as a test: 12 callers of one session-scope critical section.
const CALLERS = 12;
const behindPooler = poolerUrl() !== undefined;
const session = { scope: 'session' } as const;

@Injectable()
class NightlyJobs {
  runs = 0;

  @AdvisoryLock({ key: 'nightly', scope: 'session' })
  async nightly(): Promise<void> {
    this.runs++;
  }
}

/** Runs `CALLERS` callers of one critical section at once: how many were inside together at most, and what failed. */
async function criticalSection(enter: (body: () => Promise<void>) => Promise<unknown>): Promise<{ most: number; ran: number; errors: unknown[] }> {
  let inside = 0;
  let most = 0;
  let ran = 0;
  const { errors } = await race(CALLERS, () =>
    enter(async () => {
      most = Math.max(most, ++inside);
      ran++;
      await new Promise((resolve) => setTimeout(resolve, 20));
      inside--;
    }),
  );
  return { most, ran, errors };
}

// Connections: app pool 12 (+ 12 more for the second app) + one admin client, straight to the server.
describe('session-scope locks and poolers', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let declared: INestApplication;
  let direct: pg.Client;

  /** Advisory locks held or awaited on this database by any backend, asked of the server itself (never through a pooler). */
  const advisoryLocks = async () =>
    (await direct.query(`SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).rows;

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ url: db.url, poolSize: CALLERS });
    declared = await createTestApp({ url: db.url, poolSize: CALLERS, txlock: { pooler: 'transaction' } });
    direct = new pg.Client({ connectionString: directUrl(db.url) });
    await direct.connect();
  });
  afterAll(async () => {
    await direct?.end();
    await app?.close();
    await declared?.close();
    await db?.drop();
  });

  (behindPooler ? it.skip : it)('on a direct connection, lets one session-scope caller at a time in: no false positive', async () => {
    const locks = app.get(LockService);
    const { most, ran, errors } = await criticalSection((body) => locks.withAdvisoryLock('r05', body, session));
    expect({ most, ran, errors }).toEqual({ most: 1, ran: CALLERS, errors: [] });
    expect(await advisoryLocks()).toEqual([]);
    await expectAllReleased(app.get(DataSource));
  });

  (behindPooler ? it.skip : it)('checks each pooled connection once: one SELECT pg_backend_pid() on its first session lock, none after (native client: none)', async () => {
    const fresh = await createTestApp({ url: db.url, poolSize: 2 });
    try {
      const dataSource = fresh.get(DataSource);
      const locks = fresh.get(LockService);
      const log = RoundTripLog.attach(dataSource);
      // The bootstrap's server identification already compared its connection's pid: hold that one, so the session
      // lock gets the pool's other, never-checked connection.
      const held = dataSource.createQueryRunner();
      await held.connect();
      const sent = async () => {
        log.reset();
        await locks.withAdvisoryLock('checked-once', () => undefined, session);
        return [...log.sent];
      };
      const [first, second] = [await sent(), await sent()];
      await held.release();
      expect(second).toEqual([expect.stringContaining('pg_advisory_lock('), expect.stringContaining('pg_advisory_unlock('), 'SELECT pg_advisory_unlock_all()']);
      // pg's native client cannot show its backend key: its target was checked once, on a connection of its own.
      expect(first).toEqual(nativePg ? second : ['SELECT pg_backend_pid() AS pid', ...second]);
    } finally {
      await fresh.close();
    }
  });

  (behindPooler ? it : it.skip)(
    'behind a transaction-mode PgBouncer (not declared), refuses every session-scope caller before running it, and locks nothing',
    async () => {
      const locks = app.get(LockService);
      const log = RoundTripLog.attach(app.get(DataSource));
      const { ran, errors } = await criticalSection((body) => locks.withAdvisoryLock('r05', body, session));
      log.stop();
      expect(ran).toBe(0);
      expect(errors).toHaveLength(CALLERS);
      for (const error of errors) expect(error).toEqual(expect.objectContaining({ name: 'SessionLockPoolerError', reason: 'detected' }));
      expect((errors[0] as Error).message).toMatch(/use scope 'transaction'/i);
      // Only the pid check was ever sent: no lock, and no unlock that could reach another client's server connection.
      expect(new Set(log.sent)).toEqual(new Set(['SELECT pg_backend_pid() AS pid']));
      expect(log.count).toBeLessThanOrEqual(CALLERS);
      expect(await advisoryLocks()).toEqual([]);
      await expectAllReleased(app.get(DataSource));
      // A decorated method and a try-lock are refused too; skipping silently would hide that nothing is locked.
      await expect(locks.tryAdvisoryLock('r05', () => 'ran', session)).rejects.toBeInstanceOf(SessionLockPoolerError);
    },
  );

  it('keeps transaction-scope locks exclusive, declared or not, behind a pooler or not', async () => {
    for (const target of [app, declared]) {
      const locks = target.get(LockService);
      expect(await criticalSection((body) => locks.withAdvisoryLock('r05-transaction', body))).toEqual({ most: 1, ran: CALLERS, errors: [] });
      expect(await criticalSection((body) => locks.withAdvisoryLock('r05-timeout', body, { timeoutMs: 20_000 }))).toEqual({ most: 1, ran: CALLERS, errors: [] });
    }
  });

  it("with pooler: 'transaction', refuses every session-scope call before sending anything", async () => {
    const locks = declared.get(LockService);
    const log = RoundTripLog.attach(declared.get(DataSource));
    let ran = 0;
    const refused = await locks.withAdvisoryLock('declared', () => ran++, session).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(SessionLockPoolerError);
    expect(refused).toEqual(expect.objectContaining({ reason: 'declared', lock: 'advisory lock ["declared"]' }));
    await expect(locks.tryAdvisoryLocks(['a', 'b'], () => ran++, { ...session, nowait: true })).rejects.toBeInstanceOf(SessionLockPoolerError);
    expect(ran).toBe(0);
    expect(log.count).toBe(0);
    await expectAllReleased(declared.get(DataSource));
  });

  /** Boots an app with NightlyJobs: 'booted', or what the bootstrap threw. */
  const boot = async (txlock: TxLockModuleOptions): Promise<unknown> => {
    try {
      const moduleRef = await Test.createTestingModule({
        imports: [TypeOrmModule.forRoot({ type: 'postgres', url: db.url, extra: { max: 2 } }), TxLockModule.forRoot(txlock)],
        providers: [NightlyJobs],
      }).compile();
      const nest = moduleRef.createNestApplication({ logger: false });
      try {
        await nest.init();
        return 'booted';
      } finally {
        await nest.close();
      }
    } catch (error) {
      return error;
    }
  };

  it("with pooler: 'transaction', fails the bootstrap when a provider has a session-scope @AdvisoryLock method", async () => {
    const refused = await boot({ pooler: 'transaction' });
    expect(refused).toBeInstanceOf(SessionLockPoolerError);
    expect((refused as SessionLockPoolerError).lock).toContain('NightlyJobs.nightly');
    expect(await boot({})).toBe('booted');
    expect(await boot({ pooler: 'session' })).toBe('booted');
  });

  it('refuses an unknown pooler value, naming the valid ones', async () => {
    const refused = await boot({ pooler: 'statement' as never });
    expect(refused).toBeInstanceOf(InvalidOptionError);
    expect((refused as Error).message).toMatch(/"none", "session", "transaction"/);
  });
});
