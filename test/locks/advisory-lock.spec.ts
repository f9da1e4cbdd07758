import { beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Injectable, Logger } from '@nestjs/common';
import pg from 'pg';
import { DataSource } from 'typeorm';
import {
  AdvisoryLock,
  advisoryLockKey,
  InvalidLockKeyError,
  InvalidOptionError,
  LockNotAcquiredError,
  LockService,
  LockTimeoutError,
  Propagation,
  Transactional,
  TransactionHost,
} from '../../lib/index.js';
import { concurrently, valuesOf } from '../support/concurrency.js';
import { expectAllReleased } from '../support/database.js';
import { eventually, gate, holding } from '../support/gate.js';
import { RoundTripLog } from '../support/round-trips.js';
import { useTestApp } from '../support/test-app.js';

@Injectable()
class Accounts {
  readonly calls: string[] = [];
  constructor(readonly tx: TransactionHost) {}

  @Transactional()
  async plain(): Promise<void> {
    await this.tx.manager.query('SELECT 1');
  }

  @AdvisoryLock({ key: (id: number) => ['account', id] })
  async locked(_id: number): Promise<void> {
    await this.tx.manager.query('SELECT 1');
  }

  @AdvisoryLock({ key: 'account-timeout', timeoutMs: 5_000 })
  async lockedWithTimeout(): Promise<void> {
    await this.tx.manager.query('SELECT 1');
  }

  /** What byDefaultKey() waits for before returning (set by a test to keep its lock held). */
  holdOpen: Promise<void> = Promise.resolve();

  @AdvisoryLock()
  async byDefaultKey(_id: number, _filter: { b: number; a: number }): Promise<void> {
    await this.holdOpen;
  }

  @AdvisoryLock({ key: 'nightly', onLocked: 'skip' })
  async nightly(): Promise<string> {
    this.calls.push('nightly');
    return 'ran';
  }

  @AdvisoryLock({ key: 'outer' })
  async outer(): Promise<boolean> {
    return this.inner();
  }

  @AdvisoryLock({ key: 'outer', timeoutMs: 1_000 })
  async inner(): Promise<boolean> {
    return this.tx.isActive;
  }

  @AdvisoryLock({ keys: (from: number, to: number) => [['account', from], ['account', to]] })
  async transfer(_from: number, _to: number): Promise<void> {
    await this.tx.manager.query('SELECT 1');
  }
}

