import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { Controller, HttpStatus, Injectable, Post, type INestApplication } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import pg from 'pg';
import request from 'supertest';
import { DataSource } from 'typeorm';
import {
  advisoryLockKey,
  InvalidOptionError,
  LeaseService,
  LockService,
  OnOutboxEvent,
  OutboxRelay,
  OutboxService,
  Propagation,
  ShutdownRollbackError,
  ShuttingDownError,
  SingleFlightService,
  TransactionHost,
  Transactional,
  TxLockExceptionFilter,
  TxLockModule,
  type TxLockModuleOptions,
} from '../../lib/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually, gate, whenAborted, type Gate } from '../support/gate.js';
import { createTestApp } from '../support/nest-app.js';

// What one HTTP request of the app below waits for before its transaction commits.
let requestGate: Gate | undefined;

@Controller()
class WorkController {
  constructor(
    private readonly dataSource: DataSource,
    private readonly tx: TransactionHost,
  ) {}

  // Two transactions one after the other: a request that arrived before the close finishes both.
  @Post('two-steps')
  async twoSteps(): Promise<{ ok: true }> {
    await this.tx.run(() => this.dataSource.query("INSERT INTO done (what) VALUES ('step 1')"));
    await requestGate?.opened;
    await this.tx.run(() => this.dataSource.query("INSERT INTO done (what) VALUES ('step 2')"));
    return { ok: true };
  }

  @Post('work')
  @Transactional()
  async work(): Promise<{ ok: true }> {
    await this.dataSource.query("INSERT INTO done (what) VALUES ('request')");
    await requestGate?.opened;
    return { ok: true };
  }
}

@Injectable()
class NoteHandler {
  constructor(private readonly dataSource: DataSource) {}

  @OnOutboxEvent('shutdown.note')
  async handle({ n }: { n: number }): Promise<void> {
    await this.dataSource.query('INSERT INTO done (what) VALUES ($1)', [`note ${n}`]);
  }
}

