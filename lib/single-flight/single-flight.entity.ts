import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * The single-flight table (`txlock_single_flight`) as a TypeORM entity, for apps that create it with their
 * own migrations. Add it to the DataSource's `entities` (or generate a migration from it).
 */
@Entity('txlock_single_flight')
export class SingleFlightEntity {
  @PrimaryColumn({ type: 'text' })
  key!: string;

  @Column({ type: 'json' })
  value!: unknown;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt!: Date;
}
