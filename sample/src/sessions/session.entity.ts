import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, Unique } from 'typeorm';

/** The columns of a session; the two tables below differ only in the unique constraint. */
abstract class SessionColumns {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ name: 'client_key' })
  clientKey!: string;

  @CreateDateColumn({ name: 'created_at' })
  createdAt!: Date;
}

/** One session per client key. The unique constraint is what lets AtomicService.getOrCreate be exact. */
@Entity('sessions')
@Unique('sessions_client_key_key', ['clientKey'])
export class Session extends SessionColumns {}

/**
 * The table as the naive app of seed 004 had it: nothing stops a second row for one client key.
 * Only the /unsafe endpoint writes here.
 */
@Entity('sessions_without_unique')
export class UnconstrainedSession extends SessionColumns {}
