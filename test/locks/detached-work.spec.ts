import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import { Column, Entity, PrimaryColumn, type Repository } from 'typeorm';
import { AdvisoryLock, InjectTxRepository, LockService, LockTimeoutError, Transactional, TransactionEndedError, TransactionHost } from '../../lib/index.js';
import { DETACHED_WAIT_MS } from '../../lib/locks/branch-locks.js';
import { OverlapDetector } from '../../lib/testing/index.js';
import { expectAllReleased, poolerUrl } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';

@Entity('detached_account')
class DetachedAccount {
  @PrimaryColumn()
  id!: number;

  @Column({ type: 'int', default: 0 })
  points!: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const behindPooler = poolerUrl() !== undefined;

/** How the locked method starts a bonus it does not await (or does, for the re-entry shapes). */
type Start = (award: () => Promise<unknown>) => void;

const DETACHED: [string, Start][] = [
  ['a sync event listener (void call)', (award) => {
    const events = new EventEmitter();
    events.on('paid', () => void award().catch(() => undefined));
    events.emit('paid');
  }],
  ['an async event listener that awaits the call', (award) => {
    const events = new EventEmitter();
    events.on('paid', async () => {
      await award().catch(() => undefined);
    });
    events.emit('paid');
  }],
  ['setTimeout', (award) => void setTimeout(() => void award().catch(() => undefined), 0)],
  ['queueMicrotask', (award) => queueMicrotask(() => void award().catch(() => undefined))],
  ['.catch() without await', (award) => void award().catch(() => undefined)],
];

@Injectable()
class Points {
  detector!: OverlapDetector;
  constructor(@InjectTxRepository(DetachedAccount) readonly accounts: Repository<DetachedAccount>) {}

  /** A read-modify-write of the account, one at a time per account (the lock). */
  @AdvisoryLock({ key: (id: number) => ['detached-account', id] })
  @Transactional()
  async award(id: number, points: number): Promise<void> {
    await this.detector.visit(`account ${id}`, async () => {
      const account = await this.accounts.findOneByOrFail({ id });
      await sleep(20);
      account.points += points;
      await this.accounts.save(account);
    });
  }

