import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AdvisoryLock, Transactional, TransactionHost, TxLockModule } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';
import { waitAtStartLine } from '../support/start-line.js';
import { DataSource } from 'typeorm';

/** Input: how many increments; the victim stalls inside its transaction, holding the lock, at increment `stallAt`. */
export interface LockedIncrementsInput {
  increments: number;
  stallAt?: number;
}

@Injectable()
class Points {
  constructor(private readonly tx: TransactionHost) {}

  /** Seed 003's read-modify-write, made safe: the success record commits with the increment or not at all. */
  @AdvisoryLock({ key: 'points:user-1' })
  @Transactional()
  async award(worker: number, stall: boolean): Promise<void> {
    const [{ points }] = await this.tx.manager.query('SELECT points FROM player WHERE id = 1');
    await this.tx.manager.query('UPDATE player SET points = $1 WHERE id = 1', [points + 1]);
    await this.tx.manager.query('INSERT INTO awarded (worker) VALUES ($1)', [worker]);
    if (stall) {
      process.stdout.write('holding\n'); // the test SIGKILLs this process now: lock held, transaction open
      await new Promise((resolve) => setTimeout(resolve, 60_000));
    }
  }
}

workerMain<LockedIncrementsInput, number>(async (input, { url, index }) => {
  @Module({
    imports: [TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 2 } }), TxLockModule.forRoot({})],
    providers: [Points],
  })
  class PointsModule {}
  const app = await NestFactory.createApplicationContext(PointsModule, { logger: ['error'] });
  try {
    await waitAtStartLine(app.get(DataSource));
    const points = app.get(Points);
    for (let i = 1; i <= input.increments; i++) await points.award(index, i === input.stallAt);
    return input.increments;
  } finally {
    await app.close();
  }
});
