import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, Param, Post, type INestApplication } from '@nestjs/common';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { AdvisoryLock, advisoryLockKey, LockAbortedError, LockService, Transactional, TransactionHost, type LockKey } from '../../lib/index.js';
import { createTestDatabase, directUrl, expectAllReleased, poolerUrl, poolOf, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/gate.js';
import { createTestApp } from '../support/nest-app.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Holds advisory keys from a connection of its own, as another process would. */
async function holdElsewhere(url: string, key: LockKey): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: directUrl(url) });
  await client.connect();
  await client.query('SELECT pg_advisory_lock($1::bigint)', [advisoryLockKey(key).toString()]);
  return client;
}

async function waitingAtServer(dataSource: DataSource): Promise<number> {
  const [{ n }] = (await dataSource.query(
    `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  )) as { n: number }[];
  return n;
}

// A caller that stops waiting for a lock (its AbortSignal fires) leaves at once: nothing of its body runs, the
// wait is cancelled on the server, and its connection is back in the pool (r29).
describe('lock waits ended by a signal', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let locks: LockService;
  let tx: TransactionHost;
  let dataSource: DataSource;

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ url: db.url, poolSize: 4 });
    locks = app.get(LockService);
    tx = app.get(TransactionHost);
    dataSource = app.get(DataSource);
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  // Session-scope locks are refused behind a transaction pooler (.ci/pgbouncer.sh).
  for (const scope of poolerUrl() ? (['transaction'] as const) : (['transaction', 'session'] as const)) {
    it(`${scope} scope: a wait in the database is cancelled there, the body never runs, the connection is free`, async () => {
      const other = await holdElsewhere(db.url, `aborted-${scope}`);
      try {
        const controller = new AbortController();
        let ran = false;
        const waiting = locks.withAdvisoryLock(`aborted-${scope}`, async () => void (ran = true), { scope, signal: controller.signal }).catch((error: unknown) => error);
        await eventually(async () => (await waitingAtServer(dataSource)) === 1);
        controller.abort(new Error('the caller gave up'));
        const error = await waiting;
        expect(error).toBeInstanceOf(LockAbortedError);
        expect((error as LockAbortedError).cause).toEqual(new Error('the caller gave up'));
        expect(await waitingAtServer(dataSource)).toBe(0);
        await expectAllReleased(dataSource, 1_000);
        await other.query('SELECT pg_advisory_unlock_all()');
        await sleep(50);
        expect(ran).toBe(false);
      } finally {
        await other.end();
      }
    });
  }

  it('a joined wait is cancelled inside a savepoint: the caller goes on in its transaction and commits', async () => {
    const other = await holdElsewhere(db.url, 'aborted-joined');
    try {
      await dataSource.query('CREATE TABLE IF NOT EXISTS aborted_note (body text)');
      const controller = new AbortController();
      const outcome = await tx.run(async () => {
        await tx.manager.query(`INSERT INTO aborted_note VALUES ('before')`);
        setTimeout(() => controller.abort(), 100);
        const error = await locks.withAdvisoryLock('aborted-joined', async () => 'ran', { signal: controller.signal }).catch((thrown: unknown) => thrown);
        await tx.manager.query(`INSERT INTO aborted_note VALUES ('after')`);
        return error;
      });
      expect(outcome).toBeInstanceOf(LockAbortedError);
      expect(((await dataSource.query('SELECT body FROM aborted_note ORDER BY body')) as { body: string }[]).map((r) => r.body)).toEqual(['after', 'before']);
    } finally {
      await other.end();
    }
  });

  it('a wait for a concurrent branch of the same transaction ends too', async () => {
    const controller = new AbortController();
    const outcome = await tx.run(() =>
      Promise.all([
        locks.withAdvisoryLock('aborted-branch', () => sleep(300)),
        (async () => {
          await sleep(20);
          setTimeout(() => controller.abort(), 50);
          return locks.withAdvisoryLock('aborted-branch', async () => 'ran', { signal: controller.signal }).catch((error: unknown) => error);
        })(),
      ]),
    );
    expect(outcome[1]).toBeInstanceOf(LockAbortedError);
  });

  it('a signal aborted before the call sends nothing; tryAdvisoryLock rethrows an abort instead of answering "locked"', async () => {
    const aborted = AbortSignal.abort();
    await expect(locks.withAdvisoryLock('aborted-before', async () => 'ran', { signal: aborted })).rejects.toBeInstanceOf(LockAbortedError);
    const other = await holdElsewhere(db.url, 'aborted-try');
    try {
      await expect(locks.tryAdvisoryLock('aborted-try', async () => 'ran', { timeoutMs: 30_000, signal: AbortSignal.timeout(100) })).rejects.toBeInstanceOf(LockAbortedError);
    } finally {
      await other.end();
    }
    await expectAllReleased(dataSource);
  });

  it('an abort after the lock was taken changes nothing', async () => {
    const controller = new AbortController();
    const value = await locks.withAdvisoryLock(
      'aborted-late',
      async () => {
        controller.abort();
        await tx.manager.query('SELECT 1');
        return 'finished';
      },
      { signal: controller.signal },
    );
    expect(value).toBe('finished');
  });
});

let bodies = 0;

@Controller()
class Payments {
  constructor(private readonly dataSource: DataSource) {}

  @Post('accounts/:id/pay')
  @AdvisoryLock({ key: (id: string) => ['account', id] })
  async pay(@Param('id') id: string): Promise<{ ok: true }> {
    bodies++;
    await this.dataSource.query('INSERT INTO payment (account) VALUES ($1)', [id]);
    return { ok: true };
  }

  @Get('health')
  @Transactional()
  async health(): Promise<unknown> {
    return ((await this.dataSource.query('SELECT 1 AS ok')) as unknown[])[0];
  }
}

// Clients that give up while their request waits for a lock (a load balancer's timeout) must not hold the pool.
describe('HTTP requests whose clients left while they waited for a lock', () => {
  let db: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({ url: db.url, poolSize: 4, controllers: [Payments], http: true, txlock: { acquireTimeoutMs: 2_000 } });
    await app.get(DataSource).query('CREATE TABLE payment (id serial PRIMARY KEY, account text)');
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  function send(method: string, path: string, giveUpAfterMs?: number): Promise<string> {
    const { port } = app.getHttpServer().address() as AddressInfo;
    return new Promise((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port, method, path }, (res) => res.resume().on('end', () => resolve(`HTTP ${res.statusCode}`)));
      req.on('error', () => resolve('client error'));
      req.end();
      if (giveUpAfterMs !== undefined) {
        setTimeout(() => {
          req.destroy();
          resolve('client gave up');
        }, giveUpAfterMs);
      }
    });
  }

  it('their waits end at once: the pool is free for others, and no handler body runs for them (r29)', async () => {
    const dataSource = app.get(DataSource);
    const other = await holdElsewhere(db.url, ['account', '1']);
    try {
      const gaveUp = await Promise.all(Array.from({ length: 4 }, () => send('POST', '/accounts/1/pay', 200)));
      expect(gaveUp).toEqual(Array(4).fill('client gave up'));
      await eventually(async () => poolOf(dataSource).idleCount === poolOf(dataSource).totalCount);
      expect(await waitingAtServer(dataSource)).toBe(0);
      expect(await send('GET', '/health')).toBe('HTTP 200');
      await other.query('SELECT pg_advisory_unlock_all()');
      await sleep(300);
      expect(bodies).toBe(0);
      expect(((await dataSource.query('SELECT count(*)::int AS n FROM payment')) as { n: number }[])[0]!.n).toBe(0);
    } finally {
      await other.end();
    }
  });
});
