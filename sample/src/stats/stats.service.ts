import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { Cron, CronExpression } from '@nestjs/schedule';
import { AdvisoryLock, ScheduledLock, SingleFlight, TransactionHost } from 'nestjs-txlock';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Repository } from 'typeorm';
import { today } from '../common/today.js';
import { SAMPLE_OPTIONS, type SampleOptions } from '../sample-options.js';
import { StatsComputation } from './stats-computation.entity.js';
import { StatsRun } from './stats-run.entity.js';

/** The nightly job's work: short, as most jobs are, which is what makes "skip if locked" run it twice. */
const JOB_WORK_MS = 10;
/** The expensive summary: long enough that many requests arrive while it is being computed. */
const SUMMARY_WORK_MS = 300;

/** The stats of the sample: a nightly job every replica schedules, and an expensive summary endpoint. */
@Injectable()
export class StatsService {
  constructor(
    @InjectRepository(StatsRun) private readonly statsRuns: Repository<StatsRun>,
    @InjectRepository(StatsComputation) private readonly computations: Repository<StatsComputation>,
    private readonly tx: TransactionHost,
    @Inject(SAMPLE_OPTIONS) private readonly options: SampleOptions,
  ) {}

  /** Every replica's scheduler fires this at 03:00; the lease below lets one of them do the work. */
  @Cron(CronExpression.EVERY_DAY_AT_3AM, { name: 'nightly-stats' })
  async nightly(): Promise<void> {
    await this.runNightly(today());
  }

  /**
   * The job body under a lease: the first replica to fire takes `stats:nightly` and keeps it for at
   * least 1 s, so replicas whose timers fire up to 1 s later (clock skew, a slow start, a GC pause) skip
   * the tick; if the runner dies, the lease frees itself after 10 minutes. A real nightly job would keep
   * it longer (a minute or more); 1 s keeps the demo's ticks short. Returns undefined when skipped.
   */
  @ScheduledLock('stats:nightly', { atMostForMs: 10 * 60_000, atLeastForMs: 1_000 })
  async runNightly(tick: string): Promise<StatsRun | undefined> {
    return this.collect(tick, 'leased');
  }

  /**
   * The same job under `@AdvisoryLock({ onLocked: 'skip' })` (seed 002's constant key): the others skip
   * only while the run is going on. Kept as the reason leases exist: a 10 ms job is long finished when a
   * replica whose timer fires 100 ms later arrives, so it runs the tick again.
   */
  @AdvisoryLock({ key: 'stats:nightly', onLocked: 'skip' })
  async runNightlyAdvisory(tick: string): Promise<StatsRun | undefined> {
    return this.collect(tick, 'advisory');
  }

  /** The control: the same job with no lock, so every replica runs it. */
  runNightlyUnlocked(tick: string): Promise<StatsRun> {
    return this.collect(tick, 'unlocked');
  }

  /** The runs of one tick (or all), oldest first. */
  runs(tick?: string): Promise<StatsRun[]> {
    return this.statsRuns.find({ where: tick ? { tick } : {}, order: { id: 'ASC' } });
  }

  /**
   * An expensive summary (seed 001): computed once across all replicas however many requests ask at
   * once, then served from the shared store for 5 s. Each computation is recorded, to count them.
   */
  @SingleFlight({ ttlMs: 5_000, key: (scope: string) => ['stats:summary', scope] })
  async summary(scope: string): Promise<{ scope: string; posts: number; likes: number }> {
    return this.computeSummary(scope, 'single-flight');
  }

  /** The naive twin: every request computes it again. */
  summaryUnsafe(scope: string): Promise<{ scope: string; posts: number; likes: number }> {
    return this.computeSummary(scope, 'naive');
  }

  /** How many times the summary of `scope` was computed. */
  computationsOf(scope: string): Promise<number> {
    return this.computations.countBy({ scope });
  }

  private async computeSummary(scope: string, mode: string): Promise<{ scope: string; posts: number; likes: number }> {
    await this.computations.insert({ scope, mode, replica: this.options.replica });
    const counts = await this.counts();
    await sleep(SUMMARY_WORK_MS);
    return { scope, ...counts };
  }

  private async collect(tick: string, mode: 'leased' | 'advisory' | 'unlocked'): Promise<StatsRun> {
    const counts = await this.counts();
    await sleep(JOB_WORK_MS);
    return this.statsRuns.save(this.statsRuns.create({ tick, mode, replica: this.options.replica, ...counts }));
  }

  private async counts(): Promise<{ posts: number; likes: number }> {
    const [counts] = (await this.tx.manager.query(
      'SELECT (SELECT count(*) FROM posts)::int AS posts, (SELECT count(*) FROM likes)::int AS likes',
    )) as [{ posts: number; likes: number }];
    return counts;
  }
}
