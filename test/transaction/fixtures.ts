import { Column, Entity, EventSubscriber, PrimaryGeneratedColumn, type EntitySubscriberInterface, type TransactionCommitEvent, type TransactionStartEvent, type TransactionRollbackEvent } from 'typeorm';

/** A row with a unique name, written by the transaction tests. */
@Entity('tx_item')
export class Item {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ unique: true })
  name!: string;

  @Column({ type: 'int', default: 0 })
  value!: number;
}

/** Counts TypeORM transaction events, to prove they fire once per transaction. */
@EventSubscriber()
export class TransactionEventCounter implements EntitySubscriberInterface {
  static starts = 0;
  static commits = 0;
  static rollbacks = 0;

  static reset(): void {
    TransactionEventCounter.starts = TransactionEventCounter.commits = TransactionEventCounter.rollbacks = 0;
  }

  afterTransactionStart(_event: TransactionStartEvent): void {
    TransactionEventCounter.starts++;
  }

  afterTransactionCommit(_event: TransactionCommitEvent): void {
    TransactionEventCounter.commits++;
  }

  afterTransactionRollback(_event: TransactionRollbackEvent): void {
    TransactionEventCounter.rollbacks++;
  }
}
