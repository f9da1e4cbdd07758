import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * The lease table (`txlock_leases`) as a TypeORM entity, for apps that create it with their own
 * migrations. Add it to the DataSource's `entities` (or generate a migration from it).
 */
@Entity('txlock_leases')
export class LeaseEntity {
  @PrimaryColumn({ type: 'text' })
  name!: string;

  @Column({ type: 'text' })
  holder!: string;

  /** Fencing token: strictly increases on every acquisition of this name. */
  @Column({ type: 'bigint' })
  token!: string;

  @Column({ name: 'locked_at', type: 'timestamptz' })
  lockedAt!: Date;

  @Column({ name: 'lock_until', type: 'timestamptz' })
  lockUntil!: Date;
}
