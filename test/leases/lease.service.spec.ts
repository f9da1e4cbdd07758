import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { DataSource } from 'typeorm';
import { InvalidOptionError, LeaseLostError, LeaseReleasedError, LeaseService, ScheduledLock } from '../../lib/index.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { runWorkers, spawnWorker } from '../support/processes.js';
import { startWorkers } from '../support/start-line.js';
import type { ReplicaInput } from './lease-replica.worker.js';
import { eventually, whenAborted } from '../support/gate.js';
import { useTestApp } from '../support/test-app.js';

const WORKER = 'test/leases/lease-replica.worker.ts';

describe('LeaseService', () => {
  const testApp = useTestApp({ txlock: { leases: { autoCreate: true } }, poolSize: 12 });
  let leases: LeaseService;
  let dataSource: DataSource;

  /** Resolves once the database clock has passed the lease's end: no wall-clock guess in the test. */
  const untilExpired = (name: string) =>
    eventually(async () => {
      const [{ expired }] = await dataSource.query(
        'SELECT coalesce(bool_and(lock_until <= clock_timestamp()), true) AS expired FROM txlock_leases WHERE name = $1',
        [name],
      );
      return expired as boolean;
    });

  beforeAll(async () => {
    leases = testApp.get(LeaseService);
    dataSource = testApp.dataSource;
    await dataSource.query('CREATE TABLE job_runs (id serial PRIMARY KEY, tick int NOT NULL, pid int NOT NULL)');
  });
  beforeEach(() => dataSource.query('TRUNCATE job_runs'));

  it('grants a free lease to exactly one of many concurrent callers', async () => {
    const outcomes = valuesOf(await concurrently(10, () => leases.acquire('exclusive', { atMostForMs: 60_000 })));
    expect(outcomes.filter((lease) => lease !== null)).toHaveLength(1);
    expect(await leases.holders()).toEqual([expect.objectContaining({ name: 'exclusive', holder: leases.holderId, token: 1 })]);
  });

  it('keeps a released lease until atLeastFor has passed, then hands it over with a greater token', async () => {
    const first = (await leases.acquire('at-least', { atMostForMs: 60_000, atLeastForMs: 300 }))!;
    await leases.release(first);
    expect(await leases.acquire('at-least', { atMostForMs: 60_000 })).toBeNull();
    await untilExpired('at-least');
    const second = await leases.acquire('at-least', { atMostForMs: 60_000 });
    expect(second?.token).toBe(first.token + 1);
  });

  it('frees a released lease at once when atLeastFor is 0', async () => {
    const first = (await leases.acquire('no-minimum', { atMostForMs: 60_000 }))!;
    await leases.release(first);
    expect((await leases.acquire('no-minimum', { atMostForMs: 60_000 }))?.token).toBe(first.token + 1);
  });

  it('refuses extend() of a lease it released, even while atLeastForMs keeps it taken: a released lease is not revived', async () => {
    const lease = (await leases.acquire('released', { atMostForMs: 60_000, atLeastForMs: 30_000 }))!;
    await leases.release(lease);
    const holder = async () => (await leases.holders()).find((h) => h.name === 'released');
    const held = await holder();
    await expect(leases.extend(lease, 60_000)).rejects.toThrow(LeaseReleasedError);
    // The row still ends where release() left it (lockedAt + atLeastForMs), and nobody else can take it before that.
    expect(await holder()).toEqual(held);
    expect(held!.lockUntil.getTime() - held!.lockedAt.getTime()).toBe(30_000);
    expect(await leases.acquire('released', { atMostForMs: 60_000 })).toBeNull();
  });

  it('is not re-entrant: leases belong to a holder id, not to a call chain, so a nested run() of the same name does not run', async () => {
    const outcome = await leases.run('outer', () => leases.run('outer', () => 'inner ran', { atMostForMs: 60_000 }), { atMostForMs: 60_000 });
    expect(outcome).toEqual({ ran: true, value: { ran: false } });
  });

  it('fences a holder that was paused past its lease: its token is stale, its guarded write is rejected, the new holder writes', async () => {
    await dataSource.query('CREATE TABLE report (id int PRIMARY KEY, body text)');
    await dataSource.query(`INSERT INTO report VALUES (1, 'initial')`);
    const write = async (lease: { name: string; token: number }, body: string) => {
      const fence = leases.fence(lease, 2);
      const [, affected] = await dataSource.query(`UPDATE report SET body = $1 WHERE id = 1 AND ${fence.condition}`, [body, ...fence.params]);
      return affected as number;
    };
    const paused = (await leases.acquire('report-writer', { atMostForMs: 200 }))!;
    await untilExpired('report-writer'); // the "pause": the holder's lease runs out
    const next = (await leases.acquire('report-writer', { atMostForMs: 60_000 }))!;
    expect(next.token).toBeGreaterThan(paused.token);

    expect(await write(paused, 'from the stale holder')).toBe(0);
    await expect(leases.assertToken('report-writer', paused.token)).rejects.toBeInstanceOf(LeaseLostError);
    await expect(leases.extend(paused, 1_000)).rejects.toBeInstanceOf(LeaseLostError);
    expect(await write(next, 'from the current holder')).toBe(1);
    await expect(leases.assertToken('report-writer', next.token)).resolves.toBeUndefined();
    expect(await dataSource.query('SELECT body FROM report')).toEqual([{ body: 'from the current holder' }]);
  });

  it('extends a held lease and aborts run()\'s signal when a renewal finds the lease lost', async () => {
    const lease = (await leases.acquire('extendable', { atMostForMs: 1_000 }))!;
    const before = lease.lockUntil.getTime();
    await leases.extend(lease, 60_000);
    expect(lease.lockUntil.getTime()).toBeGreaterThan(before);

    const outcome = await leases.run(
      'renewed',
      async (held) => {
        // Someone steals the lease (as an operator or a clock jump could); the next renewal notices.
        await dataSource.query(`UPDATE txlock_leases SET token = token + 100 WHERE name = 'renewed'`);
        return whenAborted(held.signal);
      },
      { atMostForMs: 5_000, renewEveryMs: 20 },
    );
    expect(outcome.ran && outcome.value).toBeInstanceOf(LeaseLostError);
  });

  it('binds hostile lease names instead of pasting them', async () => {
    const name = `x'); DROP TABLE job_runs; --"`;
    const lease = await leases.acquire(name, { atMostForMs: 1_000 });
    expect(lease?.name).toBe(name);
    expect(await dataSource.query('SELECT count(*)::int AS n FROM job_runs')).toEqual([{ n: 0 }]);
  });

  it('validates names and durations when the decorator is applied', () => {
    expect(() => ScheduledLock('', { atMostForMs: 1_000 })).toThrow(InvalidOptionError);
    expect(() => ScheduledLock('job', { atMostForMs: 0 })).toThrow(/atMostForMs/);
    expect(() => ScheduledLock('job', { atMostForMs: 100, atLeastForMs: 200 })).toThrow(/at most atMostForMs \(100\)/);
    expect(() => ScheduledLock('job', { atMostForMs: 1.5 })).toThrow(InvalidOptionError);
  });

  it('issues strictly increasing tokens over 1,000 acquisitions from 4 processes', async () => {
    const perProcess = await runWorkers<number[]>(WORKER, testApp.db.url, 4, { mode: 'tokens', acquisitions: 250 } satisfies ReplicaInput);
    for (const tokens of perProcess) {
      for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);
    }
    const all = perProcess.flat().sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 1_000 }, (_, i) => i + 1));
  });

  // Each replica fires up to 300 ms late within a tick; the lease stays taken 1.3 s after a run starts; ticks are 2.3 s
  // apart. On top of the 300 ms, a replica's timer may fire another second late (a loaded 2-core CI machine, where
  // 700 ms and 1.2 s once let a starved replica run a tick a second time) and the lease still covers every replica's
  // fire of that tick, and is free again before the next tick.
  const fireTicks = async (mode: ReplicaInput['mode']) => {
    await dataSource.query('TRUNCATE job_runs');
    const replicas = Array.from({ length: 4 }, (_, i) => spawnWorker(WORKER, testApp.db.url, { mode, ticks: 5, periodMs: 2_300, spreadMs: 300 } satisfies ReplicaInput, i));
    await startWorkers(dataSource, replicas, 200);
    await Promise.all(replicas.map((r) => r.result));
    return (await dataSource.query('SELECT tick, count(*)::int AS runs FROM job_runs GROUP BY tick ORDER BY tick')) as { tick: number; runs: number }[];
  };

  it('runs a @ScheduledLock job exactly once per tick across 4 replicas whose timers fire up to 300 ms apart', async () => {
    expect(await fireTicks('scheduled')).toEqual([0, 1, 2, 3, 4].map((tick) => ({ tick, runs: 1 })));
  });

  it('control: @AdvisoryLock({ onLocked: "skip" }) in the same setup runs the 10 ms job more than once per tick', async () => {
    const perTick = await fireTicks('advisory-skip');
    const total = perTick.reduce((sum, t) => sum + t.runs, 0);
    console.log(`[leases] 4 replicas × 5 ticks: @AdvisoryLock skip ran ${total} times (${perTick.map((t) => t.runs).join('/')}), @ScheduledLock 5`);
    expect(perTick).toHaveLength(5);
    expect(total).toBeGreaterThan(5);
  });

  it('lets no replica in before atMostFor when the holder is SIGKILLed, and one after it', async () => {
    const victim = spawnWorker(WORKER, testApp.db.url, { mode: 'hold' } satisfies ReplicaInput);
    victim.result.catch(() => undefined);
    while (!(await leases.holders()).some((h) => h.name === 'held-by-victim')) await new Promise((r) => setTimeout(r, 25));
    victim.child.kill('SIGKILL');
    await new Promise((resolve) => victim.child.once('close', resolve));

    const [{ alive }] = await dataSource.query(`SELECT lock_until > clock_timestamp() AS alive FROM txlock_leases WHERE name = 'held-by-victim'`);
    expect(alive).toBe(true);
    expect(await leases.acquire('held-by-victim', { atMostForMs: 60_000 })).toBeNull();
    await untilExpired('held-by-victim');
    expect(await leases.acquire('held-by-victim', { atMostForMs: 60_000 })).toEqual(expect.objectContaining({ token: 2 }));
  });
});
