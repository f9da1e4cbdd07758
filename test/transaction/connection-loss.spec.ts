import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import pg from 'pg';
import { QueryFailedError } from 'typeorm';
import {
  AtomicService,
  CommitOutcomeUnknownError,
  ConnectionLostError,
  CounterService,
  LockService,
  TransactionHost,
} from '../../lib/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';
import { TcpProxy } from '../support/tcp-proxy.js';
import { Item } from './fixtures.js';

// The connection breaks under a running transaction: a server restart, a network cut, pg_terminate_backend,
// or a COMMIT whose reply never arrives. Each surfaces as one named error with the driver's error as `cause`.
describe('a lost database connection', () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let app: INestApplication;
  let tx: TransactionHost;
  let direct: pg.Pool;
  const names = async () => ((await direct.query('SELECT name FROM tx_item ORDER BY id')).rows as { name: string }[]).map((r) => r.name);
  const insert = (name: string) => tx.manager.query('INSERT INTO tx_item (name) VALUES ($1)', [name]);

  beforeAll(async () => {
    db = await createTestDatabase();
    proxy = await TcpProxy.start(db.url);
    app = await createTestApp({ url: proxy.url, entities: [Item], poolSize: 4, txlock: { counters: { autoCreate: true } } });
    tx = app.get(TransactionHost);
    direct = new pg.Pool({ connectionString: db.url, max: 2 });
  });
  afterAll(async () => {
    await app.close();
    await direct.end();
    await proxy.close();
    await db.drop();
  });
  beforeEach(async () => {
    proxy.setDown(false);
    await direct.query('TRUNCATE tx_item');
  });

  it('COMMIT whose reply is lost: CommitOutcomeUnknownError with the driver error as cause; no hooks, no retry', async () => {
    const hooks: string[] = [];
    let attempts = 0;
    proxy.loseNextCommitReply();
    const error = await tx
      .run({ retries: 3 }, async () => {
        attempts++;
        await insert('paid');
        tx.afterCommit(() => void hooks.push('afterCommit'));
        tx.afterRollback(() => void hooks.push('afterRollback'));
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CommitOutcomeUnknownError);
    expect((error as Error).cause).toBeInstanceOf(Error);
    expect((error as Error).cause).not.toBeInstanceOf(CommitOutcomeUnknownError);
    expect(hooks).toEqual([]);
    expect(attempts).toBe(1);
    expect(await names()).toEqual(['paid']); // it did commit: the caller could not know
  });

  it('connections dropped mid-transaction: ConnectionLostError for that statement and every later one, never a masking error', async () => {
    const seen: Record<string, unknown> = {};
    seen.transaction = await tx
      .run(async () => {
        await insert('before');
        proxy.dropAll();
        seen.first = await insert('after').catch((error: unknown) => error);
        seen.second = await tx.getRepository(Item).find().catch((error: unknown) => error);
        seen.nested = await tx.run({ propagation: 'NESTED' }, () => insert('nested')).catch((error: unknown) => error);
      })
      .catch((error: unknown) => error);
    const lost = expect.any(ConnectionLostError);
    expect(seen).toEqual({ first: lost, second: lost, nested: lost, transaction: lost });
    expect(await names()).toEqual([]);
  });

  it('each library call inside a transaction whose connection dropped fails with ConnectionLostError', async () => {
    const locks = app.get(LockService);
    const counters = app.get(CounterService);
    const atomic = app.get(AtomicService);
    const calls: [string, () => Promise<unknown>][] = [
      ['statement', () => insert('x')],
      ['lock', () => locks.withAdvisoryLock('lost', async () => 'ran')],
      ['lock with timeout', () => locks.withAdvisoryLock('lost', async () => 'ran', { timeoutMs: 1_000 })],
      ['table lock', () => locks.lockTables(Item, 'EXCLUSIVE')],
      ['counter', () => counters.increment('lost')],
      ['getOrCreate', () => atomic.getOrCreate(Item, { name: 'lost' })],
      ['NESTED', () => tx.run({ propagation: 'NESTED' }, () => insert('y'))],
    ];
    for (const [label, call] of calls) {
      let outcome: unknown;
      await tx
        .run(async () => {
          await tx.manager.query('SELECT 1');
          proxy.dropAll();
          outcome = await call().then(
            () => 'succeeded',
            (error: unknown) => error,
          );
        })
        .catch(() => undefined);
      expect([label, outcome]).toEqual([label, expect.any(ConnectionLostError)]);
      expect(((outcome as Error).cause as Error | undefined)?.constructor.name).not.toMatch(/Released/);
    }
  });

  it('pg_terminate_backend under a transaction: ConnectionLostError whose cause carries SQLSTATE 57P01', async () => {
    const error = await tx
      .run(async () => {
        const [{ pid }] = await tx.manager.query('SELECT pg_backend_pid() AS pid');
        await direct.query('SELECT pg_terminate_backend($1)', [pid]);
        await insert('after-terminate');
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConnectionLostError);
    expect((error as { cause?: { code?: string } }).cause?.code).toBe('57P01');
  });

  it('retries re-run a transaction that lost its connection, on a fresh one, exactly once more', async () => {
    let attempts = 0;
    await tx.run({ retries: 2 }, async () => {
      attempts++;
      await insert(`attempt-${attempts}`);
      if (attempts === 1) proxy.dropAll();
      await insert(`attempt-${attempts}-more`);
    });
    expect(attempts).toBe(2);
    expect(await names()).toEqual(['attempt-2', 'attempt-2-more']);
  });

  it('the server down: a new transaction fails with ConnectionLostError, and works again once it is back', async () => {
    proxy.setDown(true);
    await expect(tx.run(() => insert('while-down'))).rejects.toBeInstanceOf(ConnectionLostError);
    proxy.setDown(false);
    await tx.run(() => insert('back'));
    expect(await names()).toEqual(['back']);
  });

  it('a statement failure is not a lost connection: it keeps its QueryFailedError shape', async () => {
    await direct.query(`INSERT INTO tx_item (name) VALUES ('dup')`);
    const error = await tx.run(() => insert('dup')).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(QueryFailedError);
    expect((error as { driverError?: { code?: string } }).driverError?.code).toBe('23505');
  });
});
