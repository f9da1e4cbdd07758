import { Logger } from '@nestjs/common';
import type { DataSource, QueryRunner } from 'typeorm';
import { finished } from 'node:stream/promises';
import type { Pool, PoolClient, QueryResult } from 'pg';
import { CommitOutcomeUnknownError, ConnectionLostError, RollbackOnlyError, StrayTransactionEndError, type ShutdownRollbackError } from '../errors.js';
import { shutdownGateOf, type DrainedConnection, type ShutdownGate } from '../lifecycle/shutdown-gate.js';
import { freshArray } from '../common/fresh-array.js';
import { shadowMethod } from '../common/shadow-method.js';
import { cancelRunningQuery } from './cancel-query.js';
import { asQueryFailed, idleInTransactionTimeout, isConnectionLoss } from './connection-errors.js';
import { inferredIdleTimeout } from './native-idle-timeout.js';
import { transactionCallback, transactionIsolation } from './data-source-routing.js';
import { assertIsolation } from './isolation.js';
import { acquireConnection, type PostgresQueryRunnerInternals } from './pool-connection.js';
import { routedRunnerPrototype, type RoutingConnection } from './routed-runner.js';
import { ScopeQueue } from './scope-queue.js';
import { sqlState } from './sql-state.js';
import { currentScope, exemptFromUse, runInScope, standingFor, TransactionScope, type ScopeKind } from './transaction-scope.js';
import type { IsolationLevel } from './transaction.options.js';
import { openingStatements, standInStatements } from './transaction.sql.js';
import type { SettingEntry } from './transaction-settings.js';
import { connectionBounded, forgetConnectionBound, openingBound, vanishedClientBound, watchStatement, withDeadline, type VanishedClientBound } from './vanished-client.js';

// SQLSTATE of a statement sent in a transaction that a failed statement aborted.
const IN_FAILED_TRANSACTION = '25P02';
// How long the app's shutdown waits for the server to close an abandoned connection (abandon()).
const ABANDON_WAIT_MS = 2_000;

/** What a transaction's BEGIN says (transaction.sql.ts). */
export interface OpeningOptions {
  isolation?: IsolationLevel;
  readOnly?: boolean;
  timeoutMs?: number;
  /** Custom settings set LOCAL in the opening statements (`app.tenant_id`...), checked by readSettings(). */
  settings?: readonly SettingEntry[];
}

/** What a savepoint that stands for a transaction of the app under a test transaction was asked to run with. */
export interface StandIn {
  isolation: string;
  readOnly: boolean;
  timeoutMs?: number;
  settings?: readonly SettingEntry[];
}

const logger = new Logger('TxLock');
// A ROLLBACK the library did not send (TypeORM's own savepoints, raw SQL): it may have released advisory locks.
const FOREIGN_ROLLBACK = /^\s*ROLLBACK\b/i;

// A scope's connection is this class (see ScopeConnection): declared here, where the class is.
declare module './transaction-scope.js' {
  interface ScopeConnection extends TransactionConnection {}
}

/**
 * One pooled connection carrying one transaction (or the session of a session-scope lock call). Every
 * statement on it, TypeORM's and the library's, belongs to the scope it was issued in and waits for its turn
 * in a ScopeQueue: one at a time, never inside a sibling's savepoint, never after its scope ended (then it is
 * refused with TransactionEndedError and nothing is sent: by then the pooled connection may carry another
 * caller's transaction). The opening statements (BEGIN with its isolation/read-only/timeout, and any lock
 * taken before the first query) are held back and sent in the same round trip as the next statement.
 */
