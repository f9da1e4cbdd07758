import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AdvisoryLock, LockService, TxLockModule } from '../../lib/index.js';
import { OverlapDetector } from '../support/overlap-detector.js';
import { workerMain } from '../support/processes.js';

/** Input of one worker process. */
export interface CriticalSectionInput {
  /** locked/unlocked: enter the section `entries` times (two loops at once); cron: fire `ticks` times; hold: take locks and wait to be killed. */
  mode: 'locked' | 'unlocked' | 'cron' | 'hold';
  entries?: number;
  ticks?: number;
  /** The label the overlap detector records under. */
  label?: string;
}

let detector: OverlapDetector;

@Injectable()
class CriticalSection {
  constructor(private readonly dataSource: DataSource) {}

  @AdvisoryLock({ key: 'critical-section' })
  async locked(label: string): Promise<void> {
    await detector.visit(label, () => this.work());
  }

  async unlocked(label: string): Promise<void> {
    await detector.visit(label, () => this.work());
  }

  // A cron-style job on N replicas: the one that gets the lock runs, the others skip this tick. The runner
  // stays in the section until every replica has tried, so "ran once" does not depend on timing.
  @AdvisoryLock({ key: 'cron-job', onLocked: 'skip' })
  async cron(tick: number): Promise<string> {
    await this.dataSource.query(`INSERT INTO cron_attempts (tick, outcome, pid) VALUES ($1, 'ran', $2)`, [tick, process.pid]);
    await this.until(tick, ['ran', 'skipped'], 4);
    return 'ran';
  }

  /** Waits (at most 20 s, so a bug fails instead of hanging) until `count` rows of tick have one of `outcomes`. */
  async until(tick: number, outcomes: string[], count: number): Promise<void> {
    for (const deadline = Date.now() + 20_000; Date.now() < deadline; ) {
      const [{ n }] = await this.dataSource.query('SELECT count(*)::int AS n FROM cron_attempts WHERE tick = $1 AND outcome = ANY($2)', [tick, outcomes]);
      if (n >= count) return;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    throw new Error(`tick ${tick}: fewer than ${count} rows of ${outcomes.join('/')}`);
  }

  private async work(): Promise<void> {
    // Something that takes a few database round trips, so unprotected visits do meet.
    await this.dataSource.query('SELECT pg_sleep(0.001)');
  }
}

workerMain<CriticalSectionInput, unknown>(async (input, { url }) => {
  @Module({
    imports: [TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 4 } }), TxLockModule.forRoot({})],
    providers: [CriticalSection],
  })
  class WorkerModule {}

  const app = await NestFactory.createApplicationContext(WorkerModule, { logger: ['error'] });
  detector = await OverlapDetector.open(url, 2);
  try {
    const section = app.get(CriticalSection);
    if (input.mode === 'locked' || input.mode === 'unlocked') {
      const loop = async () => {
        for (let i = 0; i < input.entries! / 2; i++) await section[input.mode as 'locked' | 'unlocked'](input.label!);
      };
      await Promise.all([loop(), loop()]);
      return null;
    }
    if (input.mode === 'cron') {
      const dataSource = app.get(DataSource);
      let ran = 0;
      for (let tick = 0; tick < input.ticks!; tick++) {
        const outcome = (await section.cron(tick)) === 'ran' ? 'committed' : 'skipped';
        if (outcome === 'committed') ran++;
        await dataSource.query('INSERT INTO cron_attempts (tick, outcome, pid) VALUES ($1, $2, $3)', [tick, outcome, process.pid]);
        // Every replica fires each tick, and the runner has committed (released the lock), before anyone moves on.
        await section.until(tick, ['committed'], 1);
      }
      return ran;
    }
    // hold: one transaction-scope and one session-scope lock, never released; the test SIGKILLs this process.
    const locks = app.get(LockService);
    const forever = () => new Promise<never>(() => undefined);
    void locks.withAdvisoryLock('held-in-transaction', forever);
    void locks.withAdvisoryLock('held-in-session', forever, { scope: 'session' });
    return await forever();
  } finally {
    await detector.close();
    await app.close();
  }
});
