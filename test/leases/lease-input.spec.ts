import { beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidOptionError, LeaseService, ScheduledLock, type Lease } from '../../lib/index.js';
import { useTestApp } from '../support/test-app.js';

// The bounds are MAX_DURATION_MS and MAX_TIMER_MS (lib/common/durations.ts), spelled out so this file also
// runs against older code.
const HUNDRED_YEARS_MS = 3_155_760_000_000;
const MAX_TIMER_MS = 2_147_483_647;

/** What a call gave: its value through `shape`, or { refused, mentions } for InvalidOptionError, else the error's class. */
async function outcome<T>(call: () => Promise<T> | T, mentions: RegExp, shape: (value: T) => unknown = (value) => value): Promise<unknown> {
  try {
    return shape(await call());
  } catch (error) {
    if (error instanceof InvalidOptionError) return { refused: true, mentions: mentions.test(error.message) };
    return (error as Error).constructor.name;
  }
}
const refused = { refused: true, mentions: true };

describe('lease names and durations that PostgreSQL, a JS Date or a Node timer cannot hold', () => {
  const testApp = useTestApp({ txlock: { leases: { autoCreate: true } } });
  let leases: LeaseService;
  const rows = async (name?: string) =>
    (await testApp.dataSource.query('SELECT count(*)::int AS n FROM txlock_leases WHERE $1::text IS NULL OR name = $1', [name ?? null]))[0].n as number;

  beforeAll(() => {
    leases = testApp.get(LeaseService);
  });

  it('refuses lone surrogates in lease names: "\\uD800" and "\\uDBFF" would both be stored as U+FFFD, one lease', async () => {
    const lease = { name: '\uD800', token: 1 };
    const stale: Lease = { ...lease, holder: 'h', lockedAt: new Date(), lockUntil: new Date(), atLeastForMs: 0, signal: new AbortController().signal };
    expect({
      acquireD800: await outcome(() => leases.acquire('\uD800', { atMostForMs: 60_000 }), /well-formed/, (l) => l && { token: l.token }),
      acquireDBFF: await outcome(() => leases.acquire('\uDBFF', { atMostForMs: 60_000 }), /well-formed/, (l) => l && { token: l.token }),
      run: await outcome(() => leases.run('x\uDC00', () => 'ran', { atMostForMs: 60_000 }), /well-formed/),
      assertToken: await outcome(() => leases.assertToken('\uD800', 1), /well-formed/),
      fence: await outcome(() => leases.fence(lease, 1), /well-formed/, () => 'a condition'),
      extend: await outcome(() => leases.extend(stale, 1_000), /well-formed/, () => 'extended'),
      scheduledLock: await outcome(() => ScheduledLock('\uDBFF', { atMostForMs: 1_000 }), /well-formed/, () => 'a decorator'),
    }).toEqual({ acquireD800: refused, acquireDBFF: refused, run: refused, assertToken: refused, fence: refused, extend: refused, scheduledLock: refused });
    expect(await rows()).toBe(0);
  });

  it('refuses NUL in lease names with InvalidOptionError, as counter and lock keys do (PostgreSQL text cannot hold it)', async () => {
    expect({
      acquire: await outcome(() => leases.acquire('a\u0000b', { atMostForMs: 60_000 }), /NUL/),
      run: await outcome(() => leases.run('a\u0000b', () => 'ran', { atMostForMs: 60_000 }), /NUL/),
      assertToken: await outcome(() => leases.assertToken('a\u0000b', 1), /NUL/),
      scheduledLock: await outcome(() => ScheduledLock('a\u0000b', { atMostForMs: 1_000 }), /NUL/, () => 'a decorator'),
    }).toEqual({ acquire: refused, run: refused, assertToken: refused, scheduledLock: refused });
    expect(await rows()).toBe(0);
  });

  it('bounds atMostForMs and extend() at 100 years (MAX_DURATION_MS), so lockUntil is always a valid Date', async () => {
    const until = (lease: { lockUntil: Date } | null) => (lease ? String(lease.lockUntil) : lease);
    expect({
      acquireMaxSafe: await outcome(() => leases.acquire('far', { atMostForMs: Number.MAX_SAFE_INTEGER }), /MAX_DURATION_MS/, until),
      acquireJustOver: await outcome(() => leases.acquire('far', { atMostForMs: HUNDRED_YEARS_MS + 1 }), /MAX_DURATION_MS/, until),
      scheduledLock: await outcome(() => ScheduledLock('far', { atMostForMs: Number.MAX_SAFE_INTEGER }), /MAX_DURATION_MS/, () => 'a decorator'),
    }).toEqual({ acquireMaxSafe: refused, acquireJustOver: refused, scheduledLock: refused });
    expect(await rows()).toBe(0);

    const lease = (await leases.acquire('far', { atMostForMs: HUNDRED_YEARS_MS }))!;
    expect(lease.lockUntil.getTime() - lease.lockedAt.getTime()).toBe(HUNDRED_YEARS_MS);
    expect(await outcome(() => leases.extend(lease, Number.MAX_SAFE_INTEGER), /MAX_DURATION_MS/, (l) => String(l.lockUntil))).toEqual(refused);
    const before = lease.lockUntil.getTime();
    await leases.extend(lease, HUNDRED_YEARS_MS);
    expect(lease.lockUntil.getTime()).toBeGreaterThanOrEqual(before);
  });

  it('bounds renewEveryMs at 2^31-1 ms (MAX_TIMER_MS): Node would fire a longer timer after 1 ms', async () => {
    let extends_ = 0;
    const counting = Object.create(leases, { extend: { value: (...args: Parameters<LeaseService['extend']>) => (extends_++, leases.extend(...args)) } }) as LeaseService;
    const wait = () => new Promise((resolve) => setTimeout(resolve, 100));
    // atMostForMs above both, so that only the timer bound is in play (renewEveryMs must also stay below it).
    const atMostForMs = MAX_TIMER_MS + 2;
    expect(await outcome(() => counting.run('renewed', wait, { atMostForMs, renewEveryMs: MAX_TIMER_MS + 1 }), /MAX_TIMER_MS/, () => ({ ran: true, extends: extends_ }))).toEqual(refused);
    expect(await rows('renewed')).toBe(0);
    // The longest timer Node keeps: no renewal fires during a 100 ms job.
    expect(await counting.run('renewed', wait, { atMostForMs, renewEveryMs: MAX_TIMER_MS })).toEqual({ ran: true, value: undefined });
    expect(extends_).toBe(0);
  });

  it('refuses renewEveryMs at or above atMostForMs, at the call and when @ScheduledLock is applied: the lease would lapse between renewals', async () => {
    let ran = 0;
    const job = () => ran++;
    expect({
      longer: await outcome(() => leases.run('renewed-late', job, { atMostForMs: 1_000, renewEveryMs: 5_000 }), /renewEveryMs.*less than atMostForMs \(1000\)/),
      equal: await outcome(() => leases.run('renewed-late', job, { atMostForMs: 1_000, renewEveryMs: 1_000 }), /less than atMostForMs/),
      scheduledLock: await outcome(() => ScheduledLock('renewed-late', { atMostForMs: 1_000, renewEveryMs: 1_500 } as never), /less than atMostForMs/, () => 'a decorator'),
    }).toEqual({ longer: refused, equal: refused, scheduledLock: refused });
    expect(ran).toBe(0);
    expect(await rows('renewed-late')).toBe(0);
    expect(await leases.run('renewed-late', job, { atMostForMs: 1_000, renewEveryMs: 999 })).toEqual({ ran: true, value: 0 });
  });

  it('refuses a holderId that PostgreSQL text cannot hold exactly', async () => {
    const host = (testApp.get(LeaseService) as unknown as { txHost: unknown }).txHost;
    for (const holderId of ['', 'a\u0000b', 'b\uD800']) {
      expect(await outcome(() => new LeaseService(host as never, { leases: { holderId } }), /holderId/, () => 'constructed')).toEqual(refused);
    }
  });
});