export class TransactionConnection implements RoutingConnection, DrainedConnection {
  /** The transaction (or session) itself: the outermost scope on this connection. */
  readonly root: TransactionScope;
  /**
   * How many ROLLBACK statements the library did not send have run (TypeORM's own savepoints, raw SQL).
   * Each may have released advisory locks, so lock bookkeeping older than the last one is not trusted.
   */
  foreignRollbacks = 0;
  /** The shutdown gate that waits for this connection to close, if any (ShutdownGate.track()). */
  drainedBy?: ShutdownGate;
  /** Its neighbours in the list of connections its shutdown gate waits for (ShutdownGate.track()). */
  linkedOlder?: DrainedConnection;
  linkedNewer?: DrainedConnection;
  /** Why the app's shutdown abandoned this connection after its grace period (abandon()), if it did. */
  abandonment?: ShutdownRollbackError;
  private readonly queue: ScopeQueue;
  private pending: string[] | undefined;
  private begun = false;
  private savepoints = 0;
  private lost: unknown;
  private broken: unknown;
  private routed?: object;
  private nestedCall?: (scope: TransactionScope, fn: () => Promise<unknown>) => Promise<unknown>;
  // A cancel request on its way to the server: nothing else is sent until it has been delivered (see send()).
  private cancelling?: Promise<void>;
  private opening: OpeningOptions = {};
  // Queued work that only finishes what the app started and ended (a stream's RELEASE).
  private cleaningUp = 0;
  // How many of the held-back statements open the transaction (BEGIN, SET LOCAL); the rest open savepoints.
  private openingCount = 0;
  // The savepoints whose SAVEPOINT is still held back (the innermost open ones, in order), with how many held-back
  // statements open each.
  private heldSavepoints = freshArray<HeldSavepoint>();
  // Savepoints whose held-back SAVEPOINT was refused because the transaction was aborted already (25P02): they never
  // existed, so ending them sends nothing (a ROLLBACK TO would fail with 3B001 and break the connection).
  // Made on first use: most transactions never meet one.
  private neverEstablished?: WeakSet<TransactionScope>;
  // TypeORM's own query() and stream() of the runner, before they were routed through the queue.
  private readonly sendQuery: QueryRunner['query'];
  private readonly sendStream: QueryRunner['stream'];
  // How long a statement may go without an answer before the connection is judged lost (vanished-client.ts).
  private readonly bound?: VanishedClientBound;
  // True once this transaction's opening statements made the bound's settings for the connection's session: unless
  // it commits, PostgreSQL undoes them with it (forgetConnectionBound() at close()).
  private boundConnection = false;

  private constructor(
    readonly queryRunner: PostgresQueryRunnerInternals,
    private readonly client: PoolClient,
    readonly dataSource: DataSource,
    kind: ScopeKind,
  ) {
    this.root = new TransactionScope(this, kind);
    this.bound = vanishedClientBound(dataSource);
    this.queue = new ScopeQueue(this.root, (scope) => this.rollBackSavepointsAbove(scope));
    client.on('error', this.onClientError);
    const query = (this.sendQuery = queryRunner.query.bind(queryRunner));
    const stream = (this.sendStream = queryRunner.stream.bind(queryRunner));
    queryRunner.query = ((...args: Parameters<QueryRunner['query']>) => this.typeormStatement(this.callerScope(), args[0], () => query(...args))) as QueryRunner['query'];
    queryRunner.stream = ((...args: Parameters<QueryRunner['stream']>) => this.typeormStream(this.callerScope(), args[0], () => stream(...args))) as QueryRunner['stream'];
    // Its own startTransaction() is TypeORM's raw savepoint (shared by every branch of the transaction); what it must
    // never do is end the transaction itself, or run weaker than it asks.
    const { startTransaction, commitTransaction, rollbackTransaction } = queryRunner;
    queryRunner.startTransaction = (isolation?: string) => {
      try {
        assertIsolation(isolation, this.callerScope(), 'queryRunner.startTransaction()');
      } catch (error) {
        return Promise.reject(error);
      }
      return startTransaction.call(queryRunner);
    };
    queryRunner.commitTransaction = () =>
      queryRunner.transactionDepth > 1 ? commitTransaction.call(queryRunner) : Promise.reject(new StrayTransactionEndError('commitTransaction'));
    queryRunner.rollbackTransaction = () =>
      queryRunner.transactionDepth > 1 ? rollbackTransaction.call(queryRunner) : Promise.reject(new StrayTransactionEndError('rollbackTransaction'));
    // manager.query() goes through DataSource.query(), which answers a released runner with TypeORM's own
    // error before our queue could say why: send it to the runner, which refuses with TransactionEndedError.
    shadowMethod(queryRunner.manager, 'query', (sql: string, parameters?: unknown[]) => queryRunner.query(sql, parameters));
  }

  /**
   * Takes a connection from the DataSource's pool, waiting at most `acquireTimeoutMs` (PoolExhaustedError), or
   * until `signal` aborts (its reason). `holding`: the caller already holds another connection (for the error message).
   */
  static open(dataSource: DataSource, acquireTimeoutMs: number, kind: ScopeKind, holding: boolean, signal?: AbortSignal): Promise<TransactionConnection> {
    return acquireConnection(dataSource, acquireTimeoutMs, holding, signal, (queryRunner, client) => {
      const connection = new TransactionConnection(queryRunner, client, dataSource, kind);
      // A test's own transaction is the testing kit's to end, not the app's shutdown.
      if (kind !== 'test') shutdownGateOf(dataSource)?.track(connection);
      return connection;
    });
  }

