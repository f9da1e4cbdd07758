import { Column, Entity, PrimaryColumn } from 'typeorm';

/**
 * The single-flight table (`txlock_single_flight`) as a TypeORM entity, for apps that create it with their
 * own migrations. Add it to the DataSource's `entities` (or generate a migration from it).
 */
@Entity('txlock_single_flight')
export class SingleFlightEntity {
  /** The key as JSON `[namespace, key]`. */
  @PrimaryColumn({ type: 'text' })
  key!: string;

  /** The shared value, as the computing process serialised it (json keeps the text as is). */
  @Column({ type: 'json' })
  value!: unknown;

  /** Served until then (database clock); deleted when read after it, or by the bounded sweep. */
  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt!: Date;
}
