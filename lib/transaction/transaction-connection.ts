import { Logger } from '@nestjs/common';
import type { DataSource, QueryRunner } from 'typeorm';
import type { PoolClient, QueryResult } from 'pg';
import { PoolExhaustedError, RollbackOnlyError } from '../errors.js';

/**
 * The parts of TypeORM's PostgresQueryRunner we rely on beyond its public interface, in one place.
 * `isTransactionActive`/`transactionDepth` tell TypeORM it is inside our transaction, so `save()` does not
 * open one of its own; `releasePostgresConnection(err)` makes pg-pool destroy a connection in an unknown state.
 */
interface PostgresQueryRunnerInternals extends QueryRunner {
  isTransactionActive: boolean;
  transactionDepth: number;
  connect(): Promise<PoolClient>;
  releasePostgresConnection(err?: unknown): Promise<void>;
}

const noop = () => undefined;
const logger = new Logger('TxLock');

/** TypeORM's PostgresDriver keeps its pg Pool as `master`. */
function poolOf(dataSource: DataSource): { idleCount: number } {
  return (dataSource.driver as unknown as { master: { idleCount: number } }).master;
}

/**
 * One pooled connection carrying one transaction. Every statement on it goes through one queue, so
 * `Promise.all` inside a transaction never sends two queries on the connection at once. The opening
 * statements (BEGIN with its isolation/read-only/timeout, and any lock taken before the first query) are
 * held back and sent in the same round trip as the next statement that needs the connection.
 */
export class TransactionConnection {
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private pending: string[] | undefined;
  private begun = false;
  private savepoints = 0;

  private constructor(
    readonly queryRunner: PostgresQueryRunnerInternals,
    private readonly client: PoolClient,
    readonly dataSource: DataSource,
  ) {
    const query = queryRunner.query.bind(queryRunner);
    const stream = queryRunner.stream.bind(queryRunner);
    queryRunner.query = ((...args: Parameters<QueryRunner['query']>) => this.afterOpening(() => query(...args))) as QueryRunner['query'];
    queryRunner.stream = ((...args: Parameters<QueryRunner['stream']>) => this.afterOpening(() => stream(...args))) as QueryRunner['stream'];
  }

  // Queues a caller's statement behind the held-back opening statements. The hot path: once BEGIN has gone
  // out, the statement is queued as is (no extra async step per statement).
  private afterOpening<T>(task: () => Promise<T>): Promise<T> {
    return this.serial(this.pending ? () => this.flush().then(task) : task);
  }