  /** Marks the transaction open and queues its opening statements (openingStatements()); nothing is sent yet. */
  begin(opening: OpeningOptions = {}): void {
    this.opening = opening;
    this.pending = openingStatements(opening.isolation, opening.readOnly, opening.timeoutMs, opening.settings, this.openingBounds());
    this.openingCount = this.pending.length;
    this.queryRunner.isTransactionActive = true;
    this.queryRunner.transactionDepth = 1;
  }

  /**
   * Makes `standing` (this transaction, or under a test transaction a savepoint that stands for one of the app's)
   * run at `level`, if nothing has run in it yet: a transaction whose BEGIN is still held back begins at that level.
   * False when it is too late (isolation.ts then refuses the call). Under a test transaction the level is only
   * recorded: the test's transaction runs at its own (docs/testing.md).
   */
  raiseIsolation(standing: TransactionScope, level: IsolationLevel): boolean {
    // Outside the app's transactions under a test, a TypeORM transaction would begin on its own in production.
    if (standing.kind === 'test') return true;
    if (standing.used) return false;
    if (standing === this.root && standing.kind === 'transaction') {
      if (this.begun || !this.pending) return false;
      this.opening = { ...this.opening, isolation: level };
      const opening = openingStatements(level, this.opening.readOnly, this.opening.timeoutMs, this.opening.settings, this.openingBounds());
      this.pending.splice(0, this.openingCount, ...opening);
      this.openingCount = opening.length;
    }
    standing.isolation = level;
    return true;
  }

  // The vanished-client bounds the opening statements set LOCAL. Not in a test transaction (nestjs-txlock/testing),
  // which may sit idle at a breakpoint as long as the developer likes.
  private openingBounds(): readonly string[] {
    return this.root.kind === 'test' || !this.bound ? [] : [openingBound(this.bound, this.client)];
  }

  /** The session settings of the bound were reset (a session-scope lock's end): the next transaction makes them again. */
  forgetBound(): void {
    forgetConnectionBound(this.client);
  }

  /**
   * Statements sent ahead of the next batch on this connection, in the same round trip (a session lock's session
   * settings). Library-built SQL only, as for exec().
   */
  holdBack(statements: string[]): void {
    if (statements.length > 0) this.pending = [...(this.pending ?? []), ...statements];
  }

  /**
   * A heartbeat of a connection pinned by a session-scope lock: `SELECT 1`, which must be answered within
   * `deadlineMs` or the connection is lost (and destroyed). Skipped while a statement is in flight or waiting: that
   * one is watched (watchStatement()). Resolves false once the connection is lost.
   */
  async heartbeat(deadlineMs: number): Promise<boolean> {
    if (this.lost !== undefined || this.broken !== undefined) return false;
    if (this.queue.pending > 0) return true;
    try {
      await this.queue.submit(this.root, () => withDeadline(() => this.client.query('SELECT 1'), this.client, deadlineMs, (error) => this.markLost(error)));
      return true;
    } catch (error) {
      if (isConnectionLoss(error) || error instanceof ConnectionLostError) this.markLost(error);
      return this.lost === undefined;
    }
  }

  /**
   * Sends library-built statements that never wait (an unlock, a RESET) on the root, like exec(); with `deadlineMs`,
   * no answer within it means the connection is gone: it is marked lost and the call fails with ConnectionLostError.
   * The vanished-client watch finds that for pg's JavaScript client; pg-native has no socket of ours to watch, and a
   * statement it sends on a connection the server has closed can wait for ever.
   */
  execWithin(statements: string[], deadlineMs: number | undefined): Promise<QueryResult[]> {
    if (deadlineMs === undefined) return this.exec(this.root, statements);
    return this.queue.submit(this.root, () => withDeadline(() => this.send(statements), this.client, deadlineMs, (error) => this.markLost(error)));
  }

  /** The reason the connection was judged lost, if it was. */
  get lostReason(): unknown {
    return this.lost;
  }

  /**
   * Makes `manager.transaction()` on this transaction's EntityManager call `nested` (a NESTED savepoint of
   * ours, with its rules) instead of TypeORM's own savepoint, which knows nothing of concurrent siblings.
   */
  routeManagerTransactions(nested: (scope: TransactionScope, fn: () => Promise<unknown>) => Promise<unknown>): void {
    this.nestedCall = nested;
    const manager = this.queryRunner.manager;
    const transaction = (...args: unknown[]) => {
      const scope = this.callerScope();
      try {
        assertIsolation(transactionIsolation(args), scope, 'manager.transaction()');
      } catch (error) {
        return Promise.reject(error);
      }
      const fn = transactionCallback(args);
      return nested(scope, () => fn(manager));
    };
    shadowMethod(manager, 'transaction', transaction);
  }

