import { describe, it, expect, beforeAll } from '@jest/globals';
import { CounterService, InvalidCounterKeyError, InvalidOptionError, TxLockCounter } from '../../lib/index.js';
import { useTestApp } from '../support/test-app.js';

// The bound is MAX_DURATION_MS (lib/common/durations.ts), spelled out so this file also runs against older code.
const HUNDRED_YEARS_MS = 3_155_760_000_000;
const LONE_SURROGATES = ['\uD800', '\uDBFF', 'a\uDC00', '\uDC00\uD800', 'ok\uD83D'];

describe('counter keys and windows that PostgreSQL or a JS Date cannot hold exactly', () => {
  const testApp = useTestApp({ entities: [TxLockCounter] });
  let counters: CounterService;
  const rows = async () => (await testApp.dataSource.query('SELECT count(*)::int AS n FROM txlock_counters'))[0].n as number;

  beforeAll(() => {
    counters = testApp.get(CounterService);
  });

  it.each(LONE_SURROGATES)('refuses the key %j (a lone surrogate) in every call, and stores nothing', async (key) => {
    const calls: (() => Promise<unknown>)[] = [
      () => counters.set(key, 5),
      () => counters.increment(key),
      () => counters.decrement(key),
      () => counters.tryIncrement(key, 1, { max: 10 }),
      () => counters.get(key),
      () => counters.getMany(['fine', key]),
      () => counters.delete(key),
    ];
    for (const call of calls) {
      const error = await call().then(() => undefined, (e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidCounterKeyError);
      expect((error as Error).message).toMatch(/well-formed UTF-16/);
    }
    expect(await rows()).toBe(0);
  });

  it('never lets two lone-surrogate keys become one counter stored as U+FFFD (nor getMany disagree with get)', async () => {
    const outcome = (call: () => Promise<unknown>) => call().then((value) => value, (e: Error) => e.constructor.name);
    expect({
      setD800To5: await outcome(() => counters.set('\uD800', 5)),
      getDBFF: await outcome(() => counters.get('\uDBFF')),
      getManyDBFF: await outcome(() => counters.getMany(['\uDBFF'])),
      getFFFD: await outcome(() => counters.get('\uFFFD')),
    }).toEqual({
      setD800To5: InvalidCounterKeyError.name,
      getDBFF: InvalidCounterKeyError.name,
      getManyDBFF: InvalidCounterKeyError.name,
      getFFFD: 0,
    });
  });

  it('keeps keys with surrogate pairs apart exactly, and getMany agrees with get', async () => {
    await counters.set('\u{1F600}', 1); // 😀 and 😁: pairs that differ only in their low surrogate
    await counters.set('\u{1F601}', 2);
    expect([await counters.get('\u{1F600}'), await counters.get('\u{1F601}')]).toEqual([1, 2]);
    expect(await counters.getMany(['\u{1F600}', '\u{1F601}'])).toEqual(new Map([['\u{1F600}', 1], ['\u{1F601}', 2]]));
    await testApp.dataSource.query('TRUNCATE txlock_counters');
  });

  it('bounds windowMs at 100 years (MAX_DURATION_MS), so resetsAt is always a valid Date', async () => {
    for (const windowMs of [Number.MAX_SAFE_INTEGER, HUNDRED_YEARS_MS + 1]) {
      const outcome = await counters.tryIncrement('window', 1, { max: 5, windowMs }).then(
        (result) => ({ resetsAt: String(result.resetsAt) }),
        (error: Error) => ({ refused: error instanceof InvalidOptionError, namesBound: /MAX_DURATION_MS/.test(error.message) }),
      );
      expect(outcome).toEqual({ refused: true, namesBound: true });
    }
    expect(await rows()).toBe(0);

    const longest = await counters.tryIncrement('window', 1, { max: 5, windowMs: HUNDRED_YEARS_MS });
    expect(longest.applied).toBe(true);
    const [{ now }] = await testApp.dataSource.query('SELECT statement_timestamp() AS now');
    expect(longest.resetsAt!.getTime() - (now as Date).getTime()).toBeGreaterThan(HUNDRED_YEARS_MS - 60_000);
    expect(await counters.increment('window', 1, { windowMs: HUNDRED_YEARS_MS })).toBe(2);
  });
});
