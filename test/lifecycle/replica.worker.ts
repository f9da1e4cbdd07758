import 'reflect-metadata';
import { Controller, Headers, Injectable, Module, Post } from '@nestjs/common';
import { APP_FILTER, NestFactory } from '@nestjs/core';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { CounterService, LeaseService, ScheduledLock, Transactional, TxLockExceptionFilter, TxLockModule } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';

/** Input of one replica: `scheduled` runs a long @ScheduledLock job; `http` serves counter increments and transactions. */
export interface ShutdownReplicaInput {
  mode: 'scheduled' | 'http';
}

/** How long one run of the scheduled job lasts when nothing stops it: far longer than the test waits. */
export const JOB_MS = 30_000;
/** How often each replica's timer tries to run the job. */
export const TICK_MS = 250;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

@Injectable()
class HandoverJob {
  constructor(
    private readonly dataSource: DataSource,
    private readonly leases: LeaseService,
  ) {}

  // atMostForMs of a minute, as a job that may take long needs: without the shutdown handover, the replica that takes
  // over would wait for it. atLeastForMs is kept by a run that ends normally, not by one the shutdown cut short.
  @Interval(TICK_MS)
  @ScheduledLock('handover-job', { atMostForMs: 60_000, atLeastForMs: 10_000 })
  async run(): Promise<void> {
    const signal = this.leases.current()!.signal;
    // Entered and left on the database clock, so the two processes' runs compare on one clock.
    const [{ id }] = (await this.dataSource.query('INSERT INTO job_runs (pid, entered) VALUES ($1, clock_timestamp()) RETURNING id', [process.pid])) as { id: number }[];
    for (const until = Date.now() + JOB_MS; Date.now() < until && !signal.aborted; ) await sleep(20);
    await this.dataSource.query('UPDATE job_runs SET exited = clock_timestamp(), stopped = $2 WHERE id = $1', [id, signal.aborted]);
  }
}

@Controller()
class LoadController {
  constructor(
    private readonly counters: CounterService,
    private readonly dataSource: DataSource,
  ) {}

  // A counter increment on its own (autocommit).
  @Post('increment')
  async increment(): Promise<{ ok: true }> {
    await this.counters.increment('hits');
    return { ok: true };
  }

  // A transaction with a row and a counter, which takes a while: some are running whenever a replica is stopped.
  @Post('transfer')
  @Transactional()
  async transfer(@Headers('x-request-id') requestId: string): Promise<{ ok: true }> {
    await this.dataSource.query('INSERT INTO ledger (request_id, pid) VALUES ($1, $2)', [requestId, process.pid]);
    await this.counters.increment('transfers');
    await this.dataSource.query('SELECT pg_sleep(0.03)');
    return { ok: true };
  }
}

workerMain<ShutdownReplicaInput, unknown>(async (input, { url }) => {
  const http = input.mode === 'http';
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 6 } }),
      TxLockModule.forRoot({ autoCreate: true, shutdown: { graceMs: 5_000 } }),
      ...(http ? [] : [ScheduleModule.forRoot()]),
    ],
    controllers: http ? [LoadController] : [],
    providers: http ? [{ provide: APP_FILTER, useClass: TxLockExceptionFilter }] : [HandoverJob],
  })
  class ReplicaModule {}

  // SIGTERM closes the app (Nest then re-raises the signal, so the process ends with it).
  if (http) {
    const app = await NestFactory.create(ReplicaModule, { logger: ['error'] });
    app.enableShutdownHooks();
    await app.listen(0, '127.0.0.1');
    const address = app.getHttpServer().address() as { port: number };
    process.stdout.write(`listening ${address.port}\n`);
  } else {
    const app = await NestFactory.createApplicationContext(ReplicaModule, { logger: ['error'] });
    app.enableShutdownHooks();
    process.stdout.write('listening\n');
  }
  await new Promise(() => undefined); // until the signal
  return null;
});
