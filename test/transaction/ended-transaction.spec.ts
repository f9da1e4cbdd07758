import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { DataSource } from 'typeorm';
import { AtomicService, CounterService, LockService, TransactionEndedError, TransactionHost } from '../../lib/index.js';
import { expectAllReleased } from '../support/database.js';
import { gate } from '../support/gate.js';
import { useTestApp } from '../support/test-app.js';
import { Item } from './fixtures.js';

type Settled = { ok: true; value: unknown } | { ok: false; error: unknown };
const settle = (work: Promise<unknown>): Promise<Settled> =>
  work.then(
    (value): Settled => ({ ok: true, value }),
    (error: unknown): Settled => ({ ok: false, error }),
  );
const ticks = async (n: number) => {
  for (let i = 0; i < n; i++) await null;
};

// Work started inside a transaction that outlives it (fire-and-forget, an un-awaited promise, a listener)
// still carries the transaction's scope. It must never reach the pooled connection again, which by then
// carries another caller's transaction, nor run after COMMIT/ROLLBACK in autocommit.
describe('work that outlives its transaction', () => {
  const testApp = useTestApp({ entities: [Item], poolSize: 1, txlock: { counters: { autoCreate: true } } });
  let tx: TransactionHost;
  let dataSource: DataSource;
  const names = async () => ((await dataSource.query('SELECT name FROM tx_item ORDER BY id')) as { name: string }[]).map((r) => r.name);
  const insert = (name: string) => tx.manager.query('INSERT INTO tx_item (name) VALUES ($1)', [name]);

  beforeAll(() => {
    tx = testApp.get(TransactionHost);
    dataSource = testApp.dataSource;
  });
  beforeEach(() => dataSource.query('TRUNCATE tx_item RESTART IDENTITY'));

  it("never touches the next transaction on the pooled connection: each kind of late call fails with TransactionEndedError (r03)", async () => {
    const locks = testApp.get(LockService);
    const counters = testApp.get(CounterService);
    const atomic = testApp.get(AtomicService);
    const late = gate();
    const lateCalls: Record<string, Promise<Settled>> = {};
    // Request 1 commits, leaving work behind that waits for `late` in its own async context.
    await tx.run(async () => {
      await insert('r1');
      const after = <T>(call: () => Promise<T>) => settle(late.opened.then(call));
      lateCalls.nested = after(() => tx.run({ propagation: 'NESTED' }, () => insert('late-nested')));
      lateCalls.required = after(() => tx.run(() => insert('late-required')));
      lateCalls.statement = after(() => insert('late-statement'));
      lateCalls.repository = after(() => tx.getRepository(Item).insert({ name: 'late-repository' }));
      lateCalls.lock = after(() => locks.withAdvisoryLock('late-key', async () => 'ran'));
      lateCalls.lockTables = after(() => locks.lockTables(Item, 'EXCLUSIVE'));
      lateCalls.counter = after(() => counters.increment('late-counter'));
      lateCalls.getOrCreate = after(() => atomic.getOrCreate(Item, { name: 'late-goc' }));
      lateCalls.afterCommit = after(async () => tx.afterCommit(() => undefined));
    });
    // Request 2 has the only pooled connection while the late work runs.
    const request2 = tx.run(async () => {
      await insert('r2-a');
      late.open();
      const outcomes = await Promise.all(Object.values(lateCalls));
      await insert('r2-b');
      const [{ n }] = await tx.manager.query(`SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`);
      return { outcomes, advisoryLocks: n as number };
    });
    const { outcomes, advisoryLocks } = await request2;
    for (const outcome of outcomes) {
      expect(outcome.ok).toBe(false);
      expect((outcome as { error: unknown }).error).toBeInstanceOf(TransactionEndedError);
    }
    expect(advisoryLocks).toBe(0);
    expect(await names()).toEqual(['r1', 'r2-a', 'r2-b']);
    expect(await testApp.get(CounterService).get('late-counter')).toBe(0);
    await expectAllReleased(dataSource);
  });

  it('a statement started just before a readOnly transaction returns runs inside it or fails, never after COMMIT (r02e)', async () => {
    for (let delay = 0; delay <= 40; delay += 2) {
      let late!: Promise<Settled>;
      const transaction = await settle(
        tx.run({ readOnly: true }, async () => {
          await tx.manager.query('SELECT 1');
          late = settle(ticks(delay).then(() => insert(`ticks-${delay}`)));
        }),
      );
      const outcome = await late;
      // Inside the transaction the read-only INSERT fails (and the transaction cannot commit); after it, refused.
      if (outcome.ok) throw new Error(`the insert after ${delay} microtasks succeeded in a read-only transaction`);
      if (!(outcome.error instanceof TransactionEndedError)) expect(transaction.ok).toBe(false);
    }
    expect(await names()).toEqual([]);
    await expectAllReleased(dataSource);
  });

  it('a statement started just before a method throws is rolled back with it or refused; the row never survives (r02f)', async () => {
    const delays: [string, () => Promise<unknown>][] = [
      ...[0, 1, 2, 4, 8, 16, 30].map((n): [string, () => Promise<unknown>] => [`ticks:${n}`, () => ticks(n)]),
      ['setImmediate', () => new Promise((resolve) => setImmediate(resolve))],
      ['timer:0', () => new Promise((resolve) => setTimeout(resolve, 0))],
      ['timer:5', () => new Promise((resolve) => setTimeout(resolve, 5))],
    ];
    for (const [label, wait] of delays) {
      let late!: Promise<Settled>;
      await settle(
        tx.run(async () => {
          await insert(`awaited-${label}`);
          late = settle(wait().then(() => insert(`unawaited-${label}`)));
          throw new Error('business rule failed');
        }),
      );
      const outcome = await late;
      if (!outcome.ok) expect(outcome.error).toBeInstanceOf(TransactionEndedError);
    }
    expect(await names()).toEqual([]);
    await expectAllReleased(dataSource);
  });

  it('a statement started just before a method returns either commits with it or fails with TransactionEndedError', async () => {
    const resolved: string[] = [];
    for (let delay = 0; delay <= 30; delay += 3) {
      let late!: Promise<Settled>;
      await tx.run(async () => {
        await insert(`awaited-${delay}`);
        late = settle(ticks(delay).then(() => insert(`late-${delay}`)));
      });
      const outcome = await late;
      if (outcome.ok) resolved.push(`late-${delay}`);
      else expect(outcome.error).toBeInstanceOf(TransactionEndedError);
    }
    // Exactly the late inserts that resolved are committed: none was lost, none ran on its own.
    expect((await names()).filter((name) => name.startsWith('late-'))).toEqual(resolved);
  });

  it('an un-awaited NESTED call still running when its transaction ends is rolled back and fails; finished work stays', async () => {
    const halfDone = gate();
    const stillRunning = gate();
    let running!: Promise<Settled>;
    let finished!: Promise<Settled>;
    await tx.run(async () => {
      await insert('root');
      finished = settle(tx.run({ propagation: 'NESTED' }, () => insert('nested-finished')));
      running = settle(
        tx.run({ propagation: 'NESTED' }, async () => {
          await insert('nested-half');
          halfDone.open();
          await stillRunning.opened;
          await insert('nested-rest');
        }),
      );
      await halfDone.opened; // the method returns while the second NESTED call is half done
    });
    stillRunning.open();
    const outcome = await running;
    expect(outcome.ok).toBe(false);
    expect((outcome as { error: TransactionEndedError }).error).toBeInstanceOf(TransactionEndedError);
    expect((outcome as { error: TransactionEndedError }).error.outcome).toBe('abandoned');
    expect((await finished).ok).toBe(true);
    expect(await names()).toEqual(['root', 'nested-finished']);
    await expectAllReleased(dataSource);
  });
});
