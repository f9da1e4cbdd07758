import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** One computation of the expensive stats summary, to count how many times it was computed. */
@Entity('stats_computations')
export class StatsComputation {
  @PrimaryGeneratedColumn()
  id!: number;

  /** The summary's scope (its key); the demo uses a fresh one per run. */
  @Column()
  scope!: string;

  /** `single-flight` or `naive`. */
  @Column()
  mode!: string;

  @Column()
  replica!: string;

  @CreateDateColumn({ name: 'computed_at' })
  computedAt!: Date;
}
