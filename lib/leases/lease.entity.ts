import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * The lease table (`txlock_leases`) as a TypeORM entity, for apps that create it with their own
 * migrations. Add it to the DataSource's `entities` (or generate a migration from it).
 */
@Entity('txlock_leases')
export class LeaseEntity {
  /** The lease's name, as given to acquire() or @ScheduledLock(). */
  @PrimaryColumn({ type: 'text' })
  name!: string;

  /** Who took it last: `<hostname>:<pid>:<instance>` unless `leases.holderId` says otherwise. */
  @Column({ type: 'text' })
  holder!: string;

  /** Fencing token: strictly increases on every acquisition of this name. */
  @Column({ type: 'bigint' })
  token!: string;

  /** When it was last taken (database clock). */
  @Column({ name: 'locked_at', type: 'timestamptz' })
  lockedAt!: Date;

  /** Taken until then (database clock); free once it has passed. */
  @Column({ name: 'lock_until', type: 'timestamptz' })
  lockUntil!: Date;
}