  /**
   * A query runner for TypeORM code that asked for one of its own (`dataSource.createQueryRunner()`, see
   * routeIntoTransactions): it runs on this transaction's connection, its manual transactions are savepoints of ours,
   * and its `release()` leaves the connection to the transaction (routed-runner.ts). One small object per call.
   * `apart`: it stands for a connection of its own (data-source-routing.ts, standsApart).
   */
  routedRunner(apart = false): QueryRunner {
    this.routed ??= routedRunnerPrototype(this, this.queryRunner, { query: this.sendQuery, stream: this.sendStream });
    const runner = Object.create(this.routed) as QueryRunner & { apart?: boolean };
    if (apart) runner.apart = true;
    return runner;
  }

  /** Runs `fn` in a NESTED savepoint of `scope`, with the transaction host's rules (RoutingConnection). */
  nested(scope: TransactionScope, fn: () => Promise<unknown>): Promise<unknown> {
    return this.nestedCall!(scope, fn);
  }

  /** Throws WeakerIsolationError when `isolation` is stronger than what `scope` runs at (RoutingConnection). */
  assertIsolation(isolation: string | undefined, scope: TransactionScope, where: string, apart = false): void {
    assertIsolation(isolation, scope, where, apart);
  }

  /**
   * Sends library-built statements in one round trip in `scope` (after any held-back opening statements) and
   * returns the results of `statements` only. This uses the simple query protocol, where nothing is bound:
   * callers must only pass SQL whose every value the library computed (integers, fixed keywords), never caller text.
   */
  exec(scope: TransactionScope, statements: string[]): Promise<QueryResult[]> {
    const exempt = exemptFromUse();
    return this.queue.submit(scope, () => {
      markUsed(scope, exempt);
      return this.send(statements);
    });
  }