  /** Takes a connection from the DataSource's pool, waiting at most `acquireTimeoutMs`. */
  static async open(dataSource: DataSource, acquireTimeoutMs: number): Promise<TransactionConnection> {
    const queryRunner = dataSource.createQueryRunner('master') as PostgresQueryRunnerInternals;
    // An idle pooled connection is handed out at once: no timer needed (the common case, kept cheap).
    if (poolOf(dataSource).idleCount > 0) return new TransactionConnection(queryRunner, await queryRunner.connect(), dataSource);
    const connecting = queryRunner.connect();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new PoolExhaustedError(acquireTimeoutMs)), acquireTimeoutMs);
      timer.unref();
    });
    try {
      const client = await Promise.race([connecting, timeout]);
      return new TransactionConnection(queryRunner, client, dataSource);
    } catch (error) {
      // A connection that arrives after we gave up must still go back to the pool.
      connecting.then(() => queryRunner.release(), () => queryRunner.release()).catch(noop);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Marks the transaction open and queues its opening statement; nothing is sent yet. */
  begin(openingStatements: string[]): void {
    this.pending = openingStatements;
    this.queryRunner.isTransactionActive = true;
    this.queryRunner.transactionDepth = 1;
  }

  /**
   * Sends library-built statements in one round trip (after any held-back opening statements) and returns
   * the results of `statements` only. This uses the simple query protocol, where nothing is bound: callers
   * must only pass SQL whose every value the library computed (integers, fixed keywords), never caller text.
   */
  exec(statements: string[]): Promise<QueryResult[]> {
    return this.serial(() => this.send(statements));
  }

  /**
   * Runs several round trips with nothing else on the connection in between: a savepoint, a lock and its
   * release must not let a concurrent statement of the same transaction (Promise.all) land inside them, where
   * a ROLLBACK TO SAVEPOINT would silently undo it. `send` has exec()'s rule: library-computed SQL only.
   */
  exclusive<T>(steps: (send: (statements: string[]) => Promise<QueryResult[]>) => Promise<T>): Promise<T> {
    return this.serial(() => steps((statements) => this.send(statements)));
  }

  private async send(statements: string[]): Promise<QueryResult[]> {
    const opening = this.pending ?? [];
    this.pending = undefined;
    if (opening.length > 0) this.begun = true;
    const batch = [...opening, ...statements];
    if (batch.length === 0) return [];
    const sql = batch.join(';\n');
    this.dataSource.logger.logQuery(sql, undefined, this.queryRunner);
    const raw = (await this.client.query(sql)) as QueryResult | QueryResult[];
    const results = Array.isArray(raw) ? raw : [raw];
    return results.slice(opening.length);
  }

  private async flush(): Promise<void> {
    if (this.pending) await this.send([]);
  }

  /** A savepoint name not used before on this connection (library-made, so safe in a batch). */
  savepointName(): string {
    return `txlock_sp_${++this.savepoints}`;
  }

  /** Creates a uniquely named savepoint and returns its name. */
  async savepoint(): Promise<string> {
    const name = this.savepointName();
    await this.exec([`SAVEPOINT ${name}`]);
    return name;
  }

  releaseSavepoint(name: string): Promise<QueryResult[]> {
    return this.exec([`RELEASE SAVEPOINT ${name}`]);
  }

  rollbackToSavepoint(name: string): Promise<QueryResult[]> {
    return this.exec([`ROLLBACK TO SAVEPOINT ${name}`]);
  }

  /**
   * Commits. PostgreSQL answers COMMIT of a transaction it had aborted (after a failed statement that
   * the caller caught) with ROLLBACK and no error; we turn that into RollbackOnlyError rather than report
   * a commit that did not happen. A transaction that never sent a statement has nothing to commit.
   */
  async commit(): Promise<void> {
    await this.queryRunner.broadcaster.broadcast('BeforeTransactionCommit');
    if (this.pending) {
      this.pending = undefined;
    } else if (this.begun) {
      const [result] = await this.exec(['COMMIT']);
      if (result?.command !== 'COMMIT') {
        this.markEnded();
        throw new RollbackOnlyError('PostgreSQL had aborted it after a statement failed inside it');
      }
    }
    this.markEnded();
    await this.afterEnd('AfterTransactionCommit');
  }

  /** Rolls back (if anything was sent). Throws if the connection is broken; the caller then destroys it. */
  async rollback(): Promise<void> {
    await this.queryRunner.broadcaster.broadcast('BeforeTransactionRollback');
    this.pending = undefined;
    try {
      if (this.begun) await this.exec(['ROLLBACK']);
    } finally {
      this.markEnded();
    }
    await this.afterEnd('AfterTransactionRollback');
  }

  // The transaction has ended: a failing subscriber must not make a commit look like a rollback.
  private async afterEnd(event: 'AfterTransactionCommit' | 'AfterTransactionRollback'): Promise<void> {
    try {
      await this.queryRunner.broadcaster.broadcast(event);
    } catch (error) {
      logger.error(`A TypeORM subscriber's ${event} failed after the transaction ended: ${error instanceof Error ? error.stack : String(error)}`);
    }
  }

  /**
   * Returns the connection to the pool. With `broken`, pg-pool destroys it instead: its transaction state
   * is unknown (a ROLLBACK failed), and handing it to the next user could leak an open transaction or lock.
   */
  async close(broken?: unknown): Promise<void> {
    this.markEnded();
    if (broken !== undefined) {
      await this.queryRunner.releasePostgresConnection(broken instanceof Error ? broken : new Error(String(broken)));
    } else {
      await this.queryRunner.release();
    }
  }

  private markEnded(): void {
    this.queryRunner.isTransactionActive = false;
    this.queryRunner.transactionDepth = 0;
  }

  private serial<T>(task: () => Promise<T>): Promise<T> {
    // When nothing is queued, the task starts now: one promise less on every statement of a transaction.
    const result = this.queued === 0 ? task() : this.tail.then(task, task);
    this.queued++;
    this.tail = result.then(this.dequeue, this.dequeue);
    return result;
  }

  private readonly dequeue = (): void => {
    this.queued--;
  };
}
