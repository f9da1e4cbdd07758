import { describe, it, expect, beforeAll } from '@jest/globals';
import { AsyncLocalStorage } from 'node:async_hooks';
import { DataSource } from 'typeorm';
import { CounterService, TransactionHost, TxLockCounter } from '../../lib/index.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { runWorkers } from '../support/processes.js';
import { RoundTripLog } from '../support/round-trips.js';
import type { CounterWorkerInput } from './counter.worker.js';
import { useTestApp } from '../support/test-app.js';

const WORKER = 'test/counters/counter.worker.ts';
const PROCESSES = 4;
const CALLERS = 50;
const PER_CALLER = 50;
const TOTAL = PROCESSES * CALLERS * PER_CALLER; // 10,000

// Connections: this file's app 10 + 4 processes x 5 = 30.
describe('exact counts under real concurrency', () => {
  const testApp = useTestApp({ entities: [TxLockCounter], txlock: { counters: { coalesce: true } } });
  let counters: CounterService;

  beforeAll(async () => {
    counters = testApp.get(CounterService);
  });

  const count = async (key: string, mode: CounterWorkerInput['mode'], coalesce: boolean) => {
    await counters.set(key, 0);
    const input: CounterWorkerInput = { key, callers: CALLERS, perCaller: PER_CALLER, mode, coalesce };
    const values = (await runWorkers<number[]>(WORKER, testApp.db.url, PROCESSES, input)).flat();
    return { values, final: Number(await counters.get(key)), distinct: new Set(values).size };
  };

  for (const coalesce of [false, true]) {
    it(`${TOTAL} increments from ${PROCESSES} processes x ${CALLERS} callers (coalesce ${coalesce}): exactly ${TOTAL}, values exactly 1..${TOTAL}`, async () => {
      const { values, final } = await count(`hits-${coalesce}`, 'ours', coalesce);
      expect(final).toBe(TOTAL);
      expect(values).toHaveLength(TOTAL);
      expect(values.sort((a, b) => a - b)).toEqual(Array.from({ length: TOTAL }, (_, i) => i + 1));
      console.log(`[counters] ours (coalesce ${coalesce}): final ${final}, distinct values ${new Set(values).size} of ${TOTAL}`);
    });
  }

  it('control: the naive read-then-write increment (a cache incr) loses updates in the same test', async () => {
    const { values, final, distinct } = await count('hits-naive', 'naive', false);
    console.log(`[counters] naive read+write: final ${final} of ${TOTAL}, distinct values ${distinct}`);
    expect(values).toHaveLength(TOTAL);
    expect(final).toBeLessThan(TOTAL);
    expect(distinct).toBeLessThan(TOTAL);
  });

  it('coalesces one process\'s concurrent callers into fewer statements, each still getting its own value', async () => {
    await counters.set('hot', 0);
    const log = RoundTripLog.attach(testApp.dataSource);
    const values = valuesOf(await concurrently(200, () => counters.increment('hot')));
    log.stop();
    expect(values.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(await counters.get('hot')).toBe(200);
    expect(log.count).toBeLessThan(20);
    console.log(`[counters] 200 concurrent increments in one process took ${log.count} statements`);
  });

  it('runs coalesced statements outside the callers\' AsyncLocalStorage context (no request state kept alive)', async () => {
    const requestContext = new AsyncLocalStorage<{ request: number }>();
    const dataSource = testApp.dataSource;
    const seen: unknown[] = [];
    const logQuery = dataSource.logger.logQuery.bind(dataSource.logger);
    dataSource.logger.logQuery = (query, parameters, runner) => {
      if (query.includes('txlock_counters')) seen.push(requestContext.getStore());
      return logQuery(query, parameters, runner);
    };
    try {
      const values = await Promise.all(Array.from({ length: 20 }, (_, request) => requestContext.run({ request }, () => counters.increment('als'))));
      expect(values.map(Number).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    } finally {
      dataSource.logger.logQuery = logQuery;
    }
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((store) => store === undefined)).toBe(true);
  });

  it('never coalesces callers inside a transaction with others, and a coalesced batch keeps per-caller values for mixed amounts', async () => {
    await counters.set('mixed', 0);
    const tx = testApp.get(TransactionHost);
    const results = valuesOf(
      await concurrently(60, (i) =>
        i % 3 === 0
          ? tx.run(async () => {
              const value = await counters.increment('mixed', 2);
              if (i % 2 === 0) throw new Error('roll back');
              return value;
            }).catch(() => 'rolled back')
          : counters.decrement('mixed', 1).then(() => counters.increment('mixed', 3)),
      ),
    );
    const committedTx = Array.from({ length: 60 }, (_, i) => i).filter((i) => i % 3 === 0 && i % 2 !== 0).length;
    expect(results.filter((r) => r === 'rolled back')).toHaveLength(20 - committedTx);
    expect(await counters.get('mixed')).toBe(committedTx * 2 + 40 * 2);
  });
});
