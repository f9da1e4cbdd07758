import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Controller, Get, Injectable, Param } from '@nestjs/common';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { InvalidOptionError, LockTimeoutError, SingleFlight, SingleFlightService, ValueNotSerializableError } from '../../lib/index.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { spawnWorker } from '../support/processes.js';
import { startWorkers } from '../support/start-line.js';
import type { FlightInput } from './single-flight.worker.js';
import { eventually } from '../support/gate.js';
import { useTestApp } from '../support/test-app.js';

const WORKER = 'test/single-flight/single-flight.worker.ts';
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Injectable()
class Reports {
  runs = 0;

  @SingleFlight({ ttlMs: 60_000 })
  async daily(day: string): Promise<{ day: string; run: number }> {
    this.runs++;
    await sleep(50);
    return { day, run: this.runs };
  }
}

@Controller('stats')
class StatsController {
  static runs = 0;

  @Get(':scope')
  @SingleFlight({ ttlMs: 60_000, key: (scope: string) => ['stats', scope] })
  async stats(@Param('scope') scope: string) {
    StatsController.runs++;
    await sleep(50);
    return { scope, total: 42 };
  }
}

describe('SingleFlightService and @SingleFlight()', () => {
  const testApp = useTestApp({ providers: [Reports], controllers: [StatsController], http: true, txlock: { singleFlight: { autoCreate: true } }, poolSize: 8 });
  let flights: SingleFlightService;
  let dataSource: DataSource;
  const computations = async (key: string) =>
    (await dataSource.query('SELECT count(*)::int AS n FROM computations WHERE key = $1', [key]))[0].n as number;

  beforeAll(async () => {
    flights = testApp.get(SingleFlightService);
    dataSource = testApp.dataSource;
    await dataSource.query('CREATE TABLE computations (id serial PRIMARY KEY, key text NOT NULL, pid int NOT NULL, at timestamptz DEFAULT clock_timestamp())');
  });
  beforeEach(() => dataSource.query('TRUNCATE computations'));

  it('computes once for 4 processes × 25 concurrent callers, and all 100 get the same value; once more after expiry', async () => {
    const input: FlightInput = { key: 'report', callers: 25, ttlMs: 2_000, computeMs: 200 };
    const burst = async () => {
      const workers = Array.from({ length: 4 }, (_, i) => spawnWorker(WORKER, testApp.db.url, input, i));
      await startWorkers(dataSource, workers);
      return ((await Promise.all(workers.map((w) => w.result))) as string[][]).flat();
    };
    const values = await burst();
    expect(values).toHaveLength(100);
    expect(new Set(values).size).toBe(1);
    expect(await computations('report')).toBe(1);

    // Wait (on the database clock) until the stored value has expired, then ask again.
    await eventually(async () => {
      const [{ live }] = await dataSource.query(`SELECT count(*)::int AS live FROM txlock_single_flight WHERE expires_at > clock_timestamp()`);
      return live === 0;
    });
    expect(new Set(await burst()).size).toBe(1);
    expect(await computations('report')).toBe(2);
  });

  it('shares one promise between concurrent callers in a process', async () => {
    let runs = 0;
    const results = valuesOf(
      await concurrently(30, () =>
        flights.run('in-process', async () => {
          runs++;
          await sleep(50);
          return { runs };
        }, { ttlMs: 60_000 }),
      ),
    );
    expect(runs).toBe(1);
    expect(results.every((r) => r.runs === 1)).toBe(true);
  });

  it('never stores an error: every waiter sees it, and the next caller computes again', async () => {
    let runs = 0;
    const failing = async () => {
      runs++;
      await sleep(30);
      throw new Error('upstream down');
    };
    const outcomes = await concurrently(10, () => flights.run('flaky', failing, { ttlMs: 60_000 }));
    expect(outcomes.every((o) => !o.ok && (o.error as Error).message === 'upstream down')).toBe(true);
    expect(runs).toBe(1);
    await expect(flights.run('flaky', async () => 'recovered', { ttlMs: 60_000 })).resolves.toBe('recovered');
    expect(runs).toBe(1);
    expect(await flights.run('flaky', failing, { ttlMs: 60_000 })).toBe('recovered');
  });

  it('computes different keys in parallel', async () => {
    const track = (key: string) => async () => {
      await dataSource.query('INSERT INTO computations (key, pid) VALUES ($1, 0)', [`${key}:start`]);
      await sleep(150);
      await dataSource.query('INSERT INTO computations (key, pid) VALUES ($1, 0)', [`${key}:end`]);
      return key;
    };
    await Promise.all([flights.run('parallel-a', track('a'), { ttlMs: 60_000 }), flights.run('parallel-b', track('b'), { ttlMs: 60_000 })]);
    const [{ overlapped }] = await dataSource.query(`
      SELECT (SELECT at FROM computations WHERE key = 'a:start') < (SELECT at FROM computations WHERE key = 'b:end')
         AND (SELECT at FROM computations WHERE key = 'b:start') < (SELECT at FROM computations WHERE key = 'a:end') AS overlapped`);
    expect(overlapped).toBe(true);
  });

  it('gives a waiter whose timeoutMs runs out a LockTimeoutError, for that waiter only', async () => {
    const slow = async () => {
      await sleep(300);
      return 'slow value';
    };
    const patient = flights.run('slow', slow, { ttlMs: 60_000 });
    const hasty = flights.run('slow', slow, { ttlMs: 60_000, timeoutMs: 50 });
    await expect(hasty).rejects.toBeInstanceOf(LockTimeoutError);
    await expect(patient).resolves.toBe('slow value');
  });

  it('refuses values JSON cannot carry, and bad options', async () => {
    await expect(flights.run('bigint', async () => 10n, { ttlMs: 1_000 })).rejects.toBeInstanceOf(ValueNotSerializableError);
    await expect(flights.run('nothing', async () => undefined, { ttlMs: 1_000 })).rejects.toBeInstanceOf(ValueNotSerializableError);
    expect(() => flights.run('', async () => 1, { ttlMs: 1_000 })).toThrow(InvalidOptionError);
    expect(() => SingleFlight({ ttlMs: 0 })).toThrow(InvalidOptionError);
  });

  it('works as a decorator on a provider method (default key from the arguments) and on a controller handler', async () => {
    const reports = testApp.get(Reports);
    const results = await Promise.all([reports.daily('mon'), reports.daily('mon'), reports.daily('tue')]);
    expect(reports.runs).toBe(2);
    expect(results[0]).toEqual(results[1]);

    const server = testApp.app.getHttpServer();
    const responses = await Promise.all(Array.from({ length: 20 }, () => request(server).get('/stats/global')));
    expect(responses.every((r) => r.status === 200 && r.body.total === 42)).toBe(true);
    expect(StatsController.runs).toBe(1);
  });

  it('lets another process compute when the computing process is SIGKILLed while holding the lock', async () => {
    const victim = spawnWorker(WORKER, testApp.db.url, { key: 'orphan', callers: 1, ttlMs: 60_000, computeMs: 0, hang: true } satisfies FlightInput);
    victim.result.catch(() => undefined);
    await startWorkers(dataSource, [victim]);
    while (!victim.stdout().includes('computing')) await sleep(20);
    victim.child.kill('SIGKILL');
    const value = await flights.run('orphan', async () => 'computed by the survivor', { ttlMs: 60_000 });
    expect(value).toBe('computed by the survivor');
    expect(await computations('orphan')).toBe(1); // the victim's run was recorded; the survivor's compute did not insert
  });
});
