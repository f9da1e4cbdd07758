import { Logger } from '@nestjs/common';
import type { DataSource, QueryRunner } from 'typeorm';
import type { PoolClient, QueryResult } from 'pg';
import { CommitOutcomeUnknownError, ConnectionLostError, RollbackOnlyError } from '../errors.js';
import { asQueryFailed, idleInTransactionTimeout, isConnectionLoss } from './connection-errors.js';
import { transactionCallback } from './data-source-routing.js';
import { acquireConnection, type PostgresQueryRunnerInternals } from './pool-connection.js';
import { ScopeQueue } from './scope-queue.js';
import { currentScope, TransactionScope, type ScopeKind } from './transaction-scope.js';

const logger = new Logger('TxLock');
const releaseNothing = async (): Promise<void> => undefined;
// A ROLLBACK the library did not send (TypeORM's own savepoints, raw SQL): it may have released advisory locks.
const FOREIGN_ROLLBACK = /^\s*ROLLBACK\b/i;

/**
 * One pooled connection carrying one transaction (or the session of a session-scope lock call). Every
 * statement on it, TypeORM's and the library's, belongs to the scope it was issued in and waits for its turn
 * in a ScopeQueue: one at a time, never inside a sibling's savepoint, never after its scope ended (then it is
 * refused with TransactionEndedError and nothing is sent: by then the pooled connection may carry another
 * caller's transaction). The opening statements (BEGIN with its isolation/read-only/timeout, and any lock
 * taken before the first query) are held back and sent in the same round trip as the next statement.
 */
export class TransactionConnection {
  /** The transaction (or session) itself: the outermost scope on this connection. */
  readonly root: TransactionScope;
  /**
   * How many ROLLBACK statements the library did not send have run (TypeORM's own savepoints, raw SQL).
   * Each may have released advisory locks, so lock bookkeeping older than the last one is not trusted.
   */
  foreignRollbacks = 0;
  private readonly queue: ScopeQueue;
  private pending: string[] | undefined;
  private begun = false;
  private savepoints = 0;
  private lost: unknown;
  private broken: unknown;
  private joined?: QueryRunner;

  private constructor(
    readonly queryRunner: PostgresQueryRunnerInternals,
    private readonly client: PoolClient,
    readonly dataSource: DataSource,
    kind: ScopeKind,
  ) {
    this.root = new TransactionScope(this, kind);
    this.queue = new ScopeQueue(this.root, (scope) => this.rollBackSavepointsAbove(scope));
    client.on('error', this.onClientError);
    const query = queryRunner.query.bind(queryRunner);
    const stream = queryRunner.stream.bind(queryRunner);
    queryRunner.query = ((...args: Parameters<QueryRunner['query']>) => this.typeormStatement(args[0], () => query(...args))) as QueryRunner['query'];
    queryRunner.stream = ((...args: Parameters<QueryRunner['stream']>) => this.typeormStatement(args[0], () => stream(...args))) as QueryRunner['stream'];
    // manager.query() goes through DataSource.query(), which answers a released runner with TypeORM's own
    // error before our queue could say why: send it to the runner, which refuses with TransactionEndedError.
    Object.defineProperty(queryRunner.manager, 'query', {
      value: (sql: string, parameters?: unknown[]) => queryRunner.query(sql, parameters),
      configurable: true,
      writable: true,
    });
  }

  /**
   * Takes a connection from the DataSource's pool, waiting at most `acquireTimeoutMs` (PoolExhaustedError).
   * `holding`: the caller already holds another connection (for the error message).
   */
  static async open(dataSource: DataSource, acquireTimeoutMs: number, kind: ScopeKind, holding: boolean): Promise<TransactionConnection> {
    const { queryRunner, client } = await acquireConnection(dataSource, acquireTimeoutMs, holding);
    return new TransactionConnection(queryRunner, client, dataSource, kind);
  }

  /** Marks the transaction open and queues its opening statements; nothing is sent yet. */
  begin(openingStatements: string[]): void {
    this.pending = openingStatements;
    this.queryRunner.isTransactionActive = true;
    this.queryRunner.transactionDepth = 1;
  }

