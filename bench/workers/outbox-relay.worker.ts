import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { OnOutboxEvent, TxLockModule, type OutboxEvent } from '../../lib/index.js';
import { serveRounds } from '../remote.js';

/** The bench's trivial same-database handler: one INSERT, with the database clock at its start. */
@Injectable()
class BenchHandler {
  constructor(private readonly dataSource: DataSource) {}

  @OnOutboxEvent('bench.event')
  async handle(_payload: unknown, event: OutboxEvent): Promise<void> {
    await this.dataSource.query('INSERT INTO bench_outbox_effects (event_id, handled_at) VALUES ($1, clock_timestamp())', [event.id]);
  }
}

/** One replica of an app whose relay delivers the bench's events (scenario 9): it runs until the bench closes it. */
serveRounds<{ concurrency?: number } | null>(async (url, input) => {
  const concurrency = input?.concurrency ?? 2;
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: concurrency + 3 } }),
      TxLockModule.forRoot({ outbox: { autoCreate: true, ...(input?.concurrency ? { concurrency } : {}) } }),
    ],
    providers: [BenchHandler],
  })
  class OutboxWorkerModule {}

  const app = await NestFactory.createApplicationContext(OutboxWorkerModule, { logger: ['error'] });
  return { ops: {}, close: () => app.close() };
});
