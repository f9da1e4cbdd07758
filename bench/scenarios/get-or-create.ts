import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { Column, DataSource, Entity, PrimaryGeneratedColumn } from 'typeorm';
import { AtomicService, TxLockModule } from '../../lib/index.js';
import { RoundTripLog } from '../../test/support/round-trips.js';
import type { BenchContext } from '../context.js';
import { localVariant } from '../harness.js';

export const SCENARIO_EXISTS = '4. getOrCreate, row exists';
const SCENARIO_NEW = '4. getOrCreate, new row';
const CALLERS = 8;

/** The naive baseline, for both cases. */
export const NAIVE_GET_OR_CREATE = 'naive findOne + save';
/** Ours. */
export const ATOMIC = 'AtomicService.getOrCreate';

@Entity('bench_session')
class BenchSession {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'text', unique: true })
  key!: string;

  @Column({ type: 'text', default: 'fresh' })
  state!: string;
}

/** Scenario 4: getOrCreate of an existing row (target: one round trip) and of a new one, vs the naive path. */
export async function getOrCreateScenario({ url, runner }: BenchContext): Promise<void> {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, entities: [BenchSession], synchronize: true, extra: { max: CALLERS } }),
      TxLockModule.forRoot({}),
    ],
  })
  class GetOrCreateBenchModule {}
  const app = await NestFactory.createApplicationContext(GetOrCreateBenchModule, { logger: ['error'] });
  try {
    const dataSource = app.get(DataSource);
    const atomic = app.get(AtomicService);
    const sessions = dataSource.getRepository(BenchSession);
    const log = RoundTripLog.attach(dataSource);
    await dataSource.query(`INSERT INTO bench_session (key) SELECT 'existing-' || g FROM generate_series(1, 1000) g`);
    const existing = () => `existing-${1 + Math.floor(Math.random() * 1000)}`;
    let fresh = 0;
    const newKey = (variant: string) => `${variant}-${++fresh}`;
    const naive = async (key: string) => (await sessions.findOneBy({ key })) ?? (await sessions.save(sessions.create({ key })));

    const variant = (scenario: string, name: string, op: () => Promise<unknown>) => localVariant({ scenario, variant: name, callers: CALLERS, log, op });
    await runner.group(
      [variant(SCENARIO_EXISTS, NAIVE_GET_OR_CREATE, () => naive(existing())), variant(SCENARIO_EXISTS, ATOMIC, () => atomic.getOrCreate(BenchSession, { key: existing() }))],
      NAIVE_GET_OR_CREATE,
    );
    await runner.group(
      [variant(SCENARIO_NEW, NAIVE_GET_OR_CREATE, () => naive(newKey('naive'))), variant(SCENARIO_NEW, ATOMIC, () => atomic.getOrCreate(BenchSession, { key: newKey('atomic') }))],
      NAIVE_GET_OR_CREATE,
    );
  } finally {
    await app.close();
  }
}