  /**
   * Makes `manager.transaction()` on this transaction's EntityManager call `nested` (a NESTED savepoint of
   * ours, with its rules) instead of TypeORM's own savepoint, which knows nothing of concurrent siblings.
   */
  routeManagerTransactions(nested: (scope: TransactionScope, fn: () => Promise<unknown>) => Promise<unknown>): void {
    const manager = this.queryRunner.manager;
    const transaction = (...args: unknown[]) => {
      const fn = transactionCallback(args);
      return nested(this.scopeOfCaller(), () => fn(manager));
    };
    Object.defineProperty(manager, 'transaction', { value: transaction, configurable: true, writable: true });
  }

  /**
   * This transaction's query runner as TypeORM code that created a runner of its own sees it (see
   * routeIntoTransactions): everything goes to the real one, but `release()` does nothing, since the
   * transaction releases its connection itself when it ends.
   */
  get joinedRunner(): QueryRunner {
    this.joined ??= new Proxy(this.queryRunner, {
      get: (target, property, receiver) => (property === 'release' ? releaseNothing : Reflect.get(target, property, receiver)),
    });
    return this.joined;
  }

  /**
   * Sends library-built statements in one round trip in `scope` (after any held-back opening statements) and
   * returns the results of `statements` only. This uses the simple query protocol, where nothing is bound:
   * callers must only pass SQL whose every value the library computed (integers, fixed keywords), never caller text.
   */
  exec(scope: TransactionScope, statements: string[]): Promise<QueryResult[]> {
    return this.queue.submit(scope, () => this.send(statements));
  }

  /**
   * Runs several round trips in `scope` with nothing else on the connection in between: a savepoint, a lock and
   * its release must not let a concurrent statement of the same transaction land inside them, where a ROLLBACK
   * TO SAVEPOINT would silently undo it. `send` has exec()'s rule: library-computed SQL only.
   */
  exclusive<T>(scope: TransactionScope, steps: (send: (statements: string[]) => Promise<QueryResult[]>) => Promise<T>): Promise<T> {
    return this.queue.submit(scope, () => steps((statements) => this.send(statements)));
  }

  /**
   * One of the library's own parameterised statements in `scope` (counters, get-or-create, leases...), sent to the
   * pg client directly: the statement needs none of what TypeORM's query() adds per call. A failure has the
   * shape of TypeORM's (QueryFailedError).
   */
  query(scope: TransactionScope, sql: string, params: unknown[]): Promise<QueryResult> {
    return this.statement(scope, async () => {
      this.dataSource.logger.logQuery(sql, params, this.queryRunner);
      try {
        return await this.client.query(sql, params);
      } catch (error) {
        throw asQueryFailed(error, sql);
      }
    });
  }

  /** A savepoint name not used before on this connection (library-made, so safe in a batch). */
  savepointName(): string {
    return `txlock_sp_${++this.savepoints}`;
  }

  /** Opens a savepoint inside `parent` (when `parent` has its turn) and returns its scope. */
  async savepoint(parent: TransactionScope): Promise<TransactionScope> {
    const scope = new TransactionScope(this, 'savepoint', parent, this.savepointName());
    await this.queue.submit(parent, async () => {
      await this.send([`SAVEPOINT ${scope.savepoint!}`]);
      this.queue.top = scope;
    });
    return scope;
  }

  /**
   * Ends a savepoint: RELEASE (`commit`) or ROLLBACK TO + RELEASE. Savepoints still open inside it (un-awaited
   * NESTED calls) are rolled back first. Refused when the savepoint, or one around it, already ended.
   */
  endSavepoint(scope: TransactionScope, commit: boolean): Promise<void> {
    scope.close();
    const name = scope.savepoint!;
    return this.queue.submit(
      scope,
      async () => {
        if (commit) await this.send([`RELEASE SAVEPOINT ${name}`]);
        else await this.send([`ROLLBACK TO SAVEPOINT ${name}`, `RELEASE SAVEPOINT ${name}`]).catch((error: unknown) => this.markBroken(error));
        this.queue.top = scope.parent!;
        scope.finish(commit ? 'released' : 'rolled back');
      },
      true,
    );
  }

