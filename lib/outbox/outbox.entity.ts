import { Column, Entity, Index, PrimaryGeneratedColumn } from 'typeorm';

/**
 * The outbox table (`txlock_outbox`) as a TypeORM entity, for apps that create the library's tables from entities
 * (synchronize, or migrations generated from them). Add it to the DataSource's `entities`; TxLockOutboxMigration and
 * `autoCreate` make the same table.
 */
@Entity('txlock_outbox')
@Index('txlock_outbox_pending', ['id'], { where: `"status" = 'pending'` })
@Index('txlock_outbox_key', ['key', 'id'], { where: `"status" = 'pending' AND "key" IS NOT NULL` })
@Index('txlock_outbox_delivered', ['deliveredAt'], { where: `"status" = 'delivered'` })
export class OutboxEventEntity {
  /** Ids grow with each event; a key's ids in the order its publishing transactions committed. */
  @PrimaryGeneratedColumn({ type: 'bigint' })
  id!: string;

  @Column({ type: 'text' })
  topic!: string;

  /** The ordering key, or null. */
  @Column({ type: 'text', nullable: true })
  key!: string | null;

  @Column({ type: 'jsonb' })
  payload!: unknown;

  /** `pending`, `delivered` or `failed` (parked after its last attempt). */
  @Column({ type: 'text', default: 'pending' })
  status!: string;

  /** Deliveries tried (failed ones, plus the one that succeeded). */
  @Column({ type: 'integer', default: 0 })
  attempts!: number;

  @Column({ name: 'created_at', type: 'timestamptz', default: () => 'clock_timestamp()' })
  createdAt!: Date;

  /** Not delivered before then: a publish delay, or a retry's backoff. */
  @Column({ name: 'available_at', type: 'timestamptz', default: () => 'clock_timestamp()' })
  availableAt!: Date;

  @Column({ name: 'delivered_at', type: 'timestamptz', nullable: true })
  deliveredAt!: Date | null;

  /** The last failed attempt's error. */
  @Column({ name: 'last_error', type: 'text', nullable: true })
  lastError!: string | null;

  /** The W3C traceparent of the span that published it, when telemetry was on. */
  @Column({ name: 'trace_parent', type: 'text', nullable: true })
  traceParent!: string | null;
}
