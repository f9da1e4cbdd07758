import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * The named counters table (`txlock_counters`), as a TypeORM entity so apps can add it to their entities and
 * generate a migration for it (or pass `counters: { autoCreate: true }`). Read and change counters through
 * CounterService; TypeORM reads `value` (bigint) as a string.
 *
 * @example
 * TypeOrmModule.forRoot({ type: 'postgres', url, entities: [Post, TxLockCounter] })
 */
@Entity('txlock_counters')
export class TxLockCounter {
  /** The counter's name (at most MAX_COUNTER_KEY_LENGTH characters). */
  @PrimaryColumn({ type: 'text' })
  key!: string;

  /** The count, as TypeORM returns bigint: a decimal string. */
  @Column({ type: 'bigint', default: 0 })
  value!: string;

  /** End of the current window for windowed counters (database clock); null for counters without a window. */
  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt!: Date | null;
}
