import { afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { DataSource } from 'typeorm';
import { LeaseService, TransactionHost, type Lease } from '../../lib/index.js';
import { eventually, gate } from '../support/gate.js';
import { spawnWorker, type WorkerProcess } from '../support/processes.js';
import { useTestApp } from '../support/test-app.js';
import type { PauseInput, PauseOutput } from './lease-pause.worker.js';

const WORKER = 'test/leases/lease-pause.worker.ts';

/** The SQLSTATE anywhere on an error's driverError/cause chain. */
function sqlStateOf(error: unknown): string | undefined {
  for (let current = error, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    const { code, driverError, cause } = current as { code?: unknown; driverError?: { code?: unknown }; cause?: unknown };
    for (const candidate of [code, driverError?.code]) if (typeof candidate === 'string' && /^[0-9A-Z]{5}$/.test(candidate)) return candidate;
    current = cause;
  }
  return undefined;
}

// The lock strengths this relies on (see lib/leases/lease.sql.ts), checked on the server the suite runs on:
// a fenced statement holds the lease row FOR KEY SHARE until its transaction ends; a takeover locks it FOR
// UPDATE SKIP LOCKED, so it answers null until that transaction has ended (it never waits); extend and release
// lock it FOR NO KEY UPDATE, so they are not held up by it.
describe('fenced writes and the next holder', () => {
  const testApp = useTestApp({ txlock: { leases: { autoCreate: true } }, poolSize: 8 });
  let leases: LeaseService;
  let tx: TransactionHost;
  let dataSource: DataSource;
  let worker: WorkerProcess | undefined;

  const untilExpired = (name: string) =>
    eventually(async () => {
      const [{ expired }] = await dataSource.query(
        'SELECT coalesce(bool_and(lock_until <= clock_timestamp()), true) AS expired FROM txlock_leases WHERE name = $1',
        [name],
      );
      return expired as boolean;
    });
  const body = async (id = 1) => (await dataSource.query('SELECT body FROM report WHERE id = $1', [id]))[0].body as string;

  /**
   * True when `call` is stuck waiting on a lock (seen in pg_stat_activity), false when it settled first. Nothing
   * else in this file's database waits on locks, so a waiting backend is this call's.
   */
  const waitsOnLock = async (call: Promise<unknown>): Promise<boolean> => {
    let settled = false;
    call.then(
      () => (settled = true),
      () => (settled = true),
    );
    await eventually(async () => {
      if (settled) return true;
      const [{ n }] = await dataSource.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
      return n > 0;
    });
    return !settled;
  };

  /** Opens a transaction that writes report row `id` fenced by `lease` and stays open until the returned function is called. */
  const openFencedWrite = async (lease: Lease, id: number) => {
    const written = gate();
    const finish = gate();
    const writer = tx.run(async () => {
      const fence = leases.fence(lease, 2);
      const [, affected] = await tx.manager.query(`UPDATE report SET body = $1 WHERE id = ${id} AND ${fence.condition}`, [`token ${lease.token}`, ...fence.params]);
      expect(affected).toBe(1);
      written.open();
      await finish.opened;
    });
    await Promise.race([written.opened, writer]);
    return async () => {
      finish.open();
      await writer;
    };
  };

  beforeAll(async () => {
    leases = testApp.get(LeaseService);
    tx = testApp.get(TransactionHost);
    dataSource = testApp.dataSource;
    await dataSource.query('CREATE TABLE report (id int PRIMARY KEY, body text)');
    await dataSource.query(`INSERT INTO report VALUES (1, 'initial'), (2, 'initial'), (3, 'initial')`);
  });
  beforeEach(() => dataSource.query(`UPDATE report SET body = 'initial'`));
  afterEach(() => {
    // A failed test must not leave a stopped process behind.
    if (worker && worker.child.exitCode === null && worker.child.signalCode === null) {
      worker.child.kill('SIGCONT');
      worker.child.kill('SIGKILL');
    }
    worker = undefined;
  });

  it.each(['fence', 'assertToken'] as const)(
    '%s: a holder stopped (SIGSTOP) before COMMIT past its lease cannot commit after the next token is issued',
    async (check) => {
      await dataSource.query(`DELETE FROM txlock_leases WHERE name = 'job'`);
      worker = spawnWorker(WORKER, testApp.db.url, { check, atMostForMs: 1_500 } satisfies PauseInput);
      worker.result.catch(() => undefined);
      await eventually(async () => worker!.stdout().includes('paused') || worker!.child.exitCode !== null, 30_000);
      expect(worker.stdout()).toContain('paused');
      await untilExpired('job'); // the holder is still stopped, its fenced write not committed

      // While the stopped holder's fenced transaction is open, the lease is still in use: no new token.
      const whilePaused = leases.acquire('job', { atMostForMs: 60_000 });
      const waited = await waitsOnLock(whilePaused);
      const tokenWhilePaused = (await whilePaused)?.token ?? null;
      worker.child.kill('SIGCONT');
      const holder = (await worker.result) as PauseOutput;
      const next = await leases.acquire('job', { atMostForMs: 60_000 });
      const bodyAtIssue = await body(); // what the report said when token 2 was issued

      const fence = leases.fence(next!, 2);
      const [, affected] = await dataSource.query(`UPDATE report SET body = $1 WHERE id = 1 AND ${fence.condition}`, [`B (token ${next!.token})`, ...fence.params]);
      expect({ waited, tokenWhilePaused, bodyAtIssue, holder, nextToken: next?.token, affected, final: await body() }).toEqual({
        waited: false, // acquire() never waits on the stopped holder...
        tokenWhilePaused: null, // ...it answers null while the holder's fenced transaction is open...
        bodyAtIssue: 'A (token 1)', // ...so that transaction had committed when token 2 was issued
        holder: { token: 1, affected: 1, committed: true },
        nextToken: 2,
        affected: 1,
        final: 'B (token 2)',
      });
    },
  );

  it('an open fenced transaction does not block the holder\'s extend() or release() (FOR NO KEY UPDATE)', async () => {
    const lease = (await leases.acquire('renewable', { atMostForMs: 60_000 }))!;
    const finish = await openFencedWrite(lease, 2);
    try {
      const extend = leases.extend(lease, 120_000);
      expect(await waitsOnLock(extend)).toBe(false);
      await extend;
      const release = leases.release(lease);
      expect(await waitsOnLock(release)).toBe(false);
      await release;
    } finally {
      await finish();
    }
    expect(await body(2)).toBe(`token ${lease.token}`);
  });

  it('while a fenced transaction is open, acquire() answers null at once, held or expired, and takes over once it ends', async () => {
    const lease = (await leases.acquire('takeover', { atMostForMs: 60_000 }))!;
    const finish = await openFencedWrite(lease, 3);
    let takeover: Promise<Lease | null> | undefined;
    try {
      const early = leases.acquire('takeover', { atMostForMs: 60_000 });
      expect(await waitsOnLock(early)).toBe(false);
      expect(await early).toBeNull();

      // extend() writes a new row version; the fenced transaction's lock must carry over to it.
      await leases.extend(lease, 200);
      await untilExpired('takeover');
      const expired = leases.acquire('takeover', { atMostForMs: 60_000 });
      expect(await waitsOnLock(expired)).toBe(false);
      expect(await expired).toBeNull();
    } finally {
      await finish();
    }
    takeover = leases.acquire('takeover', { atMostForMs: 60_000 });
    expect((await takeover)?.token).toBe(lease.token + 1);
  });

  it('REPEATABLE READ: a fenced write whose snapshot predates the takeover fails (40001) instead of committing', async () => {
    const lease = (await leases.acquire('snapshot', { atMostForMs: 60_000 }))!;
    const snapshotTaken = gate();
    const takenOver = gate();
    const writer = tx.run({ isolation: 'REPEATABLE READ' }, async () => {
      await tx.manager.query('SELECT 1 FROM report LIMIT 1'); // the snapshot: token 1, lease not yet released
      snapshotTaken.open();
      await takenOver.opened;
      const fence = leases.fence(lease, 2);
      const [, affected] = await tx.manager.query(`UPDATE report SET body = $1 WHERE id = 3 AND ${fence.condition}`, ['stale', ...fence.params]);
      return affected as number;
    });
    await snapshotTaken.opened;
    await leases.release(lease); // the holder gives it back (lock_until = now) while its transaction is open...
    const next = await leases.acquire('snapshot', { atMostForMs: 60_000 }); // ...and someone else takes it
    takenOver.open();
    const outcome = await writer.then(
      (affected) => ({ committed: true, affected }),
      (error: unknown) => ({ committed: false, sqlState: sqlStateOf(error) }),
    );
    expect({ nextToken: next?.token, outcome, body: await body(3) }).toEqual({
      nextToken: lease.token + 1,
      outcome: { committed: false, sqlState: '40001' },
      body: 'initial',
    });
  });

  it('assertToken() outside a transaction takes no lock that outlives it', async () => {
    const lease = (await leases.acquire('asserted', { atMostForMs: 200 }))!;
    await leases.assertToken(lease.name, lease.token);
    await untilExpired('asserted');
    const takeover = leases.acquire('asserted', { atMostForMs: 60_000 });
    expect(await waitsOnLock(takeover)).toBe(false);
    expect((await takeover)?.token).toBe(lease.token + 1);
  });
});