  /**
   * Commits. PostgreSQL answers COMMIT of a transaction it had aborted (after a failed statement that the caller
   * caught) with ROLLBACK and no error; we turn that into RollbackOnlyError rather than report a commit that did
   * not happen. An error at COMMIT (a deferred constraint) comes as TypeORM's QueryFailedError; a connection lost
   * while COMMIT was in flight as CommitOutcomeUnknownError. A transaction that never sent a statement has
   * nothing to commit. Statements issued from now on are refused.
   */
  async commit(): Promise<void> {
    await this.broadcast('BeforeTransactionCommit');
    this.root.close();
    await this.queue.submit(
      this.root,
      async () => {
        this.pending = undefined;
        if (!this.begun) return;
        let result: QueryResult | undefined;
        try {
          [result] = await this.send(['COMMIT']);
        } catch (error) {
          if (error instanceof ConnectionLostError) throw new CommitOutcomeUnknownError(error.cause);
          this.root.finish('rolled back');
          throw error;
        }
        if (result?.command !== 'COMMIT') {
          this.root.finish('rolled back');
          throw new RollbackOnlyError('PostgreSQL had aborted it after a statement failed inside it');
        }
      },
      true,
    );
    this.root.finish('committed');
    this.markEnded();
    await this.afterEnd('AfterTransactionCommit');
  }

  /** Rolls back (if anything was sent). Throws if the connection is broken; the caller then destroys it. */
  async rollback(): Promise<void> {
    await this.broadcast('BeforeTransactionRollback').catch((error: unknown) => {
      logger.error(`A TypeORM subscriber's BeforeTransactionRollback failed: ${error instanceof Error ? error.stack : String(error)}`);
    });
    this.root.close();
    try {
      if (!this.root.ended) {
        await this.queue.submit(
          this.root,
          async () => {
            this.pending = undefined;
            if (this.begun) await this.send(['ROLLBACK']);
          },
          true,
        );
      }
    } finally {
      this.root.finish('rolled back');
      this.markEnded();
    }
    await this.afterEnd('AfterTransactionRollback');
  }

  /**
   * Returns the connection to the pool. With `broken` (or after the connection was lost), pg-pool destroys it
   * instead: its state is unknown, and handing it to the next user could leak an open transaction or lock.
   * Anything still queued or issued later on this connection is refused.
   */
  async close(broken?: unknown): Promise<void> {
    this.root.close();
    this.root.finish('ended');
    this.markEnded();
    this.queue.fail(() => this.root.endedRefusal());
    this.client.removeListener('error', this.onClientError);
    const reason = broken ?? this.broken ?? this.lost;
    if (reason !== undefined) {
      await this.queryRunner.releasePostgresConnection(reason instanceof Error ? reason : new Error(String(reason)));
    } else {
      await this.queryRunner.release();
    }
  }

  /** Work not finished on this connection: savepoints still open inside the root, plus statements queued or running. */
  get pendingWork(): number {
    let open = 0;
    for (let scope = this.queue.top; scope !== this.root; scope = scope.parent!) open++;
    return open + this.queue.pending;
  }

  /** True once the connection itself broke: nothing more can be sent on it. */
  get isLost(): boolean {
    return this.lost !== undefined;
  }

  /**
   * Marks the connection unusable after a failure that leaves its state unknown (a savepoint that could not be
   * rolled back): everything waiting or issued later fails with `error`, and close() destroys the connection.
   */
  markBroken(error: unknown): void {
    this.broken ??= error;
    this.queue.fail(() => this.broken);
  }

  // The scope a TypeORM call made now belongs to: the caller's when it runs on this connection, else the
  // transaction itself (a manager kept from inside it and used from elsewhere).
  private scopeOfCaller(): TransactionScope {
    const scope = currentScope(this.dataSource);
    return scope && scope.connection === this ? scope : this.root;
  }

  private typeormStatement<T>(sql: string, task: () => Promise<T>): Promise<T> {
    return this.statement(this.scopeOfCaller(), () => {
      if (FOREIGN_ROLLBACK.test(sql)) this.foreignRollbacks++;
      return task();
    });
  }