  /**
   * Runs several round trips in `scope` with nothing else on the connection in between: a savepoint, a lock and
   * its release must not let a concurrent statement of the same transaction land inside them, where a ROLLBACK
   * TO SAVEPOINT would silently undo it. `send` has exec()'s rule: library-computed SQL only.
   */
  exclusive<T>(scope: TransactionScope, steps: (send: (statements: string[], signal?: AbortSignal) => Promise<QueryResult[]>) => Promise<T>): Promise<T> {
    const exempt = exemptFromUse();
    return this.queue.submit(scope, () => {
      markUsed(scope, exempt);
      return steps((statements, signal) => this.send(statements, signal));
    });
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

  /**
   * Opens a savepoint inside `parent` (when `parent` has its turn) and returns its scope. Like BEGIN, its SAVEPOINT
   * is held back and travels with the first statement sent inside it; a savepoint that ends before anything was
   * sent in it costs no round trip at all. `kind` `test`: under a test transaction, a savepoint that stands for work
   * outside the app's transactions (TransactionHost.asideUnderTest()).
   */
  async savepoint(parent: TransactionScope, standIn?: StandIn, kind: 'savepoint' | 'test' = 'savepoint'): Promise<TransactionScope> {
    const scope = new TransactionScope(this, kind, parent, this.savepointName());
    // Standing for a transaction of the app under a test transaction: its readOnly and timeoutMs are set inside it.
    const settings = standIn ? standInStatements(standIn.readOnly, standIn.timeoutMs, standIn.settings) : [];
    if (standIn) Object.assign(scope, { isolation: standIn.isolation, readOnly: standIn.readOnly, timeoutMs: standIn.timeoutMs });
    await this.queue.submit(parent, async () => {
      (this.pending ??= []).push(`SAVEPOINT ${scope.savepoint!}`, ...settings);
      this.heldSavepoints.push(new HeldSavepoint(scope, 1 + settings.length));
      this.queue.top = scope;
    });
    return scope;
  }

  /**
   * Ends a savepoint: RELEASE (`commit`) or ROLLBACK TO + RELEASE. Savepoints still open inside it (un-awaited
   * NESTED calls) are rolled back first. Refused when the savepoint, or one around it, already ended. `standIn`: the
   * savepoint stands for an app transaction under a test transaction, and a commit of it ends as that transaction's
   * COMMIT would (RollbackOnlyError after a caught statement aborted it).
   */
  endSavepoint(scope: TransactionScope, commit: boolean, standIn = false): Promise<void> {
    scope.close();
    const name = scope.savepoint!;
    const rollBack = () => this.send([`ROLLBACK TO SAVEPOINT ${name}`, `RELEASE SAVEPOINT ${name}`]).catch((error: unknown) => this.markBroken(error));
    let aborted = false;
    return this.queue.submit(
      scope,
      async () => {
        if (this.dropHeldSavepoints(scope) || this.neverEstablished?.has(scope)) {
          // Never sent, or refused: nothing to release or roll back.
        } else if (commit && !scope.readOnly) {
          // A stand-in's statement_timeout would outlive RELEASE: the one around it applies again.
          const restore = scope.timeoutMs === undefined ? [] : [standInTimeout(scope.parent)];
          try {
            await this.send([`RELEASE SAVEPOINT ${name}`, ...restore]);
          } catch (error) {
            if (!standIn || sqlState(error) !== IN_FAILED_TRANSACTION) throw error;
            aborted = true;
            await rollBack();
          }
        } else {
          // A stand-in that commits asks first whether a failed statement aborted it (see below).
          if (commit && standIn && scope.used) aborted = await this.send(['SELECT 1']).then(() => false, (error: unknown) => (sqlState(error) === IN_FAILED_TRANSACTION ? true : Promise.reject(error)));
          // A read-only stand-in wrote nothing, and rolling it back also undoes its SET LOCAL transaction_read_only.
          await rollBack();
        }
        this.queue.top = scope.parent!;
        scope.finish(commit && !aborted ? 'released' : 'rolled back');
        // A savepoint standing for an app transaction (`standIn`, under a test transaction) ends as that transaction's
        // COMMIT would in production: after a failed statement its caller caught, rolled back, with RollbackOnlyError
        // (RELEASE would fail with a raw 25P02, and a read-only one would report success).
        if (aborted) throw new RollbackOnlyError('PostgreSQL had aborted it after a statement failed inside it');
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
    if (this.hasSubscribers) await this.broadcast('BeforeTransactionCommit');
    this.root.close();
    await this.queue.submit(
      this.root,
      async () => {
        this.dropHeld();
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
    if (this.hasSubscribers) await this.afterEnd('AfterTransactionCommit');
  }

  /** Rolls back (if anything was sent). Throws if the connection is broken; the caller then destroys it. */
  async rollback(): Promise<void> {
    if (this.hasSubscribers) {
      await this.broadcast('BeforeTransactionRollback').catch((error: unknown) => {
        logger.error(`A TypeORM subscriber's BeforeTransactionRollback failed: ${error instanceof Error ? error.stack : String(error)}`);
      });
    }
    this.root.close();
    try {
      if (!this.root.ended) {
        await this.queue.submit(
          this.root,
          async () => {
            this.dropHeld();
            if (this.begun) await this.send(['ROLLBACK']);
          },
          true,
        );
      }
    } finally {
      this.root.finish('rolled back');
      this.markEnded();
    }
    if (this.hasSubscribers) await this.afterEnd('AfterTransactionRollback');
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
    // Rolled back (by us, or by PostgreSQL answering COMMIT with ROLLBACK), or its outcome unknown.
    if (this.boundConnection && !this.root.committed) forgetConnectionBound(this.client);
    const reason = broken ?? this.broken ?? this.lost;
    try {
      if (reason !== undefined) {
        await this.queryRunner.releasePostgresConnection(reason instanceof Error ? reason : new Error(String(reason)));
      } else {
        await this.queryRunner.release();
      }
    } finally {
      this.drainedBy?.closed(this);
    }
  }

  /**
   * The app's shutdown gave up waiting for this transaction (ShutdownGate): everything waiting or issued later fails
   * with `error`, the statement running now is cancelled, and the connection is destroyed, so PostgreSQL rolls the
   * transaction back and releases its locks before the pool closes. The caller learns it when its code next reaches
   * the connection (a statement, or COMMIT), as `error`.
   */
  async abandon(error: ShutdownRollbackError): Promise<void> {
    this.abandonment ??= error;
    this.markBroken(error);
    await cancelRunningQuery(poolOf(this.dataSource), this.client);
    // The pool ends the client without waiting for the server. The server closes the socket only once the backend
    // has rolled the transaction back and released its locks: waiting for that (briefly) is what lets the app's close
    // report them free.
    const closed = socketClosed(this.client, ABANDON_WAIT_MS);
    await this.queryRunner.releasePostgresConnection(error);
    await closed;
  }

  // The transaction ends: nothing held back is sent any more.
  private dropHeld(): void {
    this.pending = undefined;
    this.heldSavepoints = freshArray();
    this.openingCount = 0;
  }

  /**
   * Work not finished on this connection: savepoints still open inside the root, statements queued or running, and
   * work of the root on its way here (TransactionScope.unsent; an increment whose batch is in flight counts twice).
   */
  get pendingWork(): number {
    let open = 0;
    for (let scope = this.queue.top; scope !== this.root; scope = scope.parent!) open++;
    return open + this.queue.pending - this.cleaningUp + this.root.unsent;
  }

  /** True once the connection itself broke, or the app's shutdown abandoned it: nothing more can be sent on it. */
  get isLost(): boolean {
    return this.lost !== undefined || this.abandonment !== undefined;
  }

  /**
   * Marks the connection unusable after a failure that leaves its state unknown (a savepoint that could not be
   * rolled back): everything waiting or issued later fails with `error`, and close() destroys the connection.
   */
  markBroken(error: unknown): void {
    this.broken ??= error;
    this.queue.fail(() => this.broken);
  }

  /**
   * The scope a TypeORM call made now belongs to: the caller's when it runs on this connection, else the
   * transaction itself (a manager kept from inside it and used from elsewhere).
   */
  callerScope(): TransactionScope {
    const scope = currentScope(this.dataSource);
    return scope && scope.connection === this ? scope : this.root;
  }

  /** Runs one TypeORM statement in `scope`'s turn. */
  typeormStatement<T>(scope: TransactionScope, sql: string, task: () => Promise<T>): Promise<T> {
    return this.statement(scope, () => {
      if (FOREIGN_ROLLBACK.test(sql)) {
        this.foreignRollbacks++;
        if (this.boundConnection) forgetConnectionBound(this.client);
      }
      return task();
    });
  }

  /**
   * A TypeORM stream (`createQueryBuilder().stream()`) in `scope`'s turn. Under a test transaction, outside the app's
   * transactions, the stream's own savepoint stays open until the stream has ended (RELEASE, or ROLLBACK TO when it
   * failed), while the stream goes to the caller at once: its cursor holds the connection until then anyway.
   */
  typeormStream<T>(scope: TransactionScope, sql: string, task: () => Promise<T>): Promise<T> {
    if (scope.kind !== 'test') return this.typeormStatement(scope, sql, task);
    const exempt = exemptFromUse();
    return new Promise<T>((handOut, fail) => {
      this.queue
        .submit(scope, async () => {
          markUsed(scope, exempt);
          const own = this.savepointName();
          await this.send([`SAVEPOINT ${own}`]);
          let stream: T;
          try {
            stream = await task();
          } catch (error) {
            await this.send([`ROLLBACK TO SAVEPOINT ${own}`, `RELEASE SAVEPOINT ${own}`]).catch((rollbackError: unknown) => this.markBroken(rollbackError));
            throw this.explain(error);
          }
          handOut(stream);
          const failed = await finished(stream as unknown as NodeJS.ReadableStream).then(
            () => false,
            () => true,
          );
          // Once the stream has ended, what is left is ours, not the app's work still running (pendingWork).
          this.cleaningUp++;
          try {
            await this.send(failed ? [`ROLLBACK TO SAVEPOINT ${own}`, `RELEASE SAVEPOINT ${own}`] : [`RELEASE SAVEPOINT ${own}`]);
          } catch (error) {
            this.markBroken(error);
          } finally {
            this.cleaningUp--;
          }
        })
        .catch(fail);
    });
  }

  // One statement in `scope`'s turn, after the held-back opening statements. Under a test transaction, a statement
  // outside the app's transactions gets a savepoint of its own: as in autocommit, its failure undoes only itself
  // instead of aborting the test's transaction.
  private statement<T>(scope: TransactionScope, run: () => Promise<T>): Promise<T> {
    const exempt = exemptFromUse();
    return this.queue.submit(scope, () => {
      markUsed(scope, exempt);
      if (this.pending || scope.kind === 'test') return this.statementAfterOpening(scope, run);
      // The common case, nothing held back and no savepoint of its own: the statement's promise, no async frame around it.
      try {
        return this.watched(run(), this.rethrowExplained);
      } catch (error) {
        return Promise.reject(this.explain(error));
      }
    });
  }

  private readonly rethrowExplained = (error: unknown): never => {
    throw this.explain(error);
  };

  // statement() when the held-back opening statements go first, or under a test transaction with a savepoint of its own.
  private async statementAfterOpening<T>(scope: TransactionScope, run: () => Promise<T>): Promise<T> {
    const own = scope.kind === 'test' ? this.savepointName() : undefined;
    if (this.pending || own) await this.send(own ? [`SAVEPOINT ${own}`] : []);
    try {
      const result = await this.watched(run());
      if (own) await this.send([`RELEASE SAVEPOINT ${own}`]);
      return result;
    } catch (error) {
      if (own) await this.send([`ROLLBACK TO SAVEPOINT ${own}`, `RELEASE SAVEPOINT ${own}`]).catch((rollbackError: unknown) => this.markBroken(rollbackError));
      throw this.explain(error);
    }
  }

  // `signal`: when it aborts while the batch runs (a lock wait), the server is asked to cancel it.
  private send(statements: string[], signal?: AbortSignal): Promise<QueryResult[]> {
    const opening = this.pending;
    const held = this.heldSavepoints;
    this.pending = undefined;
    if (held.length > 0) this.heldSavepoints = freshArray();
    if (this.openingCount > 0) {
      this.begun = true;
      this.openingCount = 0;
    }
    const batch = opening ? opening.concat(statements) : statements;
    if (batch.length === 0) return Promise.resolve([]);
    const sql = batch.join(';\n');
    this.dataSource.logger.logQuery(sql, undefined, this.queryRunner);
    if (signal || this.cancelling) return this.sendCancellable(sql, opening, held, signal);
    // The common case, no cancel to arm or to deliver first: the batch's promise and one reaction, no async frame.
    try {
      return this.watched(this.client.query(sql)).then(
        (raw) => this.batchResults(raw, opening),
        (error: unknown) => {
          throw this.batchFailure(error, sql, held);
        },
      );
    } catch (error) {
      return Promise.reject(this.batchFailure(error, sql, held));
    }
  }

  // send() for a batch that may be cancelled (a lock wait with a signal), or after a cancel still on its way.
  private async sendCancellable(sql: string, opening: string[] | undefined, held: readonly { scope: TransactionScope }[], signal?: AbortSignal): Promise<QueryResult[]> {
    if (this.cancelling) await this.cancelling;
    const cancel = () => (this.cancelling = cancelRunningQuery(poolOf(this.dataSource), this.client));
    signal?.addEventListener('abort', cancel, { once: true });
    let raw: QueryResult | QueryResult[];
    try {
      raw = await this.watched(this.client.query(sql));
    } catch (error) {
      throw this.batchFailure(error, sql, held);
    } finally {
      signal?.removeEventListener('abort', cancel);
      // A cancel that was sent must reach the backend while it is idle, not during our next statement.
      if (this.cancelling) await this.cancelling.finally(() => (this.cancelling = undefined));
    }
    return this.batchResults(raw, opening);
  }

  // The results of a batch's own statements (without the held-back opening ones sent before them).
  private batchResults(raw: QueryResult | QueryResult[], opening: string[] | undefined): QueryResult[] {
    const results = Array.isArray(raw) ? raw : [raw];
    if (!opening) return results;
    if (this.bound?.byBackend && !this.boundConnection) {
      const at = opening.indexOf(this.bound.firstOpening);
      if (at >= 0) this.boundConnection = connectionBounded(this.bound, this.client, results[at]);
    }
    return results.slice(opening.length);
  }

  private batchFailure(error: unknown, sql: string, held: readonly { scope: TransactionScope }[]): unknown {
    // In an aborted transaction the batch's first statement fails and nothing after it runs.
    if (sqlState(error) === IN_FAILED_TRANSACTION) for (const { scope } of held) (this.neverEstablished ??= new WeakSet()).add(scope);
    return this.explain(asQueryFailed(error, sql));
  }

  // A statement in flight, watched for a server that stopped answering (vanished-client.ts).
  // `failed`: what a failure becomes (it throws), in the watch's own reaction rather than a promise more.
  private watched<T>(work: Promise<T>, failed?: (error: unknown) => never): Promise<T> {
    if (this.bound) return watchStatement(work, this.client, poolOf(this.dataSource), this.bound, this.lostBy, failed);
    return failed ? work.catch(failed) : work;
  }

  private readonly lostBy = (error: unknown): void => this.markLost(error);

  // Rolls back the savepoints still open inside `scope` (un-awaited NESTED calls), so that `scope` can end.
  private async rollBackSavepointsAbove(scope: TransactionScope): Promise<void> {
    let outermost = this.queue.top;
    while (outermost.parent !== scope) outermost = outermost.parent!;
    const name = outermost.savepoint!;
    if (!this.dropHeldSavepoints(outermost) && !this.neverEstablished?.has(outermost)) await this.send([`ROLLBACK TO SAVEPOINT ${name}`, `RELEASE SAVEPOINT ${name}`]);
    for (let swept: TransactionScope = this.queue.top; swept !== scope; swept = swept.parent!) swept.finish('abandoned');
    this.queue.top = scope;
  }

  // Forgets the held-back SAVEPOINT of `scope` and of the savepoints inside it; false when `scope`'s own was sent
  // already (the ones inside it that were not are forgotten all the same).
  private dropHeldSavepoints(scope: TransactionScope): boolean {
    const from = this.heldSavepoints.findIndex((held) => scope.encloses(held.scope));
    if (from < 0) return false;
    const dropped = this.heldSavepoints.splice(from);
    this.pending!.splice(this.pending!.length - dropped.reduce((count, held) => count + held.statements, 0));
    if (this.pending!.length === 0) this.pending = undefined;
    return dropped[0]!.scope === scope;
  }

  // A lost connection: every later statement fails with ConnectionLostError (never with TypeORM's "query
  // runner already released", which would hide why), or IdleInTransactionTimeoutError when the server ended the
  // session of this idle transaction, and the connection is destroyed when closed.
  private explain(error: unknown): unknown {
    if (error instanceof ConnectionLostError || (!isConnectionLoss(error) && !idleInTransactionTimeout(error))) return error;
    this.markLost(error);
    // Judged lost by the watchdog: its error says why (no answer within the bound).
    if (this.lost instanceof ConnectionLostError) return this.lost;
    return idleInTransactionTimeout(this.lost) ?? new ConnectionLostError(error);
  }

  // The server ending the session of an idle transaction (25P03) usually comes as the client's error event.
  private markLost(error: unknown): void {
    this.lost ??= error;
    this.queue.fail(() => idleInTransactionTimeout(this.lost) ?? (this.lost instanceof ConnectionLostError ? this.lost : new ConnectionLostError(this.lost)));
  }

  // pg's native client does not pass on the server's 25P03: inferredIdleTimeout() restores it when the facts fit.
  private readonly onClientError = (error: unknown): void =>
    this.markLost(inferredIdleTimeout(error, this.client, this.dataSource, this.queue.idleForMs) ?? error);

  // The transaction has ended: a failing subscriber must not make a commit look like a rollback.
  // Its queries run after the end, in autocommit on this connection (still ours until close()), as with plain TypeORM.
  private async afterEnd(event: 'AfterTransactionCommit' | 'AfterTransactionRollback'): Promise<void> {
    const after = new TransactionScope(this, 'after transaction');
    this.queue.top = after;
    try {
      await runInScope(this.dataSource, after, () => this.broadcast(event));
    } catch (error) {
      logger.error(`A TypeORM subscriber's ${event} failed after the transaction ended: ${error instanceof Error ? error.stack : String(error)}`);
    } finally {
      after.close();
      after.finish('ended');
    }
  }

  /**
   * Tells TypeORM subscribers (beforeTransactionStart... afterTransactionRollback) what the transaction does;
   * with none registered, skips TypeORM's broadcast and its promise per event.
   */
  broadcast(event: 'BeforeTransactionStart' | 'AfterTransactionStart' | 'BeforeTransactionCommit' | 'AfterTransactionCommit' | 'BeforeTransactionRollback' | 'AfterTransactionRollback'): Promise<void> {
    return this.hasSubscribers ? this.queryRunner.broadcaster.broadcast(event) : Promise.resolve();
  }

  /** True when TypeORM subscribers are registered: without any, the transaction's events cost not even an await. */
  get hasSubscribers(): boolean {
    return this.dataSource.subscribers.length > 0;
  }

  private markEnded(): void {
    this.queryRunner.isTransactionActive = false;
    this.queryRunner.transactionDepth = 0;
  }
}

// TypeORM's PostgresDriver keeps its pg Pool as `master`.
function poolOf(dataSource: DataSource): Pool {
  return (dataSource.driver as unknown as { master: Pool }).master;
}

// Records that something ran in the transaction `scope` belongs to (the nearest scope that stands for one): its
// isolation can no longer be raised (raiseIsolation()). Not when that is `exempt`: under a test transaction, the
// transaction a lease's statement or TypeORM's own API (joinDataSource: false) runs in, which in production they run
// outside of (exemptFromUse()).
function markUsed(scope: TransactionScope, exempt: TransactionScope | undefined): void {
  const standing = standingFor(scope);
  // A session lock's connection outside a transaction stands for none.
  if (standing !== exempt && (standing.isolation !== undefined || standing.kind === 'test')) standing.used = true;
}

// The statement_timeout that applies around a stand-in savepoint once it is released: its nearest enclosing stand-in's, else the session's.
function standInTimeout(around: TransactionScope | undefined): string {
  for (let scope = around; scope; scope = scope.parent) if (scope.timeoutMs !== undefined) return standInStatements(false, scope.timeoutMs)[0]!;
  return 'SET LOCAL statement_timeout TO DEFAULT';
}

// A savepoint whose SAVEPOINT is still held back, with how many held-back statements open it (a class: see fresh-array.ts).
class HeldSavepoint {
  constructor(
    readonly scope: TransactionScope,
    readonly statements: number,
  ) {}
}

// Resolves once `client`'s connection has ended (pg's 'end' event), or after `ms` (a server that no longer answers).
function socketClosed(client: PoolClient, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    timer.unref();
    function done(): void {
      clearTimeout(timer);
      client.removeListener('end', done);
      resolve();
    }
    client.once('end', done);
  });
}
