import { describe, it, expect, beforeAll } from '@jest/globals';
import { CounterService, InvalidCounterKeyError, InvalidOptionError, TransactionHost, TxLockCounter } from '../../lib/index.js';
import { MAX_COUNTER_SHARDS } from '../../lib/counters/counter-shards.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { runWorkers } from '../support/processes.js';
import { RoundTripLog } from '../support/round-trips.js';
import { useTestApp } from '../support/test-app.js';
import type { CounterWorkerInput } from './counter.worker.js';

const WORKER = 'test/counters/counter.worker.ts';
const PROCESSES = 4;
const CALLERS = 25;
const PER_CALLER = 40;
const TOTAL = PROCESSES * CALLERS * PER_CALLER; // 4,000

// Connections: this file's app 10 + 4 processes x 5 = 30.
describe('sharded counters (increment with { shards })', () => {
  const testApp = useTestApp({ entities: [TxLockCounter], txlock: { counters: { coalesce: true } } });
  let counters: CounterService;

  beforeAll(() => {
    counters = testApp.get(CounterService);
  });

  /** The rows holding `key`'s count: the key itself and its shard rows, read straight from the table. */
  const rowsOf = async (key: string): Promise<Map<string, number>> => {
    const rows = (await testApp.dataSource.query(
      `SELECT "key", "value"::int AS value FROM txlock_counters WHERE "key" = $1 OR left("key", length($1) + 1) = $1 || chr(31)`,
      [key],
    )) as { key: string; value: number }[];
    return new Map(rows.map((row) => [row.key, row.value]));
  };

  /**
   * Each row counts on its own, one statement at a time: the values handed out are then exactly 1..v for
   * each row's final value v, no value missing or repeated within a row (the multiset of all of them).
   */
  const expectEachRowGapFree = async (key: string, values: number[]) => {
    const expected = [...(await rowsOf(key)).values()].flatMap((last) => Array.from({ length: last }, (_, i) => i + 1));
    expect([...values].sort((a, b) => a - b)).toEqual(expected.sort((a, b) => a - b));
  };

  for (const coalesce of [true, false]) {
    it(`${TOTAL} increments from ${PROCESSES} processes x ${CALLERS} callers over 4 shards (coalesce ${coalesce}): get() is exactly ${TOTAL}, each shard gap-free`, async () => {
      const key = `views-${coalesce}`;
      const input: CounterWorkerInput = { key, callers: CALLERS, perCaller: PER_CALLER, mode: 'ours', coalesce, shards: 4 };
      const values = (await runWorkers<number[]>(WORKER, testApp.db.url, PROCESSES, input)).flat();
      const rows = await rowsOf(key);
      console.log(`[counters] sharded, coalesce ${coalesce}: total ${await counters.get(key)}, rows ${JSON.stringify([...rows.values()])}`);
      expect(values).toHaveLength(TOTAL);
      expect(await counters.get(key)).toBe(TOTAL);
      expect((await counters.getMany([key, 'other'])).get(key)).toBe(TOTAL);
      expect([...rows.values()].reduce((a, b) => a + b, 0)).toBe(TOTAL);
      // Hundreds of statements, each to a row drawn at random: all of them landing on one row is (1/4)^hundreds.
      expect(rows.size).toBeGreaterThan(1);
      expect(rows.size).toBeLessThanOrEqual(4);
      await expectEachRowGapFree(key, values);
    });
  }

  it('still coalesces one process\'s concurrent callers per key, each statement to one shard', async () => {
    const log = RoundTripLog.attach(testApp.dataSource);
    const values = valuesOf(await concurrently(300, () => counters.increment('coalesced', 1, { shards: 8 }))).map(Number);
    log.stop();
    expect(log.count).toBeLessThan(20);
    expect(await counters.get('coalesced')).toBe(300);
    await expectEachRowGapFree('coalesced', values);
  });

  it('shard 0 is the key itself: a counter that starts being sharded keeps its count, and set/reset/delete act on every shard', async () => {
    await counters.set('switch', 100);
    for (let i = 0; i < 50; i++) await counters.increment('switch', 2, { shards: MAX_COUNTER_SHARDS });
    await counters.decrement('switch', 30, { shards: 3 });
    expect(await counters.get('switch')).toBe(170);
    expect(await counters.getMany(['switch', 'missing'])).toEqual(new Map([['switch', 170], ['missing', 0]]));
    expect((await rowsOf('switch')).size).toBeGreaterThan(1);

    await counters.set('switch', 7);
    expect(await rowsOf('switch')).toEqual(new Map([['switch', 7]]));
    await counters.increment('switch', 1, { shards: 4 });
    await counters.reset('switch');
    expect(await counters.get('switch')).toBe(0);
    await counters.increment('switch', 1, { shards: 4 });
    expect(await counters.delete('switch')).toBe(true);
    expect((await rowsOf('switch')).size).toBe(0);
    expect(await counters.delete('switch')).toBe(false);
  });

  it('inside a transaction, sharded increments (sequential or sibling calls) join it and roll back with it', async () => {
    const tx = testApp.get(TransactionHost);
    await expect(
      tx.run(async () => {
        for (let i = 0; i < 20; i++) await counters.increment('in-tx', 1, { shards: 4 });
        await Promise.all(Array.from({ length: 20 }, () => counters.increment('in-tx', 1, { shards: 4 })));
        expect(await counters.get('in-tx')).toBe(40);
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await counters.get('in-tx')).toBe(0);
    const committed = valuesOf(await concurrently(10, () => tx.run(() => counters.increment('in-tx', 1, { shards: 4 })))).map(Number);
    expect(await counters.get('in-tx')).toBe(10);
    await expectEachRowGapFree('in-tx', committed);
  });

  it('refuses what it cannot do exactly: shards with bounds or windows, shard counts out of range, keys naming a shard', async () => {
    const refusal = (call: () => Promise<unknown>) => call().then(() => 'applied', (error: unknown) => (error as Error).constructor.name);
    expect({
      boundedUp: await refusal(() => counters.tryIncrement('q', 1, { max: 5, shards: 2 } as { max: number })),
      boundedDown: await refusal(() => counters.tryDecrement('q', 1, { min: 0, shards: 2 } as { min: number })),
      windowed: await refusal(() => counters.increment('q', 1, { shards: 2, windowMs: 1_000 })),
      zero: await refusal(() => counters.increment('q', 1, { shards: 0 })),
      tooMany: await refusal(() => counters.increment('q', 1, { shards: MAX_COUNTER_SHARDS + 1 })),
      fraction: await refusal(() => counters.increment('q', 1, { shards: 1.5 })),
      text: await refusal(() => counters.increment('q', 1, { shards: '4' as unknown as number })),
      separatorInKey: await refusal(() => counters.increment('q\u001F1')),
      separatorInGet: await refusal(() => counters.get('q\u001F1')),
    }).toEqual({
      boundedUp: InvalidOptionError.name,
      boundedDown: InvalidOptionError.name,
      windowed: InvalidOptionError.name,
      zero: InvalidOptionError.name,
      tooMany: InvalidOptionError.name,
      fraction: InvalidOptionError.name,
      text: InvalidOptionError.name,
      separatorInKey: InvalidCounterKeyError.name,
      separatorInGet: InvalidCounterKeyError.name,
    });
    // shards: 1 is the plain counter, windows allowed.
    expect(await counters.increment('q', 1, { shards: 1, windowMs: 60_000 })).toBe(1);
    expect(await rowsOf('q')).toEqual(new Map([['q', 1]]));
  });
});
