import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it } from '@jest/globals';
import type { Attributes } from '@opentelemetry/api';
import type { DataPoint, Histogram } from '@opentelemetry/sdk-metrics';
import {
  AdvisoryLock,
  CounterService,
  InvalidOptionError,
  LeaseLostError,
  LeaseService,
  LockNotAcquiredError,
  LockService,
  LockTimeoutError,
  SingleFlightService,
  TransactionHost,
} from '../../lib/index.js';
import { eventually, gate, holding } from '../support/gate.js';
import { histogramCount, useTelemetry } from '../support/telemetry.js';
import { useTestApp } from '../support/test-app.js';

const matching = <T>(points: DataPoint<T>[], attributes: Attributes) =>
  points.filter((point) => Object.entries(attributes).every(([key, value]) => point.attributes[key] === value));

describe('OpenTelemetry spans and metrics (in-memory exporters)', () => {
  // Registered before the app boots: telemetry is switched on at bootstrap.
  const otel = useTelemetry();
  const testApp = useTestApp({ txlock: { autoCreate: true }, poolSize: 12 });
  let tx: TransactionHost;
  let locks: LockService;

  beforeAll(async () => {
    tx = testApp.get(TransactionHost);
    locks = testApp.get(LockService);
    await testApp.dataSource.query('CREATE TABLE otel_account (id int PRIMARY KEY, balance int NOT NULL)');
    await testApp.dataSource.query('INSERT INTO otel_account VALUES (1, 0)');
  });

  it('a transaction: a txlock.transaction span with the database conventions, its outcome, and the pool wait', async () => {
    otel.resetSpans();
    await tx.run(async () => tx.manager.query('SELECT 1'));
    await expect(tx.run({ isolation: 'REPEATABLE READ' }, async () => Promise.reject(new Error('no')))).rejects.toThrow('no');
    const spans = await otel.spans('txlock.transaction');
    expect(spans.map((span) => span.attributes['txlock.transaction.outcome'])).toEqual(['committed', 'rolled_back']);
    expect(spans[0]!.attributes).toMatchObject({
      'db.system.name': 'postgresql',
      'db.namespace': expect.any(String),
      'txlock.transaction.propagation': 'REQUIRED',
      'txlock.transaction.attempts': 1,
    });
    expect(spans[1]!.attributes['txlock.transaction.isolation']).toBe('REPEATABLE READ');
    expect(spans[1]!.status.code).toBe(2); // SpanStatusCode.ERROR
    expect(histogramCount(matching(await otel.points<Histogram>('txlock.pool.acquire.wait.duration'), { 'txlock.pool.outcome': 'acquired' }))).toBeGreaterThanOrEqual(2);
  });

  it('a contended lock: the waiting caller records a wait histogram entry and a span with its wait, outcome acquired', async () => {
    otel.resetSpans();
    const release = await holding((body) => locks.withAdvisoryLock(['account', 1], body, { label: 'account' }));
    const second = locks.withAdvisoryLock(['account', 1], async () => 'second ran', { label: 'account' });
    await eventually(async () => (await locks.holders(['account', 1])).some((holder) => !holder.granted));
    await release();
    expect(await second).toBe('second ran');

    const spans = (await otel.spans('txlock.lock.acquire')).filter((span) => span.attributes['txlock.lock.label'] === 'account');
    expect(spans).toHaveLength(2);
    for (const span of spans) {
      expect(span.attributes).toMatchObject({ 'db.system.name': 'postgresql', 'txlock.lock.feature': 'advisory', 'txlock.lock.outcome': 'acquired', 'txlock.lock.mode': 'exclusive' });
      expect(span.attributes['txlock.lock.wait.duration']).toEqual(expect.any(Number));
    }
    // The second caller waited for the first one's whole hold; the first did not wait at all.
    const waits = spans.map((span) => span.attributes['txlock.lock.wait.duration'] as number).sort((a, b) => a - b);
    expect(waits[1]).toBeGreaterThan(waits[0]!);
    // Never the key itself, in spans or metrics.
    expect(JSON.stringify(spans.map((span) => span.attributes))).not.toContain('"account",1');

    const waitPoints = matching(await otel.points<Histogram>('txlock.lock.wait.duration'), { 'txlock.lock.label': 'account', 'txlock.lock.outcome': 'acquired' });
    expect(histogramCount(waitPoints)).toBeGreaterThanOrEqual(2);
    expect(waitPoints[0]!.value.max).toBeGreaterThan(0);
    expect(histogramCount(matching(await otel.points<Histogram>('txlock.lock.hold.duration'), { 'txlock.lock.label': 'account' }))).toBeGreaterThanOrEqual(2);
  });

  it('a lock timeout and a busy try-lock are counted in txlock.lock.timeouts', async () => {
    const release = await holding((body) => locks.withAdvisoryLock('busy', body, { label: 'busy' }));
    await expect(locks.withAdvisoryLock('busy', async () => undefined, { label: 'busy', timeoutMs: 50 })).rejects.toBeInstanceOf(LockTimeoutError);
    expect(await locks.tryAdvisoryLock('busy', async () => undefined, { label: 'busy' })).toEqual({ ran: false, reason: 'locked' });
    await release();
    const timeouts = matching(await otel.points('txlock.lock.timeouts'), { 'txlock.lock.label': 'busy' });
    expect(Object.fromEntries(timeouts.map((point) => [point.attributes['txlock.lock.outcome'], point.value]))).toEqual({ timeout: 1, not_acquired: 1 });
    const outcomes = (await otel.spans('txlock.lock.acquire')).filter((span) => span.attributes['txlock.lock.label'] === 'busy').map((span) => span.attributes['txlock.lock.outcome']);
    expect(outcomes.sort()).toEqual(['acquired', 'not_acquired', 'timeout']);
  });

  it('a table lock and a decorated lock report their feature and label; an empty label is refused', async () => {
    await tx.run(async () => locks.lockTables('otel_account', 'SHARE'));
    const [table] = await otel.spans('txlock.lock.acquire').then((spans) => spans.filter((span) => span.attributes['txlock.lock.feature'] === 'table'));
    expect(table!.attributes).toMatchObject({ 'txlock.lock.mode': 'SHARE', 'txlock.lock.outcome': 'acquired' });
    expect(() => AdvisoryLock({ label: '' })).toThrow(InvalidOptionError);
  });

  it('a SERIALIZABLE transaction forced to retry shows its attempts on its span and in txlock.transaction.retries', async () => {
    otel.resetSpans();
    let arrived = 0;
    const bothRead = gate();
    // Both first attempts read the row before either writes it: one of them fails with 40001 and is retried.
    const transfer = () =>
      tx.run({ isolation: 'SERIALIZABLE', retries: 3 }, async () => {
        const [{ balance }] = await tx.manager.query('SELECT balance FROM otel_account WHERE id = 1');
        if (++arrived === 2) bothRead.open();
        await bothRead.opened;
        await tx.manager.query('UPDATE otel_account SET balance = $1 WHERE id = 1', [balance + 1]);
      });
    await Promise.all([transfer(), transfer()]);
    expect((await testApp.dataSource.query('SELECT balance FROM otel_account WHERE id = 1'))[0].balance).toBe(2);

    const spans = await otel.spans('txlock.transaction');
    expect(spans).toHaveLength(2);
    const attempts = spans.map((span) => span.attributes['txlock.transaction.attempts']).sort();
    expect(attempts[0]).toBe(1);
    expect(attempts[1]).toBeGreaterThan(1);
    const retried = spans.find((span) => span.attributes['txlock.transaction.attempts'] !== 1)!;
    expect(retried.attributes).toMatchObject({ 'txlock.transaction.outcome': 'committed', 'txlock.transaction.isolation': 'SERIALIZABLE' });
    expect(retried.events[0]).toMatchObject({ name: 'txlock.transaction.attempt', attributes: { 'txlock.transaction.outcome': 'retried', 'db.response.status_code': '40001' } });
    const retries = matching(await otel.points('txlock.transaction.retries'), { 'db.response.status_code': '40001' });
    expect(retries[0]!.value).toBeGreaterThanOrEqual(1);
  });

  it('exhausted retries are counted', async () => {
    const failing = Object.assign(new Error('could not serialize access'), { code: '40001' });
    await expect(tx.run({ retries: 1 }, async () => Promise.reject(failing))).rejects.toThrow();
    expect((await otel.points('txlock.transaction.retries_exhausted'))[0]!.value).toBe(1);
  });

  it('coalesced counter increments: txlock.counter.batch.size has one entry per statement, summing to the increments', async () => {
    const counters = testApp.get(CounterService);
    await Promise.all(Array.from({ length: 40 }, () => counters.increment('otel-hits')));
    expect(await counters.get('otel-hits')).toBe(40);
    const [point] = await otel.points<Histogram>('txlock.counter.batch.size');
    expect(point!.value.sum).toBe(40);
    expect(point!.value.count).toBeLessThan(40); // callers that arrived during a statement shared the next one
    expect(point!.value.max).toBeGreaterThan(1);
  });

  it('leases: acquire (free, busy, taken over), and a renewal that finds the lease lost', async () => {
    const leases = testApp.get(LeaseService);
    const expire = (holder: string) =>
      testApp.dataSource.query(`UPDATE txlock_leases SET holder = $1, lock_until = clock_timestamp() - interval '1 second' WHERE name = 'otel-job'`, [holder]);
    otel.resetSpans();
    const first = await leases.acquire('otel-job', { atMostForMs: 60_000 });
    expect(await leases.acquire('otel-job', { atMostForMs: 60_000 })).toBeNull();
    await expire('another-replica');
    const second = await leases.acquire('otel-job', { atMostForMs: 60_000 });
    await expire(leases.holderId);
    await expect(leases.extend(second!, 1_000)).rejects.toBeInstanceOf(LeaseLostError);

    const acquires = await otel.spans('txlock.lease.acquire');
    expect(acquires.map((span) => [span.attributes['txlock.lease.outcome'], span.attributes['txlock.lease.takeover']])).toEqual([
      ['acquired', false],
      ['busy', undefined],
      ['acquired', true],
    ]);
    expect(acquires[2]!.attributes['txlock.lease.token']).toBe(first!.token + 1);
    const [renew] = await otel.spans('txlock.lease.renew');
    expect(renew!.attributes['txlock.lease.outcome']).toBe('lost');
    expect((await otel.points('txlock.lease.takeovers'))[0]!.value).toBe(1);
    expect((await otel.points('txlock.lease.losses'))[0]!.value).toBe(1);
  });

  it('single flight: one caller computes (txlock.single_flight.compute), the other waits (txlock.single_flight.wait)', async () => {
    const flights = testApp.get(SingleFlightService);
    otel.resetSpans();
    const computing = gate();
    const started = gate();
    const compute = async () => {
      started.open();
      await computing.opened;
      return 42;
    };
    const leader = flights.run('otel-report', compute, { ttlMs: 60_000 });
    await started.opened;
    const follower = flights.run('otel-report', compute, { ttlMs: 60_000 });
    computing.open();
    expect(await Promise.all([leader, follower])).toEqual([42, 42]);
    expect(await otel.spans('txlock.single_flight.compute')).toHaveLength(1);
    expect(await otel.spans('txlock.single_flight.wait')).toHaveLength(1);
    const [lock] = (await otel.spans('txlock.lock.acquire')).filter((span) => span.attributes['txlock.lock.feature'] === 'single_flight');
    expect(lock!.attributes['txlock.lock.outcome']).toBe('acquired');
  });

  // r27: keys reached spans through the errors recorded on them (a single-flight key on the wait span's status and
  // exception event, a lock's key in LockTimeoutError's message on the caller's transaction span), and a lock call
  // refused in the transaction it opened ended that span as ERROR "[object Object]".
  it('no key reaches a span or a metric, whatever fails; recorded exceptions carry their class as type', async () => {
    const canary = randomUUID();
    const counters = testApp.get(CounterService);
    const leases = testApp.get(LeaseService);
    const flights = testApp.get(SingleFlightService);
    otel.resetSpans();
    const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (error: unknown) => error);
    const failures: unknown[] = [];

    // Locks: a timeout and a busy nowait, in the transaction the call opens and in one the caller opened; a session
    // lock timeout; an aborted wait; a try-lock.
    const release = await holding((body) => locks.withAdvisoryLocks([['user', canary], canary], body));
    for (const key of [['user', canary], canary]) {
      failures.push(await failure(locks.withAdvisoryLock(key, async () => undefined, { timeoutMs: 30 })));
      failures.push(await failure(locks.withAdvisoryLock(key, async () => undefined, { nowait: true })));
      failures.push(await failure(tx.run(() => locks.withAdvisoryLock(key, async () => undefined, { timeoutMs: 30 }))));
      failures.push(await failure(tx.run(() => locks.withAdvisoryLock(key, async () => undefined, { nowait: true }))));
      failures.push(await failure(locks.withAdvisoryLock(key, async () => undefined, { scope: 'session', timeoutMs: 30 })));
      failures.push(await failure(locks.withAdvisoryLock(key, async () => undefined, { signal: AbortSignal.timeout(30) })));
      expect(await locks.tryAdvisoryLock(key, async () => undefined)).toEqual({ ran: false, reason: 'locked' });
    }
    await release();
    // Counters: a key the library refuses, and one that overflows what a number holds, in transactions.
    failures.push(await failure(tx.run(() => counters.increment(`${canary}\u0000`))));
    await counters.increment(canary, Number.MAX_SAFE_INTEGER);
    failures.push(await failure(tx.run(() => counters.increment(canary, 1))));
    // Leases: a renewal that finds the lease lost.
    const lease = await leases.acquire(canary, { atMostForMs: 60_000 });
    await testApp.dataSource.query(`UPDATE txlock_leases SET holder = 'another', lock_until = clock_timestamp() - interval '1 second' WHERE name = $1`, [canary]);
    failures.push(await failure(tx.run(() => leases.extend(lease!, 1_000))));
    // Single flight: a caller that stops waiting for the computation in flight, and a value JSON cannot carry.
    const computing = gate();
    const started = gate();
    const leader = flights.run(canary, async () => {
      started.open();
      await computing.opened;
      return 1;
    }, { ttlMs: 60_000 });
    await started.opened;
    failures.push(await failure(flights.run(canary, async () => 1, { ttlMs: 60_000, timeoutMs: 30 })));
    computing.open();
    await leader;
    failures.push(await failure(flights.run(`${canary}:undefined`, async () => undefined, { ttlMs: 60_000 })));
    failures.push(await failure(tx.run(() => flights.run(`${canary}\uD800`, async () => 1, { ttlMs: 60_000 }))));

    // Every call failed as it should, and the caller's error still names its key (that is the caller's to log).
    expect(failures.map((error) => (error as Error).constructor.name)).toEqual([
      ...Array.from({ length: 2 }, () => ['LockTimeoutError', 'LockNotAcquiredError', 'LockTimeoutError', 'LockNotAcquiredError', 'LockTimeoutError', 'LockAbortedError']).flat(),
      'InvalidCounterKeyError',
      'CounterOverflowError',
      'LeaseLostError',
      'LockTimeoutError',
      'ValueNotSerializableError',
      'InvalidOptionError',
    ]);
    for (const error of failures) expect((error as Error).message).toContain(canary);

    const recorded = await otel.everything();
    expect(recorded.includes(canary)).toBe(false);
    expect(recorded).toContain('<redacted>'); // the exporters did get the failures
    expect(recorded).not.toContain('[object Object]');
    const exceptions = (await otel.spans()).flatMap((span) => span.events.filter((event) => event.name === 'exception').map((event) => ({ span: span.name, type: event.attributes!['exception.type'] })));
    expect(exceptions).toEqual(expect.arrayContaining([
      { span: 'txlock.transaction', type: 'LockTimeoutError' },
      { span: 'txlock.transaction', type: 'LockNotAcquiredError' },
      { span: 'txlock.transaction', type: 'LockAbortedError' },
      { span: 'txlock.transaction', type: 'InvalidCounterKeyError' },
      { span: 'txlock.transaction', type: 'CounterOverflowError' },
      { span: 'txlock.transaction', type: 'LeaseLostError' },
      { span: 'txlock.transaction', type: 'InvalidOptionError' },
      { span: 'txlock.single_flight.wait', type: 'LockTimeoutError' },
      { span: 'txlock.transaction', type: 'ValueNotSerializableError' }, // the single flight's own transaction
    ]));
    // A lock refused in the transaction the call opened ends that span with the lock's error, not its carrier.
    const refused = (await otel.spans('txlock.transaction')).filter((span) => span.status.code === 2).map((span) => span.status.message);
    expect(refused).toContain(new LockTimeoutError('<redacted>', 30).message);
    expect(refused).toContain(new LockNotAcquiredError('<redacted>').message);
  });
});
