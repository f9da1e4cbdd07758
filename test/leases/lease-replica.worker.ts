import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { AdvisoryLock, LeaseService, ScheduledLock, TxLockModule } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';
import { waitAtStartLine } from '../support/start-line.js';

/** Input of one replica. */
export interface ReplicaInput {
  mode: 'scheduled' | 'advisory-skip' | 'tokens' | 'hold';
  /** scheduled: ticks, period and the spread of each replica's start within a tick (tick 0 starts when the test says go). */
  ticks?: number;
  periodMs?: number;
  spreadMs?: number;
  /** tokens: how many acquisitions this replica makes. */
  acquisitions?: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Injectable()
class TickJob {
  constructor(private readonly dataSource: DataSource) {}

  // A 10 ms job, as in the issue: short enough that a plain "skip if locked" lock is long released
  // when a slower replica's timer fires.
  // Held 1.3 s from the start of a run: the test's ticks are 2.3 s apart (lease.service.spec.ts says why).
  @ScheduledLock('tick-job', { atMostForMs: 5_000, atLeastForMs: 1_300 })
  async run(tick: number): Promise<void> {
    await this.work(tick);
  }

  // The control: "skip while someone runs it" excludes only for the 10 ms the job runs.
  @AdvisoryLock({ key: 'tick-job', onLocked: 'skip' })
  async runUnderAdvisoryLock(tick: number): Promise<void> {
    await this.work(tick);
  }

  private async work(tick: number): Promise<void> {
    await this.dataSource.query('INSERT INTO job_runs (tick, pid) VALUES ($1, $2)', [tick, process.pid]);
    await sleep(10);
  }
}

workerMain<ReplicaInput, unknown>(async (input, { url }) => {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 3 } }),
      // Every replica asks to create the table at once: the bootstrap must not race.
      TxLockModule.forRoot({ leases: { autoCreate: true } }),
    ],
    providers: [TickJob],
  })
  class ReplicaModule {}

  const app = await NestFactory.createApplicationContext(ReplicaModule, { logger: ['error'] });
  try {
    const leases = app.get(LeaseService);
    if (input.mode === 'scheduled' || input.mode === 'advisory-skip') {
      const job = app.get(TickJob);
      const startAt = await waitAtStartLine(app.get(DataSource));
      for (let tick = 0; tick < input.ticks!; tick++) {
        const fireAt = startAt + tick * input.periodMs! + Math.random() * input.spreadMs!;
        await sleep(Math.max(0, fireAt - Date.now()));
        await (input.mode === 'scheduled' ? job.run(tick) : job.runUnderAdvisoryLock(tick));
      }
      return null;
    }
    if (input.mode === 'tokens') {
      const tokens: number[] = [];
      while (tokens.length < input.acquisitions!) {
        const lease = await leases.acquire('token-race', { atMostForMs: 10_000 });
        if (!lease) continue;
        tokens.push(lease.token);
        await leases.release(lease);
      }
      return tokens;
    }
    // hold: take the lease and never give it back; the test kills this process.
    // 4 s: the test's kill and its checks that the lease still lasts must fit before it expires, also on a loaded machine.
    const lease = await leases.acquire('held-by-victim', { atMostForMs: 4_000 });
    process.stdout.write(`holding ${lease?.token}\n`);
    await sleep(60_000);
    return null;
  } finally {
    await app.close();
  }
});
