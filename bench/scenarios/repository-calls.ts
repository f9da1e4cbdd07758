import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { getDataSourceToken, InjectRepository, TypeOrmModule } from '@nestjs/typeorm';
import { Column, Entity, PrimaryGeneratedColumn, type DataSource, type Repository } from 'typeorm';
import { TxLockModule } from '../../lib/index.js';
import { RoundTripLog } from '../../test/support/round-trips.js';
import type { BenchContext } from '../context.js';
import { localVariant } from '../harness.js';

export const SCENARIO_REPOSITORY = '7. repository call, no transaction';
const CALLERS = 8;
const ROWS = 1000;

/** The baseline: a DataSource nestjs-txlock does not serve, as TypeORM behaves without the library. */
export const PLAIN_REPOSITORY = 'plain TypeORM repository';
/** The same call through a DataSource the module serves (every call joins the current transaction). */
export const JOINED_REPOSITORY = '@InjectRepository, DataSource joined';
const UNJOINED_REPOSITORY = '@InjectRepository, joinDataSource: false';

@Entity('bench_account')
class BenchAccount {
  @PrimaryGeneratedColumn()
  id!: number;

  @Column({ type: 'int', default: 0 })
  balance!: number;
}

const DATA_SOURCES = { joined: 'default', unjoined: 'unjoined', plain: 'plain' } as const;

@Injectable()
class Repositories {
  constructor(
    @InjectRepository(BenchAccount) readonly joined: Repository<BenchAccount>,
    @InjectRepository(BenchAccount, DATA_SOURCES.unjoined) readonly unjoined: Repository<BenchAccount>,
    @InjectRepository(BenchAccount, DATA_SOURCES.plain) readonly plain: Repository<BenchAccount>,
  ) {}
}

/**
 * Scenario 7: what joining costs a call made outside any transaction. One database, three TypeORM DataSources
 * on it: one the module serves (its calls are routed to the current transaction, none here), one registered with
 * `joinDataSource: false`, and one the module does not serve. Each variant reads one row by primary key.
 */
export async function repositoryScenario({ url, runner }: BenchContext): Promise<void> {
  const connection = (name?: string) =>
    TypeOrmModule.forRoot({ name, type: 'postgres', url, entities: [BenchAccount], synchronize: name === undefined, extra: { max: CALLERS } });
  @Module({
    imports: [
      connection(),
      connection(DATA_SOURCES.unjoined),
      connection(DATA_SOURCES.plain),
      TypeOrmModule.forFeature([BenchAccount]),
      TypeOrmModule.forFeature([BenchAccount], DATA_SOURCES.unjoined),
      TypeOrmModule.forFeature([BenchAccount], DATA_SOURCES.plain),
      TxLockModule.forRoot(),
      TxLockModule.forRoot({ dataSource: DATA_SOURCES.unjoined, joinDataSource: false }),
    ],
    providers: [Repositories],
  })
  class RepositoryBenchModule {}
  const app = await NestFactory.createApplicationContext(RepositoryBenchModule, { logger: ['error'] });
  try {
    const repositories = app.get(Repositories);
    const dataSource = (name: string) => app.get<DataSource>(getDataSourceToken(name === 'default' ? undefined : name));
    await dataSource(DATA_SOURCES.joined).query(`INSERT INTO bench_account (balance) SELECT g FROM generate_series(1, ${ROWS}) g`);
    const id = () => 1 + Math.floor(Math.random() * ROWS);
    const variant = (name: string, repository: Repository<BenchAccount>, source: string) =>
      localVariant({ scenario: SCENARIO_REPOSITORY, variant: name, callers: CALLERS, log: RoundTripLog.attach(dataSource(source)), op: () => repository.findOneBy({ id: id() }) });
    await runner.group(
      [
        variant(PLAIN_REPOSITORY, repositories.plain, DATA_SOURCES.plain),
        variant(JOINED_REPOSITORY, repositories.joined, DATA_SOURCES.joined),
        variant(UNJOINED_REPOSITORY, repositories.unjoined, DATA_SOURCES.unjoined),
      ],
      PLAIN_REPOSITORY,
    );
  } finally {
    await app.close();
  }
}
