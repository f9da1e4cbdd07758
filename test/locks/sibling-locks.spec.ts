import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Column, DataSource, Entity, PrimaryColumn, type Repository } from 'typeorm';
import {
  AdvisoryLock,
  InjectTxRepository,
  LockNotAcquiredError,
  LockService,
  LockTimeoutError,
  Transactional,
  TransactionHost,
} from '../../lib/index.js';
import { expectAllReleased } from '../support/database.js';
import { gate } from '../support/gate.js';
import { useTestApp } from '../support/test-app.js';

@Entity('sibling_account')
class Account {
  @PrimaryColumn()
  id!: number;

  @Column({ type: 'int', default: 0 })
  points!: number;
}

const pause = () => new Promise((resolve) => setTimeout(resolve, 5));

/** Read-modify-write awards, the race an advisory lock exists to prevent, under both decorator orders. */
@Injectable()
class Points {
  constructor(@InjectTxRepository(Account) readonly accounts: Repository<Account>) {}

  private async award(id: number, points: number): Promise<void> {
    const account = await this.accounts.findOneByOrFail({ id });
    await pause(); // let a sibling read the same old value if it can
    account.points += points;
    await this.accounts.save(account);
  }

  @AdvisoryLock({ key: (id: number) => ['points', id] })
  @Transactional()
  lockOverTransaction(id: number, points: number) {
    return this.award(id, points);
  }

  @Transactional()
  @AdvisoryLock({ key: (id: number) => ['points', id] })
  transactionOverLock(id: number, points: number) {
    return this.award(id, points);
  }

  @Transactional({ propagation: 'NESTED' })
  @AdvisoryLock({ key: (id: number) => ['points', id] })
  nestedOverLock(id: number, points: number) {
    return this.award(id, points);
  }

  /** Re-enters its own key: must not wait for itself. */
  @AdvisoryLock({ key: (id: number) => ['points', id] })
  async bonus(id: number): Promise<void> {
    await this.transactionOverLock(id, 1);
    await this.lockOverTransaction(id, 1);
  }

  /** Re-enters its key from two branches at once: the branches must still take turns. */
  @AdvisoryLock({ key: (id: number) => ['points', id] })
  async twinBonus(id: number): Promise<void> {
    await Promise.all([this.transactionOverLock(id, 10), this.lockOverTransaction(id, 10)]);
  }
}

// PostgreSQL grants an advisory lock again to the backend that holds it, so without help two branches of one
// transaction (Promise.all) both enter the critical section. Within one transaction, concurrent branches on
// the same key exclude each other; the same call chain re-entering its key still runs.
describe('advisory locks taken by concurrent branches of one transaction', () => {
  const testApp = useTestApp({ entities: [Account], providers: [Points], poolSize: 6 });
  let points: Points;
  let tx: TransactionHost;
  let locks: LockService;
  let dataSource: DataSource;
  const balance = async () => ((await dataSource.query('SELECT points FROM sibling_account WHERE id = 1')) as { points: number }[])[0]!.points;

  beforeAll(() => {
    points = testApp.get(Points);
    tx = testApp.get(TransactionHost);
    locks = testApp.get(LockService);
    dataSource = testApp.dataSource;
  });
  beforeEach(async () => {
    await dataSource.query('DELETE FROM sibling_account');
    await dataSource.query('INSERT INTO sibling_account (id, points) VALUES (1, 0)');
  });

  for (const method of ['lockOverTransaction', 'transactionOverLock', 'nestedOverLock'] as const) {
    it(`5 awards of 10 with ${method} in Promise.all inside one transaction give exactly 50`, async () => {
      await tx.run(() => Promise.all(Array.from({ length: 5 }, () => points[method](1, 10))));
      expect(await balance()).toBe(50);
      await expectAllReleased(dataSource);
    });
  }

  it('awards from concurrent branches and from other transactions at once are all counted', async () => {
    await Promise.all([
      tx.run(() => Promise.all(Array.from({ length: 4 }, () => points.transactionOverLock(1, 1)))),
      tx.run(() => Promise.all(Array.from({ length: 4 }, () => points.lockOverTransaction(1, 1)))),
      ...Array.from({ length: 4 }, () => points.transactionOverLock(1, 1)),
    ]);
    expect(await balance()).toBe(12);
  });

  it('a locked method calling methods locked on the same key runs without deadlock, alone and inside a transaction', async () => {
    await points.bonus(1);
    await tx.run(() => points.bonus(1));
    await tx.run(() => Promise.all([points.bonus(1), points.bonus(1)]));
    expect(await balance()).toBe(8);
  });

  it("a call chain's own branches that re-enter its key still take turns", async () => {
    await points.twinBonus(1);
    await tx.run(() => Promise.all([points.twinBonus(1), points.transactionOverLock(1, 5)]));
    expect(await balance()).toBe(45);
  });

  it('a sibling branch with nowait or timeoutMs fails with the named error instead of entering', async () => {
    const release = gate();
    const entered = gate();
    const outcome = await tx.run(async () => {
      const holder = locks.withAdvisoryLock('sibling-busy', async () => {
        entered.open();
        await release.opened;
      });
      await entered.opened;
      const tried = await locks.tryAdvisoryLock('sibling-busy', async () => 'ran');
      const nowait = await locks.withAdvisoryLock('sibling-busy', async () => 'ran', { nowait: true }).catch((error: unknown) => error);
      const timedOut = await locks.withAdvisoryLock('sibling-busy', async () => 'ran', { timeoutMs: 30 }).catch((error: unknown) => error);
      release.open();
      await holder;
      const after = await locks.withAdvisoryLock('sibling-busy', async () => 'ran', { nowait: true });
      return { tried, nowait, timedOut, after };
    });
    expect(outcome.tried).toEqual({ ran: false, reason: 'locked' });
    expect(outcome.nowait).toBeInstanceOf(LockNotAcquiredError);
    expect(outcome.timedOut).toBeInstanceOf(LockTimeoutError);
    expect(outcome.after).toBe('ran');
  });

  it('shared holders of one transaction run together; an exclusive sibling waits for them', async () => {
    let inside = 0;
    let sharedTogether = 0;
    let exclusiveSawOthers = -1;
    const visit = async (shared: boolean) => {
      inside++;
      if (shared) sharedTogether = Math.max(sharedTogether, inside);
      else exclusiveSawOthers = Math.max(exclusiveSawOthers, inside - 1);
      await pause();
      inside--;
    };
    await tx.run(() =>
      Promise.all([
        locks.withAdvisoryLock('shared-key', () => visit(true), { shared: true }),
        locks.withAdvisoryLock('shared-key', () => visit(true), { shared: true }),
        locks.withAdvisoryLock('shared-key', () => visit(false)),
        locks.withAdvisoryLock('shared-key', () => visit(true), { shared: true }),
      ]),
    );
    expect(sharedTogether).toBeGreaterThanOrEqual(2);
    expect(exclusiveSawOthers).toBe(0);
  });

  it('session-scope locks: concurrent branches of one session call on the same key take turns', async () => {
    let inside = 0;
    let most = 0;
    const critical = async () => {
      most = Math.max(most, ++inside);
      await pause();
      inside--;
    };
    await locks.withAdvisoryLock(
      'session-outer',
      () => Promise.all(Array.from({ length: 4 }, () => locks.withAdvisoryLock('session-inner', critical, { scope: 'session' }))),
      { scope: 'session' },
    );
    expect(most).toBe(1);
    await expectAllReleased(dataSource);
  });
});