  /** Pays: starts a 5-point bonus as `start` says, then awards 10 points itself under the same lock. */
  @AdvisoryLock({ key: (id: number) => ['detached-account', id] })
  @Transactional()
  async pay(id: number, start: Start, fail = false): Promise<void> {
    start(() => this.award(id, 5));
    await this.detector.visit(`account ${id}`, async () => {
      const account = await this.accounts.findOneByOrFail({ id });
      await sleep(20);
      account.points += 10;
      await this.accounts.save(account);
    });
    if (fail) throw new Error('payment failed');
  }
}

// Re-entry belongs to the call chain that awaits the call (r28): work the locked method starts without awaiting it
// (a listener, a timer) waits for the lock like anyone else, and has its turn before the transaction ends.
describe('detached work started inside a locked method', () => {
  let detector: OverlapDetector | undefined;
  afterAll(() => detector?.close()); // before the database is dropped (useTestApp's afterAll, declared next)
  const testApp = useTestApp({ entities: [DetachedAccount], providers: [Points], poolSize: 6 });
  let points: Points;
  let id = 0;
  const total = async (account: number) => (await points.accounts.findOneByOrFail({ id: account })).points;

  beforeAll(async () => {
    points = testApp.get(Points);
    detector = points.detector = await OverlapDetector.open(testApp.db.url);
  });
  beforeEach(async () => {
    id++;
    await points.accounts.insert({ id, points: 0 });
  });

  for (const [shape, start] of DETACHED) {
    it(`${shape}: the bonus takes its turn after the payment, inside its transaction; no overlap, no lost points`, async () => {
      for (let round = 0; round < 3; round++) await points.pay(id, start);
      expect(await detector!.overlaps(`account ${id}`)).toBe(0);
      expect(await detector!.visits(`account ${id}`)).toBe(6);
      expect(await total(id)).toBe(45);
      await expectAllReleased(testApp.dataSource);
    });
  }

  it('when the transaction rolls back, the deferred call is refused (TransactionEndedError) and nothing of it is kept', async () => {
    let bonus: unknown;
    await expect(
      points.pay(id, (award) => void award().then(() => (bonus = 'ran'), (error: unknown) => (bonus = error)), true),
    ).rejects.toThrow('payment failed');
    await sleep(50);
    expect(bonus).toBeInstanceOf(TransactionEndedError);
    expect(await total(id)).toBe(0);
    await expectAllReleased(testApp.dataSource);
  });

  // Found by the kit's differential oracle (seed 1272777766): the nowait call answered from the branch locks first.
  it('lock calls of detached work that run after their transaction ended are refused with TransactionEndedError, a nowait one too', async () => {
    const tx = testApp.get(TransactionHost);
    const locks = testApp.get(LockService);
    let late: Promise<PromiseSettledResult<unknown>[]> | undefined;
    await tx.run(async () => {
      setTimeout(() => {
        const settle = (call: Promise<unknown>) => call.then(() => 'ran', (error: unknown) => error);
        late = Promise.allSettled([settle(locks.withAdvisoryLock('late', () => 'ran')), settle(locks.withAdvisoryLock('late', () => 'ran', { nowait: true }))]);
      }, 20);
    });
    await sleep(60);
    const results = (await late!).map((result) => (result.status === 'fulfilled' ? result.value : result.reason));
    expect(results.map((result) => (result as object).constructor)).toEqual([TransactionEndedError, TransactionEndedError]);
    await expectAllReleased(testApp.dataSource);
  });
});

// The shapes of re-entry that must keep working: each is awaited by the call chain that holds the key.
describe('re-entry by the call chain that awaits the call', () => {
  const testApp = useTestApp({ poolSize: 4 });
  let locks: LockService;
  let tx: TransactionHost;

  beforeAll(() => {
    locks = testApp.get(LockService);
    tx = testApp.get(TransactionHost);
  });

  const inner = () => locks.withAdvisoryLock('reentry', async () => 'inner');
  const helper = async () => inner();
  const shapes: [string, () => Promise<unknown>][] = [
    ['await', () => inner()],
    ['return through another async function', () => helper()],
    ['Promise.all', () => Promise.all([inner(), inner()])],
    ['Promise.allSettled', () => Promise.allSettled([inner()])],
    ['a then-chain', () => inner().then((value) => value)],
    ['an await made after other work (a promise created first)', async () => {
      const pending = inner();
      await sleep(30);
      return pending;
    }],
  ];

  for (const [shape, reenter] of shapes) {
    it(`${shape}: let in at once, in a transaction and in a session`, async () => {
      await expect(tx.run(() => locks.withAdvisoryLock('reentry', reenter))).resolves.toBeDefined();
      // Session-scope locks are refused behind a transaction pooler (.ci/pgbouncer.sh).
      if (!behindPooler) await expect(locks.withAdvisoryLock('reentry', reenter, { scope: 'session' })).resolves.toBeDefined();
      await expectAllReleased(testApp.dataSource);
    });
  }

  // Found by the model checker (its runner attached a .catch() to each Promise.all branch first): V8's async stack
  // follows one consumer of a promise, so the call looks detached and waited for its own holder for ever.
  it('a re-entrant call whose promise got a .catch() before it was awaited ends with LockTimeoutError, never waits for ever', async () => {
    const started = Date.now();
    const outcome = await tx
      .run(() =>
        locks.withAdvisoryLock('reentry-catch-first', async () => {
          const pending = locks.withAdvisoryLock('reentry-catch-first', async () => 'inner', { timeoutMs: 300 });
          pending.catch(() => undefined);
          return await pending;
        }),
      )
      .catch((error: unknown) => error);
    console.log(`[locks] re-entry awaited after a .catch(): ${outcome instanceof Error ? outcome.constructor.name : String(outcome)} after ${Date.now() - started} ms`);
    expect(outcome).toBeInstanceOf(LockTimeoutError);
    expect((outcome as LockTimeoutError).message).toContain('await the call before attaching');
    await expectAllReleased(testApp.dataSource);
  });

  it(`without timeoutMs, the same wait ends after ${DETACHED_WAIT_MS} ms`, async () => {
    const outcome = await tx
      .run(() =>
        locks.withAdvisoryLock('reentry-catch-first-default', async () => {
          const pending = locks.withAdvisoryLock('reentry-catch-first-default', async () => 'inner');
          pending.then(() => undefined, () => undefined);
          return await pending;
        }),
      )
      .catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(LockTimeoutError);
    expect((outcome as LockTimeoutError).timeoutMs).toBe(DETACHED_WAIT_MS);
  }, DETACHED_WAIT_MS + 10_000);

  (behindPooler ? it.skip : it)('a transaction-scope lock started as detached work inside a session-scope lock call waits for the session to let go', async () => {
    const order: string[] = [];
    let detached: Promise<unknown> | undefined;
    await locks.withAdvisoryLock(
      'session-then-transaction',
      async () => {
        setTimeout(() => (detached = locks.withAdvisoryLock('session-then-transaction', async () => void order.push('detached'))), 0);
        await sleep(30);
        order.push('holder');
      },
      { scope: 'session' },
    );
    await detached;
    expect(order).toEqual(['holder', 'detached']);
    await expectAllReleased(testApp.dataSource);
  });

  (behindPooler ? it.skip : it)('a session lock call waits for the detached work it deferred before it releases its locks', async () => {
    const order: string[] = [];
    await locks.withAdvisoryLock(
      'session-detached',
      async () => {
        setTimeout(() => void locks.withAdvisoryLock('session-detached', async () => void order.push('detached'), { scope: 'session' }), 0);
        await sleep(20);
        order.push('holder');
      },
      { scope: 'session' },
    );
    expect(order).toEqual(['holder', 'detached']);
  });
});