// Connections: app pool 8 + one admin client.
describe('advisory locks (transaction scope)', () => {
  const testApp = useTestApp({ providers: [Accounts], poolSize: 8 });
  let locks: LockService;
  let tx: TransactionHost;
  let accounts: Accounts;
  let dataSource: DataSource;

  /** Holds `key` in its own transaction until the returned function is called. */
  const hold = (key: Parameters<LockService['withAdvisoryLock']>[0], options: { shared?: boolean } = {}) =>
    holding((body) => locks.withAdvisoryLock(key, body, options));
  const heldBy = async (key: Parameters<LockService['holders']>[0]) => (await locks.holders(key)).filter((h) => h.granted).length;

  beforeAll(async () => {
    locks = testApp.get(LockService);
    tx = testApp.get(TransactionHost);
    accounts = testApp.get(Accounts);
    dataSource = testApp.dataSource;
  });

  describe('keys', () => {
    it('derives one documented 64-bit key: stable across releases, with the namespace in the top 4 bits', () => {
      // Pinned: if this changes, old and new replicas stop excluding each other (a breaking change).
      expect(advisoryLockKey('example')).toBe(advisoryLockKey(['example']));
      expect(advisoryLockKey('example')).toBe(PINNED_EXAMPLE_KEY);
      expect(BigInt.asUintN(64, advisoryLockKey('example', 3)) >> 60n).toBe(3n);
      expect(BigInt.asUintN(64, advisoryLockKey('example')) >> 60n).toBe(0n);
      expect(advisoryLockKey(['account', 5])).toBe(advisoryLockKey(['account', '5']));
      expect(advisoryLockKey(['account', 5n])).toBe(advisoryLockKey(['account', 5]));
      expect(advisoryLockKey(['a', 'b'])).not.toBe(advisoryLockKey(['a:b']));
      expect(advisoryLockKey(['a', 'b'])).not.toBe(advisoryLockKey('a,b'));
    });

    it('refuses keys and namespaces it cannot derive, naming the problem', async () => {
      expect(() => advisoryLockKey([])).toThrow(InvalidLockKeyError);
      expect(() => advisoryLockKey([{} as never])).toThrow(InvalidLockKeyError);
      expect(() => advisoryLockKey(Number.NaN)).toThrow(InvalidLockKeyError);
      expect(() => advisoryLockKey('x', 16)).toThrow(InvalidOptionError);
      expect(() => advisoryLockKey('x', 1.5)).toThrow(InvalidOptionError);
      await expect(locks.withAdvisoryLock('x', () => 1, { namespace: 15 })).rejects.toThrow(InvalidOptionError);
      expect(() => AdvisoryLock({ timeoutMs: 10, nowait: true })).toThrow(InvalidOptionError);
      expect(() => AdvisoryLock({ timeoutMs: -1 })).toThrow(/timeoutMs/);
      expect(() => AdvisoryLock({ onLocked: 'wait' as never })).toThrow(/"throw", "skip"/);
      expect(() => AdvisoryLock({ propagation: Propagation.SUPPORTS as never })).toThrow(/REQUIRED, REQUIRES_NEW, NESTED, MANDATORY/);
      expect(() => AdvisoryLock({ key: [] })).toThrow(InvalidLockKeyError);
    });

    it('serialises calls with the same default key (ClassName.methodName + arguments) and not others', async () => {
      const release = gate();
      accounts.holdOpen = release.opened;
      const first = accounts.byDefaultKey(1, { b: 2, a: 1 });
      const key = ['Accounts.byDefaultKey', '1', '{"a":1,"b":2}'];
      await eventually(async () => (await heldBy(key)) === 1);
      // Same arguments (object keys in another order): waits. Other arguments: runs.
      await expect(locks.tryAdvisoryLock(key, () => 'ran')).resolves.toEqual({ ran: false, reason: 'locked' });
      accounts.holdOpen = Promise.resolve();
      await expect(accounts.byDefaultKey(2, { a: 1, b: 2 })).resolves.toBeUndefined();
      release.open();
      await first;
    });
  });

  it('runs different keys at the same time: a second key is taken while the first is held', async () => {
    const a = await hold(['account', 1]);
    await expect(accounts.locked(2)).resolves.toBeUndefined();
    await expect(locks.tryAdvisoryLock(['account', 1], () => 'ran')).resolves.toEqual({ ran: false, reason: 'locked' });
    await a();
  });

  it('lets shared holders in together, and makes an exclusive caller wait for them', async () => {
    const both = gate();
    let inside = 0;
    const reader = () =>
      locks.withAdvisoryLock('report', async () => {
        if (++inside === 2) both.open();
        await both.opened; // would never open if the second reader had to wait for the first
      }, { shared: true });
    const readers = Promise.all([reader(), reader()]);
    await both.opened;

    const held = await hold('catalog', { shared: true });
    let writerRan = false;
    const writer = locks.withAdvisoryLock('catalog', () => (writerRan = true));
    await eventually(async () => (await locks.holders('catalog')).some((h) => !h.granted && h.mode === 'exclusive'));
    expect(writerRan).toBe(false);
    await held();
    await writer;
    expect(writerRan).toBe(true);
    await readers;
  });

  it('throws LockTimeoutError after timeoutMs, and LockNotAcquiredError with nowait, without running fn', async () => {
    const held = await hold('busy');
    let ran = false;
    try {
      const error = await locks.withAdvisoryLock('busy', () => (ran = true), { timeoutMs: 50 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect(error).toMatchObject({ timeoutMs: 50, message: expect.stringContaining('["busy"]'), cause: expect.objectContaining({ code: '55P03' }) });
      await expect(locks.withAdvisoryLock('busy', () => (ran = true), { nowait: true })).rejects.toBeInstanceOf(LockNotAcquiredError);
      await expect(locks.tryAdvisoryLock('busy', () => (ran = true), { timeoutMs: 50 })).resolves.toEqual({ ran: false, reason: 'timeout' });
      expect(ran).toBe(false);
    } finally {
      await held(); // also when an expectation failed: the next test checks that every connection went back
    }
    await expectAllReleased(dataSource);
  });

  it("names the caller's timeoutMs in LockTimeoutError, also when part of it went on waiting for a sibling branch", async () => {
    const held = await hold('busy-after-sibling');
    try {
      const error = await tx.run(async () => {
        let release: (() => void) | undefined;
        const sibling = locks.withAdvisoryLock('held-by-sibling', () => new Promise<void>((resolve) => (release = resolve)));
        await eventually(async () => release !== undefined);
        // Waits for the sibling's key in this process first, then for the other transaction's key in the database.
        const waiting = locks.withAdvisoryLocks(['held-by-sibling', 'busy-after-sibling'], () => undefined, { timeoutMs: 400 }).catch((e: unknown) => e);
        await new Promise((resolve) => setTimeout(resolve, 200));
        release!();
        await sibling;
        return waiting;
      });
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect(error).toMatchObject({ timeoutMs: 400, message: expect.stringContaining('400 ms') });
    } finally {
      await held();
    }
    await expectAllReleased(dataSource);
  });

  it('keeps the caller\'s transaction usable when a joined lock times out, and restores its lock_timeout', async () => {
    const held = await hold('busy-joined');
    const result = await tx.run(async () => {
      await tx.manager.query('SET LOCAL lock_timeout = 7');
      await tx.manager.query('CREATE TABLE joined_marker (id int)');
      await expect(locks.withAdvisoryLock('busy-joined', () => 1, { timeoutMs: 30 })).rejects.toBeInstanceOf(LockTimeoutError);
      await expect(locks.tryAdvisoryLocks(['free-key', 'busy-joined'], () => 1)).resolves.toEqual({ ran: false, reason: 'locked' });
      await locks.withAdvisoryLock('another-key', () => 1, { timeoutMs: 1_000 });
      const [{ lock_timeout }] = await tx.manager.query('SHOW lock_timeout');
      return { lockTimeout: lock_timeout, holdsFreeKey: await heldBy('free-key') };
    });
    // The partial multi-key try rolled back to its savepoint: "free-key" was not kept.
    expect(result).toEqual({ lockTimeout: '7ms', holdsFreeKey: 0 });
    await expect(dataSource.query('SELECT count(*) FROM joined_marker')).resolves.toEqual([{ count: '0' }]);
    await held();
  });

  it('skips a method with onLocked: skip when the lock is taken, and runs it when it is free', async () => {
    const held = await hold('nightly');
    await expect(accounts.nightly()).resolves.toBeUndefined();
    expect(accounts.calls).toEqual([]);
    await held();
    await expect(accounts.nightly()).resolves.toBe('ran');
    expect(accounts.calls).toEqual(['nightly']);
  });

  it('releases the lock when fn throws, and holds it until the transaction ends (not when fn returns)', async () => {
    await expect(locks.withAdvisoryLock('thrower', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await heldBy('thrower')).toBe(0);

    await expect(
      tx.run(async () => {
        await locks.withAdvisoryLock('until-commit', () => tx.manager.query('SELECT 1'));
        // fn has returned, but the writes it protects are not committed yet: the lock must still be held.
        expect(await locks.tryAdvisoryLock('until-commit', () => 1, { propagation: Propagation.REQUIRES_NEW })).toEqual({ ran: false, reason: 'locked' });
        throw new Error('roll back');
      }),
    ).rejects.toThrow('roll back');
    expect(await heldBy('until-commit')).toBe(0);
  });

  it('releases a lock taken in a NESTED savepoint that rolls back', async () => {
    await tx.run(async () => {
      await tx.manager.query('SELECT 1');
      await expect(locks.withAdvisoryLock('nested', () => Promise.reject(new Error('inner')), { propagation: Propagation.NESTED })).rejects.toThrow('inner');
      expect(await locks.tryAdvisoryLock('nested', () => 'free', { propagation: Propagation.REQUIRES_NEW })).toEqual({ ran: true, value: 'free' });
    });
  });

  it('releases the lock when the holder\'s backend is terminated', async () => {
    const admin = new pg.Client({ connectionString: testApp.db.url });
    await admin.connect();
    try {
      const held = await hold('terminated');
      const [holder] = await locks.holders('terminated');
      expect(holder).toMatchObject({ granted: true, mode: 'exclusive', key: advisoryLockKey('terminated'), transactionStart: expect.any(Date) });
      await admin.query('SELECT pg_terminate_backend($1)', [holder!.pid]);
      await expect(locks.withAdvisoryLock('terminated', () => 'next', { timeoutMs: 10_000 })).resolves.toBe('next');
      await expect(held()).rejects.toThrow();
      await expectAllReleased(dataSource);
    } finally {
      await admin.end();
    }
  });

  it('treats re-entering a key already held in the transaction as a no-op (no deadlock, no statement)', async () => {
    const log = RoundTripLog.attach(dataSource);
    await expect(accounts.outer()).resolves.toBe(true);
    log.stop();
    expect(log.sent.filter((sql) => sql.includes('advisory'))).toHaveLength(1);
  });

  it('takes several keys in sorted order, so callers naming them in opposite orders never deadlock', async () => {
    const outcomes = await concurrently(6, (i) => (i % 2 ? accounts.transfer(1, 2) : accounts.transfer(2, 1)));
    valuesOf(outcomes);
    await expect(locks.withAdvisoryLocks(['dup', 'dup', ['dup']], () => 'once')).resolves.toBe('once');
  });

  it('warns once when one transaction takes very many keys (they share PostgreSQL\'s lock table)', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    try {
      await tx.run(async () => {
        for (let i = 0; i < 70; i += 10) await locks.withAdvisoryLocks(Array.from({ length: 10 }, (_, j) => ['row', i + j]), () => 1);
      });
      expect(warn.mock.calls.filter(([message]) => String(message).includes('advisory locks'))).toEqual([[expect.stringContaining('holds 70 advisory locks')]]);
    } finally {
      warn.mockRestore();
    }
  });

  it('lists holders and waiters of a key with their backend', async () => {
    const held = await hold(['account', 77]);
    const waiter = locks.withAdvisoryLock(['account', 77], () => 'waited');
    await eventually(async () => (await locks.holders(['account', 77])).length === 2);
    const [holder, waiting] = await locks.holders(['account', 77]);
    expect(holder).toMatchObject({ granted: true, waitingSince: null, state: 'idle in transaction' });
    expect(waiting).toMatchObject({ granted: false, mode: 'exclusive', state: 'active' });
    expect((await locks.holders()).some((h) => h.key === advisoryLockKey(['account', 77]))).toBe(true);
    await held();
    await expect(waiter).resolves.toBe('waited');
  });

  it('costs no extra round trip: a decorator opening the transaction with its lock = BEGIN alone', async () => {
    const log = RoundTripLog.attach(dataSource);
    await accounts.plain();
    const plain = [...log.sent];
    log.reset();
    await accounts.locked(9);
    const locked = [...log.sent];
    log.reset();
    await accounts.lockedWithTimeout();
    const withTimeout = [...log.sent];
    log.stop();
    console.log(`[locks] round trips: @Transactional ${plain.length}, @AdvisoryLock ${locked.length}, with timeoutMs ${withTimeout.length}`);
    expect(locked).toHaveLength(plain.length);
    expect(withTimeout).toHaveLength(plain.length);
    expect(locked[0]).toMatch(/^BEGIN;\nSELECT pg_advisory_xact_lock\('-?\d+'::bigint\)$/);
  });
});

const PINNED_EXAMPLE_KEY = 1138595723030057872n;