// app.close() on SIGTERM, in one process: new work refused with a named error once the close begins, running work
// finishing within the grace period, what outlives it rolled back, leases and session locks given back at once, and no
// connection left checked out when TypeORM closes the pool. (Two replica processes: replicas.spec.ts.)
describe('shutdown: app.close()', () => {
  let db: TestDatabase;
  let app: INestApplication | undefined;
  let closing: Promise<void> | undefined;
  let observer: pg.Pool;

  beforeEach(async () => {
    db = await createTestDatabase();
    observer = new pg.Pool({ connectionString: db.url, max: 2 });
    await observer.query('CREATE TABLE done (id serial PRIMARY KEY, what text NOT NULL)');
  });
  afterEach(async () => {
    requestGate?.open();
    await (closing ?? app?.close())?.catch(() => undefined);
    [app, closing, requestGate] = [undefined, undefined, undefined];
    await observer.end();
    await db.drop();
  });

  const start = async (txlock: Omit<TxLockModuleOptions, 'dataSource'> = {}, http = false, outbox = false): Promise<INestApplication> => {
    app = await createTestApp({
      url: db.url,
      txlock: { autoCreate: true, ...txlock },
      http,
      controllers: http ? [WorkController] : [],
      providers: [...(http ? [{ provide: APP_FILTER, useClass: TxLockExceptionFilter }] : []), ...(outbox ? [NoteHandler] : [])],
    });
    return app;
  };
  // Begins the close without waiting for it: it waits for the running work.
  const beginClose = async (): Promise<void> => {
    closing = app!.close();
    await eventually(async () => app!.get(TransactionHost).shutdownSignal.aborted);
  };
  const rows = async (): Promise<string[]> => (await observer.query<{ what: string }>('SELECT what FROM done ORDER BY id')).rows.map((row) => row.what);
  // A transaction that wrote and waits on `held`, in flight when the close begins; `entered` opens once it wrote.
  const inFlight = (tx: TransactionHost, dataSource: DataSource, held: Gate, entered: Gate, what = 'in flight'): Promise<void> =>
    tx.run(async () => {
      await dataSource.query('INSERT INTO done (what) VALUES ($1)', [what]);
      entered.open();
      await held.opened;
      await dataSource.query('INSERT INTO done (what) VALUES ($1)', [`${what}, after the close began`]);
    });

  it('refuses new transactions, locks, leases and single flights with ShuttingDownError, running none of them', async () => {
    await start();
    const [tx, locks, leases, flights] = [app!.get(TransactionHost), app!.get(LockService), app!.get(LeaseService), app!.get(SingleFlightService)];
    const [held, entered] = [gate(), gate()];
    const running = inFlight(tx, app!.get(DataSource), held, entered);
    await entered.opened;
    await beginClose();

    let ran = 0;
    const body = async () => void ran++;
    const refusals = await Promise.all(
      [
        () => tx.run(body),
        () => locks.withAdvisoryLock('k', body),
        () => locks.withAdvisoryLock('k', body, { scope: 'session' }),
        () => leases.run('job', body, { atMostForMs: 10_000 }),
        () => leases.acquire('job', { atMostForMs: 10_000 }),
        () => flights.run('key', body, { ttlMs: 1_000 }),
      ].map((call) => call().then(() => undefined, (error: unknown) => error)),
    );
    expect(refusals.map((error) => (error as ShuttingDownError).refused)).toEqual(['transaction', 'transaction', 'session lock', 'lease', 'lease', 'single flight']);
    for (const error of refusals) expect(error).toBeInstanceOf(ShuttingDownError);
    expect(ran).toBe(0);
    expect((await observer.query('SELECT count(*)::int AS n FROM txlock_leases')).rows).toEqual([{ n: 0 }]);

    // The transaction that was running finishes within the grace period, and the close then completes.
    held.open();
    await running;
    await closing;
    expect(await rows()).toEqual(['in flight', 'in flight, after the close began']);
  });

  it('lets a running transaction finish within graceMs, nested and REQUIRES_NEW work included, then releases every connection', async () => {
    await start({ shutdown: { graceMs: 10_000 } });
    const tx = app!.get(TransactionHost);
    const dataSource = app!.get(DataSource);
    const [held, entered] = [gate(), gate()];
    const running = tx.run(async () => {
      await dataSource.query("INSERT INTO done (what) VALUES ('outer')");
      entered.open();
      await held.opened;
      // Part of work admitted before the close: its own inner transactions are let in.
      await tx.run({ propagation: Propagation.REQUIRES_NEW }, () => dataSource.query("INSERT INTO done (what) VALUES ('requires new')"));
      await tx.run({ propagation: Propagation.NESTED }, () => dataSource.query("INSERT INTO done (what) VALUES ('nested')"));
    });
    await entered.opened;
    const startedAt = performance.now();
    await beginClose();
    held.open();
    await running;
    // The close waited for it, not for the grace period.
    await app!.get(TransactionHost).beforeApplicationShutdown();
    const pool = (dataSource.driver as unknown as { master: pg.Pool }).master;
    expect(pool.totalCount - pool.idleCount).toBe(0);
    expect((dataSource.driver as unknown as { connectedQueryRunners: unknown[] }).connectedQueryRunners).toEqual([]);
    await closing;
    const tookMs = performance.now() - startedAt;
    console.log(`[shutdown] the close waited ${tookMs.toFixed(0)} ms for a running transaction (graceMs 10000)`);
    expect(tookMs).toBeLessThan(10_000);
    expect(await rows()).toEqual(['outer', 'requires new', 'nested']);
  });

  it('rolls back what is still running after graceMs: its caller gets ShutdownRollbackError, its locks are free, nothing is checked out', async () => {
    await start({ shutdown: { graceMs: 300 } });
    const tx = app!.get(TransactionHost);
    const locks = app!.get(LockService);
    const dataSource = app!.get(DataSource);
    const [idle, entered, sleeping] = [gate(), gate(), gate()];
    // One in a statement (a long query: cancelled), one between statements (waiting for something else: refused at its next one).
    const inStatement = locks.withAdvisoryLock('busy', async () => {
      await dataSource.query("INSERT INTO done (what) VALUES ('in a statement')");
      sleeping.open();
      await dataSource.query('SELECT pg_sleep(30)');
    });
    const betweenStatements = inFlight(tx, dataSource, idle, entered, 'between statements');
    const outcomes = [inStatement, betweenStatements].map((call) => call.then(() => 'committed', (error: unknown) => error));
    await Promise.all([entered.opened, sleeping.opened]);
    const startedAt = performance.now();
    await beginClose();
    await app!.get(TransactionHost).beforeApplicationShutdown();
    const drainedMs = performance.now() - startedAt;
    const pool = (dataSource.driver as unknown as { master: pg.Pool }).master;
    expect(pool.totalCount - pool.idleCount).toBe(0);
    expect((dataSource.driver as unknown as { connectedQueryRunners: unknown[] }).connectedQueryRunners).toEqual([]);
    // The advisory lock went with the rolled-back transaction: another session takes it at once.
    const key = advisoryLockKey('busy').toString();
    expect((await observer.query('SELECT pg_try_advisory_lock($1::bigint) AS ok', [key])).rows).toEqual([{ ok: true }]);
    await observer.query('SELECT pg_advisory_unlock($1::bigint)', [key]);

    const inStatementOutcome = await outcomes[0];
    expect(inStatementOutcome).toBeInstanceOf(ShutdownRollbackError);
    expect((inStatementOutcome as ShutdownRollbackError).graceMs).toBe(300);
    idle.open(); // its next statement is refused: it learns then
    expect(await outcomes[1]).toBeInstanceOf(ShutdownRollbackError);
    await closing;
    console.log(`[shutdown] graceMs 300: running work rolled back and the pool free ${drainedMs.toFixed(0)} ms after the close began`);
    expect(drainedMs).toBeLessThan(5_000);
    expect(await rows()).toEqual([]);
  });

  it("aborts running leases' signals, frees them at once (not after atLeastForMs) and releases session locks as soon as the work stops", async () => {
    await start();
    const leases = app!.get(LeaseService);
    const locks = app!.get(LockService);
    const tx = app!.get(TransactionHost);
    const seen: unknown[] = [];
    // Both bodies are running before the close begins (the rows PostgreSQL shows come a moment before the bodies start).
    const [jobRunning, sessionRunning] = [gate(), gate()];
    const job = leases.run(
      'nightly',
      async (lease) => {
        expect(leases.current()).toBe(lease);
        jobRunning.open();
        seen.push(await whenAborted(lease.signal));
        // Winding down: a transaction of the job's own is let in during the grace period.
        await tx.run(() => app!.get(DataSource).query("INSERT INTO done (what) VALUES ('job wound down')"));
      },
      { atMostForMs: 600_000, atLeastForMs: 600_000 },
    );
    const sessionHolder = locks.withAdvisoryLock(
      'session-key',
      () => {
        sessionRunning.open();
        return whenAborted(tx.shutdownSignal);
      },
      { scope: 'session' },
    );
    await Promise.all([jobRunning.opened, sessionRunning.opened]);
    expect((await observer.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rowCount).toBe(1);
    expect((await observer.query('SELECT 1 FROM txlock_leases')).rowCount).toBe(1);
    const startedAt = performance.now();
    await beginClose();
    await Promise.all([job, sessionHolder]);
    await closing;
    const tookMs = performance.now() - startedAt;
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBeInstanceOf(ShuttingDownError);
    expect((seen[0] as ShuttingDownError).refused).toBeUndefined();
    expect(await rows()).toEqual(['job wound down']);
    const lease = await observer.query<{ free: boolean }>('SELECT lock_until <= clock_timestamp() AS free FROM txlock_leases');
    expect(lease.rows).toEqual([{ free: true }]);
    expect((await observer.query("SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rowCount).toBe(0);
    console.log(`[shutdown] lease and session lock given back ${tookMs.toFixed(0)} ms after the close began`);
  });

  it('answers HTTP 503 with Retry-After to requests that arrive during the close; the request already running completes', async () => {
    await start({}, true);
    requestGate = gate();
    const server = app!.getHttpServer();
    const first = request(server).post('/work').then((response) => response);
    await eventually(async () => (await observer.query("SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction' AND datname = current_database()")).rowCount === 1);
    await beginClose();
    const refused = await request(server).post('/work');
    expect(refused.status).toBe(HttpStatus.SERVICE_UNAVAILABLE);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.body).toMatchObject({ statusCode: 503, error: 'Service Unavailable', reason: 'shutting-down' });
    requestGate.open();
    expect((await first).status).toBe(HttpStatus.CREATED);
    await closing;
    expect(await rows()).toEqual(['request']);
  });

  it('lets a request that arrived before the close begin its next transaction; refuses one that arrived after, before its first', async () => {
    await start({}, true);
    requestGate = gate();
    const server = app!.getHttpServer();
    const first = request(server).post('/two-steps').then((response) => response);
    await eventually(async () => (await rows()).length === 1); // step 1 committed, step 2 waits
    await beginClose();
    const late = await request(server).post('/two-steps');
    expect(late.status).toBe(HttpStatus.SERVICE_UNAVAILABLE);
    expect(await rows()).toEqual(['step 1']);
    requestGate.open();
    expect((await first).status).toBe(HttpStatus.CREATED);
    await closing;
    expect(await rows()).toEqual(['step 1', 'step 2']);
  });

  it('stops the outbox relay in the same sequence, before the pool closes', async () => {
    await start({ outbox: { pollIntervalMs: 50 } }, false, true);
    const [tx, outbox, relay] = [app!.get(TransactionHost), app!.get(OutboxService), app!.get(OutboxRelay)];
    await tx.run(() => outbox.publish('shutdown.note', { n: 1 }));
    await eventually(async () => (await rows()).length === 1);
    await beginClose();
    await tx.beforeApplicationShutdown();
    // Stopped by then: stop() hands back the promise of the stop that already ran.
    expect(await Promise.race([relay.stop().then(() => 'stopped'), new Promise((resolve) => setImmediate(() => resolve('still running')))])).toBe('stopped');
    // New work cannot publish any more: its transaction is refused.
    await expect(tx.run(() => outbox.publish('shutdown.note', { n: 2 }))).rejects.toBeInstanceOf(ShuttingDownError);
    await closing;
    expect(await rows()).toEqual(['note 1']);
    expect((await observer.query("SELECT count(*)::int AS n FROM txlock_outbox WHERE status = 'delivered'")).rows).toEqual([{ n: 1 }]);
  });

  it('checks the shutdown options', () => {
    expect(() => TxLockModule.forRoot({ shutdown: { graceMS: 5 } as never })).toThrow(/Unknown TxLockModule option "shutdown.graceMS" \(did you mean "shutdown.graceMs"\?\)/);
    expect(() => TxLockModule.forRoot({ shutdown: { graceMs: -1 } })).toThrow(InvalidOptionError);
    expect(() => TxLockModule.forRoot({ shutdown: { graceMs: 1.5 } })).toThrow(/shutdown.graceMs/);
    expect(() => TxLockModule.forRoot({ shutdown: 5 as never })).toThrow(InvalidOptionError);
    expect(() => TxLockModule.forRoot({ shutdown: { graceMs: 0 } })).not.toThrow();
  });
});
