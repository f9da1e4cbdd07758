import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Column, Entity, EventSubscriber, PrimaryGeneratedColumn, type EntitySubscriberInterface, type TransactionCommitEvent, type TransactionRollbackEvent } from 'typeorm';
import { TransactionHost } from '../../lib/index.js';
import { expectAllReleased } from '../support/database.js';
import { useTestApp } from '../support/test-app.js';

@Entity('subscribed_order')
class SubscribedOrder {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  label!: string;
}

@Entity('subscribed_audit')
class SubscribedAudit {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text' })
  note!: string;
}

/** A subscriber that queries after the end, as subscribers written for plain TypeORM do (an audit, a read model). */
@EventSubscriber()
class AfterEndAudit implements EntitySubscriberInterface {
  static seen: string[] = [];

  async afterTransactionCommit(event: TransactionCommitEvent): Promise<void> {
    const [{ n }] = (await event.manager.query('SELECT count(*)::int AS n FROM subscribed_order')) as { n: number }[];
    await event.queryRunner.query(`INSERT INTO subscribed_audit (note) VALUES ($1)`, [`committed, ${n} orders`]);
    AfterEndAudit.seen.push(`commit: ${n}`);
  }

  async afterTransactionRollback(event: TransactionRollbackEvent): Promise<void> {
    const [{ n }] = (await event.manager.query('SELECT count(*)::int AS n FROM subscribed_order')) as { n: number }[];
    AfterEndAudit.seen.push(`rollback: ${n}`);
  }
}

// A TypeORM subscriber's afterTransactionCommit / afterTransactionRollback may query, as with plain TypeORM: its
// statements run after the end, in autocommit on the transaction's connection.
describe("TypeORM subscribers' after-commit and after-rollback queries", () => {
  const testApp = useTestApp({ entities: [SubscribedOrder, SubscribedAudit], subscribers: [AfterEndAudit], poolSize: 3 });
  let tx: TransactionHost;

  beforeAll(() => {
    tx = testApp.get(TransactionHost);
  });
  beforeEach(() => {
    AfterEndAudit.seen = [];
  });

  it('afterTransactionCommit sees the committed rows and its own write is kept', async () => {
    await tx.run(() => testApp.dataSource.getRepository(SubscribedOrder).insert({ label: 'a' }));
    expect(AfterEndAudit.seen).toEqual(['commit: 1']);
    // The audit row's own insert ran in autocommit (after the end), so its commit is what is counted here.
    const notes = (await testApp.dataSource.query('SELECT note FROM subscribed_audit')) as { note: string }[];
    expect(notes.map((row) => row.note)).toContain('committed, 1 orders');
    await expectAllReleased(testApp.dataSource);
  });

  it('afterTransactionRollback sees the rows as they are after the rollback', async () => {
    await expect(
      tx.run(async () => {
        await testApp.dataSource.getRepository(SubscribedOrder).insert({ label: 'b' });
        throw new Error('undone');
      }),
    ).rejects.toThrow('undone');
    expect(AfterEndAudit.seen).toEqual(['rollback: 1']);
    await expectAllReleased(testApp.dataSource);
  });
});
