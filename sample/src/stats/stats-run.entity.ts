import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from 'typeorm';

/** One run of the nightly stats job: which tick, which replica, and what it counted. */
@Entity('stats_runs')
export class StatsRun {
  @PrimaryGeneratedColumn()
  id!: number;

  /** The schedule slot the run belongs to (the day, for the nightly cron). Two runs of one tick = a double run. */
  @Column()
  tick!: string;

  /** `leased` (the @ScheduledLock job), `advisory` (the @AdvisoryLock skip control) or `unlocked` (no lock). */
  @Column()
  mode!: string;

  @Column()
  replica!: string;

  @Column({ type: 'integer' })
  posts!: number;

  @Column({ type: 'integer' })
  likes!: number;

  @CreateDateColumn({ name: 'started_at' })
  startedAt!: Date;
}
