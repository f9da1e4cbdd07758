import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional, Transactional as ClsTransactional, TransactionHost as ClsTransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { Transactional, TransactionHost, TxLockModule } from '../../lib/index.js';
import { RoundTripLog } from '../../test/support/round-trips.js';
import { measure, type BenchResult, type BenchSettings } from '../harness.js';

const SCENARIO = '1. transaction, 3 statements';
const CALLERS = 8;
const ROWS = 1_000;
const STATEMENTS = ['SELECT n FROM bench_row WHERE id = $1', 'SELECT n + 1 AS next FROM bench_row WHERE id = $1', 'SELECT count(*) FROM bench_row WHERE id = $1'];

/** The baseline every transaction variant is compared with. */
export const HAND_WRITTEN = 'TypeORM query runner, hand-written';

@Injectable()
class OurTransactions {
  constructor(private readonly tx: TransactionHost) {}

  @Transactional()
  async plain(id: number): Promise<void> {
    for (const sql of STATEMENTS) await this.tx.manager.query(sql, [id]);
  }

  @Transactional({ isolation: 'REPEATABLE READ', readOnly: true })
  async withOptions(id: number): Promise<void> {
    for (const sql of STATEMENTS) await this.tx.manager.query(sql, [id]);
  }
}

@Injectable()
class ClsTransactions {
  constructor(private readonly tx: ClsTransactionHost<TransactionalAdapterTypeOrm>) {}

  @ClsTransactional()
  async plain(id: number): Promise<void> {
    for (const sql of STATEMENTS) await this.tx.tx.query(sql, [id]);
  }
}

/** Scenario 1 (and 5, the peers): the same three statements in a transaction, written each way. */
export async function transactionScenario(url: string, settings: BenchSettings): Promise<BenchResult[]> {
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: CALLERS } }),
      TxLockModule.forRoot({}),
      ClsModule.forRoot({
        global: true,
        plugins: [new ClsPluginTransactional({ imports: [], adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }) })],
      }),
    ],
    providers: [OurTransactions, ClsTransactions],
  })
  class BenchModule {}

  const app = await NestFactory.createApplicationContext(BenchModule, { logger: ['error'] });
  const dataSource = app.get(DataSource);
  const rawPool = new pg.Pool({ connectionString: url, max: CALLERS });
  try {
    await dataSource.query('CREATE TABLE IF NOT EXISTS bench_row (id int PRIMARY KEY, n int NOT NULL)');
    await dataSource.query('INSERT INTO bench_row SELECT g, 0 FROM generate_series(1, $1) g ON CONFLICT DO NOTHING', [ROWS]);
    const typeormLog = RoundTripLog.attach(dataSource);
    const rawLog = RoundTripLog.attach(rawPool);
    const id = () => 1 + Math.floor(Math.random() * ROWS);
    const ours = app.get(OurTransactions);
    const cls = app.get(ClsTransactions);

    // Every variant is measured with AsyncLocalStorage already active, as it is in any app that uses it
    // (ours, nestjs-cls): its promise hooks slow every promise in the process once the first run() happened,
    // so measuring the hand-written baseline before that would flatter it.
    await ours.plain(id());
    await cls.plain(id());

    const variants: [string, RoundTripLog, () => Promise<unknown>][] = [
      [
        'raw pg BEGIN/COMMIT',
        rawLog,
        async () => {
          const client = await rawPool.connect();
          try {
            await client.query('BEGIN');
            for (const sql of STATEMENTS) await client.query(sql, [id()]);
            await client.query('COMMIT');
          } finally {
            client.release();
          }
        },
      ],
      [HAND_WRITTEN, typeormLog, () => handWritten(dataSource, id())],
      ['TypeORM query runner + isolation + read only', typeormLog, () => handWritten(dataSource, id(), true)],
      ['@Transactional()', typeormLog, () => ours.plain(id())],
      ['@Transactional(isolation, readOnly)', typeormLog, () => ours.withOptions(id())],
      ['peer: @nestjs-cls/transactional', typeormLog, () => cls.plain(id())],
    ];
    const results: BenchResult[] = [];
    for (const [variant, log, op] of variants) {
      results.push({ scenario: SCENARIO, variant, concurrency: CALLERS, ...(await measure(settings, log, CALLERS, op)) });
    }
    results.push(await typeormTransactionalPeer(url, settings, id));
    return results;
  } finally {
    await rawPool.end();
    await app.close();
  }
}

async function handWritten(dataSource: DataSource, id: number, withOptions = false): Promise<void> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.startTransaction(withOptions ? 'REPEATABLE READ' : undefined);
    if (withOptions) await runner.query('SET TRANSACTION READ ONLY');
    for (const sql of STATEMENTS) await runner.query(sql, [id]);
    await runner.commitTransaction();
  } catch (error) {
    if (runner.isTransactionActive) await runner.rollbackTransaction();
    throw error;
  } finally {
    await runner.release();
  }
}

// typeorm-transactional patches TypeORM globally, so it gets its own DataSource, measured last. When it
// cannot run on TypeORM 1.x, the row says why instead of disappearing.
async function typeormTransactionalPeer(url: string, settings: BenchSettings, id: () => number): Promise<BenchResult> {
  const variant = 'peer: typeorm-transactional';
  let dataSource: DataSource | undefined;
  try {
    const peer = await import('typeorm-transactional');
    peer.initializeTransactionalContext({ storageDriver: peer.StorageDriver.ASYNC_LOCAL_STORAGE });
    dataSource = peer.addTransactionalDataSource(new DataSource({ type: 'postgres', url, extra: { max: CALLERS } }));
    await dataSource.initialize();
    const manager = () => dataSource!.manager;
    const run = peer.runInTransaction;
    const op = () =>
      run(async () => {
        for (const sql of STATEMENTS) await manager().query(sql, [id()]);
      });
    // Prove it really wraps the statements in one transaction before timing it.
    const txids = await run(async () => [await manager().query('SELECT txid_current() AS t'), await manager().query('SELECT txid_current() AS t')]);
    if (txids[0][0].t !== txids[1][0].t) throw new Error('statements did not share one transaction');
    const log = RoundTripLog.attach(dataSource);
    return { scenario: SCENARIO, variant, concurrency: CALLERS, ...(await measure(settings, log, CALLERS, op)) };
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    return { scenario: SCENARIO, variant, concurrency: CALLERS, opsPerSec: 0, p50Ms: 0, p99Ms: 0, roundTripsPerOp: 0, note: `does not run on TypeORM 1.x: ${reason}` };
  } finally {
    await dataSource?.destroy().catch(() => undefined);
  }
}
