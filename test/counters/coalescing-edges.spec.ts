import { describe, it, expect, beforeAll } from '@jest/globals';
import { CounterOverflowError, CounterService, TxLockCounter } from '../../lib/index.js';
import { RoundTripLog } from '../support/round-trips.js';
import { useTestApp } from '../support/test-app.js';

const INT8_MAX = 2n ** 63n - 1n;
const SAFE = Number.MAX_SAFE_INTEGER;
const BIG = { bigint: true } as const;

/** What each caller got, in call order: its value, or the class name of its error. */
async function settle(calls: Promise<unknown>[]): Promise<unknown[]> {
  const outcomes = await Promise.allSettled(calls);
  return outcomes.map((o) => (o.status === 'fulfilled' ? o.value : (o.reason as Error).constructor.name));
}

// Coalescing is deterministic here: the first call on a key goes alone at once, and every call made in the
// same tick after it waits for it and shares the next statement.
describe('coalesced counters at the edges of bigint', () => {
  const testApp = useTestApp({ entities: [TxLockCounter], txlock: { counters: { coalesce: true } } });
  let counters: CounterService;

  beforeAll(() => {
    counters = testApp.get(CounterService);
  });

  it('an increment that overflows fails alone: its batch-mates are applied, in order, with exact values', async () => {
    await counters.set('near', INT8_MAX - 9n);
    const outcomes = await settle([1, 1, 100, 1].map((by) => counters.increment('near', by, BIG)));
    expect(outcomes).toEqual([INT8_MAX - 8n, INT8_MAX - 7n, CounterOverflowError.name, INT8_MAX - 6n]);
    expect(await counters.get('near', BIG)).toBe(INT8_MAX - 6n);
  });

  it('150 concurrent increments 100 below the top: exactly the first 100 get the last 100 values, the other 50 overflow', async () => {
    await counters.set('top', INT8_MAX - 100n);
    const outcomes = await settle(Array.from({ length: 150 }, () => counters.increment('top', 1, BIG)));
    expect(outcomes.slice(0, 100)).toEqual(Array.from({ length: 100 }, (_, i) => INT8_MAX - 99n + BigInt(i)));
    expect(outcomes.slice(100)).toEqual(Array.from({ length: 50 }, () => CounterOverflowError.name));
    expect(await counters.get('top', BIG)).toBe(INT8_MAX);
  });

  it('never merges increments with decrements: each caller gets the value (or overflow) it would get alone', async () => {
    await counters.set('mixed', INT8_MAX - 10n);
    // One after another: +1 → MAX-9; +20 would pass MAX, so it overflows and changes nothing; -15 → MAX-24.
    const outcomes = await settle([counters.increment('mixed', 1, BIG), counters.increment('mixed', 20, BIG), counters.decrement('mixed', 15, BIG)]);
    expect(outcomes).toEqual([INT8_MAX - 9n, CounterOverflowError.name, INT8_MAX - 24n]);
    expect(await counters.get('mixed', BIG)).toBe(INT8_MAX - 24n);
  });

  it('number callers at the safe-integer edge: the batch is replayed one by one, only the callers past it fail, nothing lost', async () => {
    await counters.set('safe-edge', SAFE - 2);
    const outcomes = await settle(Array.from({ length: 5 }, () => counters.increment('safe-edge')));
    expect(outcomes).toEqual([SAFE - 1, SAFE, CounterOverflowError.name, CounterOverflowError.name, CounterOverflowError.name]);
    expect(await counters.get('safe-edge')).toBe(SAFE);
    // bigint callers of the same key never share a statement with number callers: each gets what it would alone.
    await counters.set('safe-edge', SAFE - 1);
    const mixed = await settle([counters.increment('safe-edge'), counters.increment('safe-edge', 1, BIG), counters.increment('safe-edge'), counters.increment('safe-edge', 1, BIG)]);
    expect(mixed).toEqual([SAFE, 2n ** 53n, CounterOverflowError.name, 2n ** 53n + 1n]);
  });

  it('still shares statements between same-sign callers around a decrement, values exact in arrival order', async () => {
    await counters.set('alternating', 0);
    const deltas = [5, 1, 1, -2, -2, 3, 3];
    const log = RoundTripLog.attach(testApp.dataSource);
    const outcomes = await settle(deltas.map((d) => (d > 0 ? counters.increment('alternating', d) : counters.decrement('alternating', -d))));
    log.stop();
    const expected = deltas.map((_, i) => deltas.slice(0, i + 1).reduce((a, b) => a + b, 0));
    expect(outcomes).toEqual(expected);
    expect(log.count).toBe(4); // [5] alone, then [1, 1], [-2, -2], [3, 3]
    expect(await counters.get('alternating')).toBe(9);
  });
});