  // One statement in `scope`'s turn, after the held-back opening statements. Under a test transaction, a statement
  // outside the app's transactions gets a savepoint of its own: as in autocommit, its failure undoes only itself
  // instead of aborting the test's transaction.
  private statement<T>(scope: TransactionScope, run: () => Promise<T>): Promise<T> {
    return this.queue.submit(scope, async () => {
      const own = scope.kind === 'test' ? this.savepointName() : undefined;
      if (this.pending || own) await this.send(own ? [`SAVEPOINT ${own}`] : []);
      try {
        const result = await run();
        if (own) await this.send([`RELEASE SAVEPOINT ${own}`]);
        return result;
      } catch (error) {
        if (own) await this.send([`ROLLBACK TO SAVEPOINT ${own}`, `RELEASE SAVEPOINT ${own}`]).catch((rollbackError: unknown) => this.markBroken(rollbackError));
        throw this.explain(error);
      }
    });
  }

  private async send(statements: string[]): Promise<QueryResult[]> {
    const opening = this.pending ?? [];
    this.pending = undefined;
    if (opening.length > 0) this.begun = true;
    const batch = [...opening, ...statements];
    if (batch.length === 0) return [];
    const sql = batch.join(';\n');
    this.dataSource.logger.logQuery(sql, undefined, this.queryRunner);
    let raw: QueryResult | QueryResult[];
    try {
      raw = (await this.client.query(sql)) as QueryResult | QueryResult[];
    } catch (error) {
      throw this.explain(asQueryFailed(error, sql));
    }
    const results = Array.isArray(raw) ? raw : [raw];
    return results.slice(opening.length);
  }

  // Rolls back the savepoints still open inside `scope` (un-awaited NESTED calls), so that `scope` can end.
  private async rollBackSavepointsAbove(scope: TransactionScope): Promise<void> {
    let outermost = this.queue.top;
    while (outermost.parent !== scope) outermost = outermost.parent!;
    const name = outermost.savepoint!;
    await this.send([`ROLLBACK TO SAVEPOINT ${name}`, `RELEASE SAVEPOINT ${name}`]);
    for (let swept: TransactionScope = this.queue.top; swept !== scope; swept = swept.parent!) swept.finish('abandoned');
    this.queue.top = scope;
  }

  // A lost connection: every later statement fails with ConnectionLostError (never with TypeORM's "query
  // runner already released", which would hide why), or IdleInTransactionTimeoutError when the server ended the
  // session of this idle transaction, and the connection is destroyed when closed.
  private explain(error: unknown): unknown {
    if (error instanceof ConnectionLostError || (!isConnectionLoss(error) && !idleInTransactionTimeout(error))) return error;
    this.markLost(error);
    return idleInTransactionTimeout(this.lost) ?? new ConnectionLostError(error);
  }

  // The server ending the session of an idle transaction (25P03) usually comes as the client's error event.
  private markLost(error: unknown): void {
    this.lost ??= error;
    this.queue.fail(() => idleInTransactionTimeout(this.lost) ?? new ConnectionLostError(this.lost));
  }

  private readonly onClientError = (error: unknown): void => this.markLost(error);

  // The transaction has ended: a failing subscriber must not make a commit look like a rollback.
  private async afterEnd(event: 'AfterTransactionCommit' | 'AfterTransactionRollback'): Promise<void> {
    try {
      await this.broadcast(event);
    } catch (error) {
      logger.error(`A TypeORM subscriber's ${event} failed after the transaction ended: ${error instanceof Error ? error.stack : String(error)}`);
    }
  }

  /**
   * Tells TypeORM subscribers (beforeTransactionStart... afterTransactionRollback) what the transaction does;
   * with none registered, skips TypeORM's broadcast and its promise per event.
   */
  broadcast(event: 'BeforeTransactionStart' | 'AfterTransactionStart' | 'BeforeTransactionCommit' | 'AfterTransactionCommit' | 'BeforeTransactionRollback' | 'AfterTransactionRollback'): Promise<void> {
    return this.dataSource.subscribers.length === 0 ? Promise.resolve() : this.queryRunner.broadcaster.broadcast(event);
  }

  private markEnded(): void {
    this.queryRunner.isTransactionActive = false;
    this.queryRunner.transactionDepth = 0;
  }
}
