import { beforeEach, describe, expect, it } from '@jest/globals';
import {
  AdvisoryLock,
  advisoryLockKey,
  CounterService,
  InvalidOptionError,
  LeaseService,
  LockService,
  ScheduledLock,
  SingleFlight,
  SingleFlightService,
  TableLock,
  Transactional,
  TransactionHost,
} from '../../lib/index.js';
import { useTestApp } from '../support/test-app.js';

// Every option that takes a number, given a bigint: InvalidOptionError naming the value as `2n`, before anything
// runs — never `TypeError: Do not know how to serialize a BigInt` from building the message, never a statement.
const big = 2n as never;

/** How `call` failed (thrown or rejected): InvalidOptionError or not, its class, whether it says `2n`. */
async function refusal(call: () => unknown): Promise<unknown> {
  try {
    await call();
  } catch (error) {
    return { invalidOption: error instanceof InvalidOptionError, name: (error as Error).name, mentions2n: /\b2n\b/.test((error as Error).message) };
  }
  return 'no error';
}

/** Runs every labelled call and expects each to be refused (one diff shows every call that was not). */
async function expectAllRefused(calls: Record<string, () => unknown>, name: (label: string) => string = () => 'InvalidOptionError'): Promise<void> {
  const seen: Record<string, unknown> = {};
  const expected: Record<string, unknown> = {};
  for (const [label, call] of Object.entries(calls)) {
    seen[label] = await refusal(call);
    expected[label] = { invalidOption: true, name: name(label), mentions2n: true };
  }
  expect(seen).toEqual(expected);
}

describe('bigint values for numeric options', () => {
  const testApp = useTestApp({ txlock: { leases: { autoCreate: true }, singleFlight: { autoCreate: true }, counters: { autoCreate: true } } });
  let ran = 0;
  const work = async () => void ran++;

  beforeEach(() => {
    ran = 0;
  });

  it('counters: windowMs, and a bigint key', async () => {
    const counters = testApp.get(CounterService);
    await expectAllRefused(
      {
        'increment windowMs': () => counters.increment('k', 1, { windowMs: big }),
        'decrement windowMs': () => counters.decrement('k', 1, { windowMs: big }),
        'tryIncrement windowMs': () => counters.tryIncrement('k', 1, { max: 5, windowMs: big }),
        'tryDecrement windowMs': () => counters.tryDecrement('k', 1, { min: 0, windowMs: big }),
        'get key': () => counters.get(big),
        'increment key': () => counters.increment(big),
      },
      (label) => (label.endsWith('key') ? 'InvalidCounterKeyError' : 'InvalidOptionError'),
    );
    expect((await testApp.dataSource.query('SELECT count(*)::int AS n FROM txlock_counters'))[0].n).toBe(0);
  });

  it('leases: name, atMostForMs, atLeastForMs, renewEveryMs, extend ms, tokens, fence placeholders, @ScheduledLock()', async () => {
    const leases = testApp.get(LeaseService);
    const lease = (await leases.acquire('held', { atMostForMs: 60_000 }))!;
    await expectAllRefused({
      'acquire name': () => leases.acquire(big, { atMostForMs: 1_000 }),
      'acquire atMostForMs': () => leases.acquire('job', { atMostForMs: big }),
      'acquire atLeastForMs': () => leases.acquire('job', { atMostForMs: 1_000, atLeastForMs: big }),
      'run renewEveryMs': () => leases.run('job', work, { atMostForMs: 1_000, renewEveryMs: big }),
      '@ScheduledLock atMostForMs': () => ScheduledLock('job', { atMostForMs: big }),
      '@ScheduledLock atLeastForMs': () => ScheduledLock('job', { atMostForMs: 1_000, atLeastForMs: big }),
      'assertToken token': () => leases.assertToken('held', big),
      'fence token': () => leases.fence({ name: 'held', token: big }, 1),
      'fence firstParam': () => leases.fence(lease, big),
      'extend ms': () => leases.extend(lease, big),
      'release token': () => leases.release({ ...lease, token: big }),
    });
    expect(await leases.holders()).toEqual([expect.objectContaining({ name: 'held', token: 1 })]);
    expect(ran).toBe(0);
  });

  it('single flight: key, ttlMs, timeoutMs, namespace, and the same in @SingleFlight()', async () => {
    const flights = testApp.get(SingleFlightService);
    await expectAllRefused({
      'run key': () => flights.run(big, work, { ttlMs: 1_000 }),
      'run ttlMs': () => flights.run('k', work, { ttlMs: big }),
      'run timeoutMs': () => flights.run('k', work, { ttlMs: 1_000, timeoutMs: big }),
      'run namespace': () => flights.run('k', work, { ttlMs: 1_000, namespace: big }),
      '@SingleFlight ttlMs': () => SingleFlight({ ttlMs: big }),
      '@SingleFlight timeoutMs': () => SingleFlight({ ttlMs: 1_000, timeoutMs: big }),
      '@SingleFlight namespace': () => SingleFlight({ ttlMs: 1_000, namespace: big }),
    });
    expect(ran).toBe(0);
  });

  it('locks: namespace and timeoutMs of LockService, @AdvisoryLock(), @TableLock() and advisoryLockKey()', async () => {
    const locks = testApp.get(LockService);
    await expectAllRefused({
      'withAdvisoryLock namespace': () => locks.withAdvisoryLock('k', work, { namespace: big }),
      'withAdvisoryLock timeoutMs': () => locks.withAdvisoryLock('k', work, { timeoutMs: big }),
      'tryAdvisoryLock namespace': () => locks.tryAdvisoryLock('k', work, { namespace: big }),
      'withAdvisoryLocks timeoutMs': () => locks.withAdvisoryLocks(['a', 'b'], work, { timeoutMs: big }),
      'holders namespace': () => locks.holders('k', { namespace: big }),
      '@AdvisoryLock namespace': () => AdvisoryLock({ namespace: big }),
      '@AdvisoryLock timeoutMs': () => AdvisoryLock({ timeoutMs: big }),
      '@TableLock timeoutMs': () => TableLock('EXCLUSIVE', ['t'], { timeoutMs: big }),
      'advisoryLockKey namespace': () => advisoryLockKey('k', big),
    });
    expect(ran).toBe(0);
  });

  it('transactions: timeoutMs and retries of TransactionHost.run() and @Transactional()', async () => {
    const tx = testApp.get(TransactionHost);
    await expectAllRefused({
      'run timeoutMs': () => tx.run({ timeoutMs: big }, work),
      'run retries': () => tx.run({ retries: big }, work),
      '@Transactional timeoutMs': () => Transactional({ timeoutMs: big }),
      '@Transactional retries': () => Transactional({ retries: big }),
    });
    expect(ran).toBe(0);
  });
});
