import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import pg from 'pg';
import { CounterService, LeaseService, SingleFlightService, TxLockError } from '../../lib/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/gate.js';
import { createTestApp } from '../support/nest-app.js';
import { TcpProxy } from '../support/tcp-proxy.js';

/** How `call` failed: the error's class, whether it is a TxLockError, and its cause's message. */
async function failure(call: () => Promise<unknown>): Promise<unknown> {
  try {
    return { resolved: await call() };
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    return { name: (error as Error).name, txLockError: error instanceof TxLockError, cause: cause instanceof Error ? cause.message : cause };
  }
}
/** A ConnectionLostError whose cause is the driver's own error. */
const connectionLost = { name: 'ConnectionLostError', txLockError: true, cause: expect.stringMatching(/Connection terminated/) };

// The app reaches PostgreSQL through a TCP proxy the tests cut; the tests themselves hold row locks over a
// direct connection, so a library statement is provably in flight (waiting on the lock) when the cut comes.
describe('a connection lost under a library statement outside a transaction', () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let app: INestApplication;
  let direct: pg.Client;

  beforeAll(async () => {
    db = await createTestDatabase();
    proxy = await TcpProxy.start(db.url);
    app = await createTestApp({
      url: proxy.url,
      poolSize: 4,
      txlock: { counters: { autoCreate: true }, leases: { autoCreate: true }, singleFlight: { autoCreate: true } },
    });
    direct = new pg.Client({ connectionString: db.url });
    await direct.connect();
  });
  afterEach(async () => {
    proxy.setDown(false);
    await direct.query('ROLLBACK');
  });
  afterAll(async () => {
    await direct?.end();
    await app?.close();
    await proxy?.close();
    await db?.drop();
  });

  /** Locks rows from the direct connection, in a transaction that afterEach rolls back. */
  const lockRows = async (sql: string, params: unknown[]) => {
    await direct.query('BEGIN');
    await direct.query(sql, params);
  };
  /** Cuts every proxied connection once a statement is waiting on the direct connection's row lock. */
  const cutWhileWaiting = async () => {
    await eventually(async () => {
      // Inside a transaction pg_stat_activity is a snapshot taken at its first read: drop it each time.
      await direct.query('SELECT pg_stat_clear_snapshot()');
      const { rows } = await direct.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
      return rows[0].n > 0;
    });
    proxy.dropAll();
  };
  /** Cuts every proxied connection and refuses new ones until the test ends. */
  const unreachable = () => {
    proxy.setDown(true);
  };

  it('CounterService: a coalesced increment in flight, and calls while the server is unreachable', async () => {
    const counters = app.get(CounterService);
    await counters.set('hot', 1);
    await lockRows(`SELECT 1 FROM txlock_counters WHERE key = $1 FOR UPDATE`, ['hot']);
    const increment = failure(() => counters.increment('hot'));
    await cutWhileWaiting();
    expect(await increment).toEqual(connectionLost);
    await direct.query('ROLLBACK');

    unreachable();
    expect({
      get: await failure(() => counters.get('hot')),
      getMany: await failure(() => counters.getMany(['hot'])),
      tryIncrement: await failure(() => counters.tryIncrement('hot', 1, { max: 10 })),
      set: await failure(() => counters.set('hot', 5)),
    }).toEqual({ get: connectionLost, getMany: connectionLost, tryIncrement: connectionLost, set: connectionLost });
  });

  it('LeaseService: acquire() and extend() in flight, and every call while the server is unreachable', async () => {
    const leases = app.get(LeaseService);
    await direct.query(`INSERT INTO txlock_leases VALUES ('expired', 'someone', 1, now(), now() - interval '1 second')`);
    // acquire() never waits on a row lock (SKIP LOCKED): hold it up with a table lock instead.
    await lockRows(`LOCK TABLE txlock_leases IN ACCESS EXCLUSIVE MODE`, []);
    const acquire = failure(() => leases.acquire('expired', { atMostForMs: 60_000 }));
    await cutWhileWaiting();
    expect(await acquire).toEqual(connectionLost);
    await direct.query('ROLLBACK');

    const lease = (await leases.acquire('held', { atMostForMs: 60_000 }))!;
    await lockRows(`SELECT 1 FROM txlock_leases WHERE name = $1 FOR UPDATE`, ['held']);
    const extend = failure(() => leases.extend(lease, 60_000));
    await cutWhileWaiting();
    expect(await extend).toEqual(connectionLost);
    await direct.query('ROLLBACK');

    unreachable();
    let ran = false;
    expect({
      acquire: await failure(() => leases.acquire('other', { atMostForMs: 60_000 })),
      run: await failure(() => leases.run('other', () => (ran = true), { atMostForMs: 60_000 })),
      release: await failure(() => leases.release(lease)),
      assertToken: await failure(() => leases.assertToken(lease.name, lease.token)),
      holders: await failure(() => leases.holders()),
    }).toEqual({ acquire: connectionLost, run: connectionLost, release: connectionLost, assertToken: connectionLost, holders: connectionLost });
    expect(ran).toBe(false);
  });

  it('the postgres single-flight store: its first read in flight, and a call while the server is unreachable', async () => {
    const flights = app.get(SingleFlightService);
    let computations = 0;
    const compute = async () => ++computations;
    await direct.query(`INSERT INTO txlock_single_flight VALUES ($1, '0', now() - interval '1 second')`, [JSON.stringify(['', 'report'])]);
    // The read deletes the key's expired row in the same statement: it waits on this lock.
    await lockRows(`SELECT 1 FROM txlock_single_flight WHERE key = $1 FOR UPDATE`, [JSON.stringify(['', 'report'])]);
    const run = failure(() => flights.run('report', compute, { ttlMs: 60_000 }));
    await cutWhileWaiting();
    expect(await run).toEqual(connectionLost);
    await direct.query('ROLLBACK');

    unreachable();
    expect(await failure(() => flights.run('other', compute, { ttlMs: 60_000 }))).toEqual(connectionLost);
    expect(computations).toBe(0);
  });
});
