import { Inject, Injectable } from '@nestjs/common';
import { Cron, CronExpression } from '@nestjs/schedule';
import { AdvisoryLock, InjectTxRepository, TransactionHost } from 'nestjs-txlock';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Repository } from 'typeorm';
import { today } from '../common/today.js';
import { SAMPLE_OPTIONS, type SampleOptions } from '../sample-options.js';
import { StatsRun } from './stats-run.entity.js';

/** How long the job's work takes: the window in which another replica's tick lands (well above clock and scheduling jitter). */
const JOB_WORK_MS = 500;

/** The nightly stats job. Every replica schedules it; one run per tick is what we want. */
@Injectable()
export class StatsService {
  constructor(
    @InjectTxRepository(StatsRun) private readonly statsRuns: Repository<StatsRun>,
    private readonly tx: TransactionHost,
    @Inject(SAMPLE_OPTIONS) private readonly options: SampleOptions,
  ) {}

  /** Every replica's scheduler fires this at 03:00; the lock below lets one of them do the work. */
  @Cron(CronExpression.EVERY_DAY_AT_3AM, { name: 'nightly-stats' })
  async nightly(): Promise<void> {
    await this.runNightly(today());
  }

  /**
   * The job body under one constant lock key (seed 002's constant `key_maker`): the first replica to
   * fire takes it, the others find it taken and skip (undefined) instead of queueing up to run the job
   * again. Returns whether this replica ran it. Skipping only covers replicas that fire while the run
   * is going on; for "once per day" across skewed clocks, use @ScheduledLock (a lease) instead.
   */
  @AdvisoryLock({ key: 'stats:nightly', onLocked: 'skip' })
  async runNightly(tick: string): Promise<StatsRun | undefined> {
    return this.collect(tick, 'locked');
  }

  /** The control: the same job with no lock, so every replica runs it. */
  runNightlyUnlocked(tick: string): Promise<StatsRun> {
    return this.collect(tick, 'unlocked');
  }

  /** The runs of one tick (or all), oldest first. */
  runs(tick?: string): Promise<StatsRun[]> {
    return this.statsRuns.find({ where: tick ? { tick } : {}, order: { id: 'ASC' } });
  }

  private async collect(tick: string, mode: 'locked' | 'unlocked'): Promise<StatsRun> {
    const [counts] = (await this.tx.manager.query(
      'SELECT (SELECT count(*) FROM posts)::int AS posts, (SELECT count(*) FROM likes)::int AS likes',
    )) as [{ posts: number; likes: number }];
    await sleep(JOB_WORK_MS);
    return this.statsRuns.save(this.statsRuns.create({ tick, mode, replica: this.options.replica, ...counts }));
  }
}
