import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional, Transactional as ClsTransactional, TransactionHost as ClsTransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { AdvisoryLock, Transactional, TransactionHost, TxLockModule } from '../../lib/index.js';
import { RoundTripLog } from '../../test/support/round-trips.js';
import type { BenchContext } from '../context.js';
import { localVariant, type Variant } from '../harness.js';
import { BenchWorker, remoteVariant } from '../remote.js';
import { CALLERS, TRANSACTION_KINDS, createRows, randomRow, runStatements, type TransactionKind } from './transaction-work.js';

/** The baseline every transaction variant is compared with. */
export const HAND_WRITTEN = 'TypeORM query runner, hand-written';
/** The lower bound of any transaction library: pg's own client. */
export const RAW_TRANSACTION = 'raw pg BEGIN/COMMIT';
/** Our variant in each group. */
export const OURS: Record<TransactionKind, string> = {
  plain: '@Transactional()',
  strict: '@Transactional(isolation, readOnly)',
  locked: '@AdvisoryLock + @Transactional',
};
export const CLS_PEER = 'peer: @nestjs-cls/transactional';
export const TYPEORM_TRANSACTIONAL_PEER = 'peer: typeorm-transactional';

// How each peer expresses each option; shown in the table, since this is where the libraries differ.
const PEER_NOTES: Record<TransactionKind, string | undefined> = {
  plain: undefined,
  strict: 'isolationLevel option; no read-only option, so it sends SET TRANSACTION READ ONLY',
  locked: 'no lock option, so it sends SELECT pg_advisory_xact_lock($1)',
};
const HAND_WRITTEN_NOTES: Record<TransactionKind, string | undefined> = {
  plain: undefined,
  strict: "startTransaction('SERIALIZABLE') (BEGIN, then SET TRANSACTION ISOLATION LEVEL), then SET TRANSACTION READ ONLY",
  locked: 'startTransaction(), then SELECT pg_advisory_xact_lock($1)',
};

/** Our transactions, one method per kind (scenario 8 measures the same methods with telemetry off and on). */
@Injectable()
export class OurTransactions {
  constructor(private readonly tx: TransactionHost) {}

  @Transactional()
  async plain(id: number): Promise<void> {
    await runStatements((sql, params) => this.tx.manager.query(sql, params), id);
  }

  @Transactional({ isolation: 'SERIALIZABLE', readOnly: true })
  async strict(id: number): Promise<void> {
    await runStatements((sql, params) => this.tx.manager.query(sql, params), id);
  }

  @AdvisoryLock({ key: (id: number) => ['bench-row', id], label: 'bench-row' })
  @Transactional()
  async locked(id: number): Promise<void> {
    await runStatements((sql, params) => this.tx.manager.query(sql, params), id);
  }
}

@Injectable()
class ClsTransactions {
  constructor(private readonly tx: ClsTransactionHost<TransactionalAdapterTypeOrm>) {}

  @ClsTransactional()
  async plain(id: number): Promise<void> {
    await runStatements((sql, params) => this.tx.tx.query(sql, params), id);
  }

  @ClsTransactional<TransactionalAdapterTypeOrm>({ isolationLevel: 'SERIALIZABLE' })
  async strict(id: number): Promise<void> {
    await runStatements((sql, params) => this.tx.tx.query(sql, params), id, 'strict');
  }

  @ClsTransactional()
  async locked(id: number): Promise<void> {
    await runStatements((sql, params) => this.tx.tx.query(sql, params), id, 'locked');
  }
}

/**
 * Scenario 1: the same three statements in a transaction, written each way, three times over: plain, with
 * isolation SERIALIZABLE + read only, and with an advisory lock taken in the transaction. The peers lack some
 * of these options and send the statement themselves, as their users do; that is where the libraries differ.
 */
export async function transactionScenario({ url, runner }: BenchContext): Promise<void> {
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
  class TransactionBenchModule {}

  const app = await NestFactory.createApplicationContext(TransactionBenchModule, { logger: ['error'] });
  const dataSource = app.get(DataSource);
  const rawPool = new pg.Pool({ connectionString: url, max: CALLERS });
  let peerWorker: BenchWorker | undefined;
  try {
    await createRows((sql, params) => dataSource.query(sql, params));
    const typeormLog = RoundTripLog.attach(dataSource);
    const rawLog = RoundTripLog.attach(rawPool);
    const ours = app.get(OurTransactions);
    const cls = app.get(ClsTransactions);
    // Every variant is measured with AsyncLocalStorage already active, as it is in any app that uses it
    // (ours, nestjs-cls): its promise hooks slow every promise in the process once the first run() happened,
    // so measuring the hand-written baseline before that would flatter it.
    await ours.plain(randomRow());
    await cls.plain(randomRow());
    const peerError = runner.wantsVariant(TYPEORM_TRANSACTIONAL_PEER)
      ? await BenchWorker.start('typeorm-transactional.worker', url, null).then(
          (worker) => void (peerWorker = worker),
          (error: Error) => `does not run here: ${error.message.split('\n')[0]}`,
        )
      : undefined;

    for (const kind of Object.keys(TRANSACTION_KINDS) as TransactionKind[]) {
      const scenario = TRANSACTION_KINDS[kind];
      const local = (variant: string, log: RoundTripLog, op: () => Promise<unknown>, note?: string) =>
        localVariant({ scenario, variant, callers: CALLERS, log, op, note: () => note });
      const variants: Variant[] = [
        local(RAW_TRANSACTION, rawLog, () => rawTransaction(rawPool, randomRow(), kind)),
        local(HAND_WRITTEN, typeormLog, () => handWritten(dataSource, randomRow(), kind), HAND_WRITTEN_NOTES[kind]),
        local(OURS[kind], typeormLog, () => ours[kind](randomRow())),
        local(CLS_PEER, typeormLog, () => cls[kind](randomRow()), PEER_NOTES[kind]),
      ];
      if (peerWorker) {
        const note = PEER_NOTES[kind];
        variants.push(remoteVariant({ scenario, variant: TYPEORM_TRANSACTIONAL_PEER, workers: [peerWorker], op: kind, callersEach: CALLERS, note: () => note }));
      }
      await runner.group(variants, HAND_WRITTEN);
      if (peerError) runner.unavailable(scenario, TYPEORM_TRANSACTIONAL_PEER, CALLERS, peerError);
    }
  } finally {
    await peerWorker?.close();
    await rawPool.end();
    await app.close();
  }
}

// The fewest round trips: BEGIN carries the options, the lock is one statement.
async function rawTransaction(pool: pg.Pool, id: number, kind: TransactionKind): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query(kind === 'strict' ? 'BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY' : 'BEGIN');
    await runStatements((sql, params) => client.query(sql, params), id, kind === 'locked' ? 'locked' : undefined);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  } finally {
    client.release();
  }
}

/** The baseline of scenario 1: the same statements in a hand-written TypeORM query runner transaction. */
export async function handWritten(dataSource: DataSource, id: number, kind: TransactionKind): Promise<void> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.startTransaction(kind === 'strict' ? 'SERIALIZABLE' : undefined);
    await runStatements((sql, params) => runner.query(sql, params), id, kind);
    await runner.commitTransaction();
  } catch (error) {
    if (runner.isTransactionActive) await runner.rollbackTransaction();
    throw error;
  } finally {
    await runner.release();
  }
}
