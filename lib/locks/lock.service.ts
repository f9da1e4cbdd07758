import { Inject, Injectable, Logger, Optional, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { InvalidOptionError, LockNotAcquiredError, LockRequiresTransactionError, LockTimeoutError, SessionLockPoolerError } from '../errors.js';
import { sessionScopeMethods, type PoolerMode } from '../server/pooler.js';
import { DEFAULT_DATA_SOURCE_NAME } from '../transaction/resolve-data-source.js';
import { currentScope, type TransactionScope } from '../transaction/transaction-scope.js';
import { DEFAULT_ACQUIRE_TIMEOUT_MS, TransactionHost } from '../transaction/transaction.host.js';
import { IsolationLevel, Propagation, type TransactionOptions } from '../transaction/transaction.options.js';
import { TXLOCK_DATA_SOURCE_NAME, TXLOCK_MODULE_OPTIONS } from '../txlock.module-definition.js';
import type { TxLockModuleOptions } from '../txlock-options.interface.js';
import { advisoryLockKey, RESERVED_LOCK_NAMESPACE, type LockKey } from './lock-key.js';
import { failureReason, lockRequest, type LockRequest } from './lock-request.js';
import { NotAcquired, type LockOutcome, type LockRunResult } from './lock-result.js';
import { readAdvisoryOptions, readTableLockOptions, type AdvisoryLockCallOptions, type TableLockMode, type TableLockOptions } from './lock.options.js';
import { BranchLocks } from './branch-locks.js';
import { readHolders, type AdvisoryLockHolder } from './lock-holders.js';
import { currentSessionKeys, runAsTestSession, sessionLockSignal, SessionLocks } from './session-locks.js';
import { takeAdvisoryLocks, takeTableLocks } from './transaction-locks.js';
import { resolveTables, validateTableLock, type TableTarget } from './table-targets.js';

/**
 * Advisory and table locks on PostgreSQL: mutual exclusion across processes and replicas. The decorators
 * `@AdvisoryLock()` and `@TableLock()` call it; inject it to lock inside your own code.
 *
 * Transaction scope (the default) takes the lock in the transaction it opens or joins, so it is released
 * at commit or rollback, never before the writes it protects are committed. In a transaction it opens,
 * the lock travels in the same round trip as BEGIN.
 *
 * @example
 * await locks.withAdvisoryLock(['account', id], async () => {
 *   const account = await txHost.getRepository(Account).findOneByOrFail({ id });
 *   account.balance += amount;
 *   await txHost.getRepository(Account).save(account);
 * }, { timeoutMs: 2_000 });
 */
@Injectable()
export class LockService implements OnModuleInit {
  private readonly logger = new Logger('TxLock');
  private readonly sessions: SessionLocks;
  private readonly pooler: PoolerMode;

  constructor(
    private readonly txHost: TransactionHost,
    @Inject(TXLOCK_MODULE_OPTIONS) options: TxLockModuleOptions,
    @Optional() private readonly discovery?: DiscoveryService,
    @Optional() @Inject(TXLOCK_DATA_SOURCE_NAME) private readonly dataSourceName: string = DEFAULT_DATA_SOURCE_NAME,
  ) {
    this.pooler = options.pooler ?? 'none';
    this.sessions = new SessionLocks(() => txHost.dataSource, options.acquireTimeoutMs ?? DEFAULT_ACQUIRE_TIMEOUT_MS, this.logger, this.pooler);
  }

  /**
   * Behind a transaction pooler (`pooler: 'transaction'`), fails the bootstrap when a provider or controller of the
   * app has a method decorated with a session-scope lock on this DataSource: it could never run.
   */
  onModuleInit(): void {
    if (this.pooler !== 'transaction' || !this.discovery) return;
    const wrappers = [...this.discovery.getProviders(), ...this.discovery.getControllers()];
    const types = wrappers.flatMap((wrapper) => [wrapper.metatype, (wrapper.instance as object | undefined)?.constructor]);
    const methods = sessionScopeMethods(types, this.dataSourceName);
    if (methods.length > 0) throw new SessionLockPoolerError(`@AdvisoryLock({ scope: 'session' }) ${methods.join(', ')}`, 'declared');
  }

  /**
   * Runs `fn` holding the advisory lock `key` (a string, number, bigint, or an array of parts such as
   * `['account', id]`). Waits for it as the options say; throws LockTimeoutError after `timeoutMs`, or
   * LockNotAcquiredError with `nowait`. Re-entering a key this transaction (or session) already holds is a no-op.
   */
  withAdvisoryLock<T>(key: LockKey, fn: () => T | Promise<T>, options: AdvisoryLockCallOptions = {}): Promise<T> {
    return this.withAdvisoryLocks([key], fn, options);
  }

  /**
   * Like withAdvisoryLock() for several keys at once (each key may itself be an array of parts). They are
   * taken in the order of their 64-bit values, duplicates once, so callers naming the same keys in any
   * order never deadlock.
   */
  withAdvisoryLocks<T>(keys: readonly LockKey[], fn: () => T | Promise<T>, options: AdvisoryLockCallOptions = {}): Promise<T> {
    try {
      const snapshot = readAdvisoryOptions(options, 'withAdvisoryLock()');
      return this.locked(this.request(keys, snapshot, 'withAdvisoryLock()'), fn, snapshot);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * withAdvisoryLocks() for `@AdvisoryLock()`, whose options are its own copy, checked when it was applied: they
   * cannot have changed since, so they are not read again on every call. Not part of the public API.
   * @internal
   */
  withCheckedAdvisoryLocks<T>(keys: readonly LockKey[], fn: () => T | Promise<T>, options: AdvisoryLockCallOptions): Promise<T> {
    try {
      return this.locked(this.request(keys, options, '@AdvisoryLock()'), fn, options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * withAdvisoryLock() for nestjs-txlock's own features (single flight): the key lives in the namespace
   * reserved for the library, and the lock in a transaction of its own (REQUIRES_NEW), committed as soon
   * as `fn` is done whatever the caller's transaction does. Not part of the public API.
   * @internal
   */
  withLibraryLock<T>(key: LockKey, fn: () => T | Promise<T>): Promise<T> {
    // READ COMMITTED whatever the module default: reads after the lock must see what the previous holder committed.
    const options: AdvisoryLockCallOptions & Pick<TransactionOptions, 'isolation'> = { propagation: Propagation.REQUIRES_NEW, isolation: IsolationLevel.READ_COMMITTED };
    return this.locked(lockRequest([key], { ...options, namespace: RESERVED_LOCK_NAMESPACE }, 'single_flight'), fn, options);
  }

  private async locked<T>(request: LockRequest, fn: () => T | Promise<T>, options: AdvisoryLockCallOptions & Pick<TransactionOptions, 'isolation'>): Promise<T> {
    if (options.scope === 'session' || request.observation) {
      const outcome = await this.runLocked(request, fn, options);
      if (!outcome.ran) throw outcome.failure;
      return outcome.value;
    }
    // The common case (a transaction-scope lock, telemetry off) without the outcome object and its async frames.
    try {
      return await this.lockInTransaction(request, fn, options);
    } catch (error) {
      throw error instanceof NotAcquired ? error.failure : error;
    }
  }

  /**
   * Runs `fn` only if the lock can be taken: at once (default), or within `timeoutMs`. Returns
   * `{ ran: false, reason }` without running fn otherwise (`reason`: `'locked'` or `'timeout'`). For the
   * cron-style "one replica runs, the others skip" pattern.
   */
  async tryAdvisoryLock<T>(key: LockKey, fn: () => T | Promise<T>, options: AdvisoryLockCallOptions = {}): Promise<LockRunResult<T>> {
    return this.tryAdvisoryLocks([key], fn, options);
  }

  /** tryAdvisoryLock() for several keys: fn runs only if all of them can be taken. */
  async tryAdvisoryLocks<T>(keys: readonly LockKey[], fn: () => T | Promise<T>, options: AdvisoryLockCallOptions = {}): Promise<LockRunResult<T>> {
    const snapshot = readAdvisoryOptions(options, 'tryAdvisoryLock()');
    const trying = { ...snapshot, nowait: snapshot.timeoutMs === undefined };
    const outcome = await this.runLocked(this.request(keys, trying, 'tryAdvisoryLock()'), fn, trying);
    if (outcome.ran) return outcome;
    // An aborted wait is not "the lock was busy": the caller asked to stop.
    if (!(outcome.failure instanceof LockNotAcquiredError || outcome.failure instanceof LockTimeoutError)) throw outcome.failure;
    return { ran: false, reason: failureReason(outcome.failure) };
  }

  /**
   * Locks tables in the current transaction (`LOCK TABLE ... IN <mode> MODE`) until it ends. Targets are
   * entity classes (their schema-qualified table) or table names; all are quoted, and locked in sorted
   * order. Throws LockRequiresTransactionError outside a transaction, LockTimeoutError/LockNotAcquiredError
   * when `timeoutMs`/`nowait` run out (the caller's transaction stays usable), TableNotFoundError.
   */
  async lockTables(targets: TableTarget | readonly TableTarget[], mode: TableLockMode, options: TableLockOptions = {}): Promise<void> {
    const snapshot = readTableLockOptions(options, 'lockTables()');
    const list = validateTableLock(mode, targets, snapshot, 'lockTables()');
    const scope = this.txHost.scope();
    if (!scope) throw new LockRequiresTransactionError('lockTables()');
    await takeTableLocks(scope, resolveTables(this.txHost.dataSource, list), mode, snapshot, false);
  }

  /** Runs `fn` in a transaction (opened or joined as `options.propagation` says) that first locks the tables. */
  async withTableLock<T>(targets: TableTarget | readonly TableTarget[], mode: TableLockMode, fn: () => T | Promise<T>, options: TableLockOptions = {}): Promise<T> {
    const snapshot = readTableLockOptions(options, 'withTableLock()');
    const list = validateTableLock(mode, targets, snapshot, 'withTableLock()');
    try {
      return await this.inTransaction({ propagation: snapshot.propagation }, fn, async (scope, own) => {
        await takeTableLocks(scope, resolveTables(this.txHost.dataSource, list), mode, snapshot, own);
        return undefined;
      });
    } catch (error) {
      throw error instanceof NotAcquired ? error.failure : error;
    }
  }

  /**
   * Inside a session-scope lock call (`scope: 'session'`), its signal: aborted with LockLostError when the connection
   * holding the lock is found lost (it stopped answering within the module's `vanishedClientTimeoutMs`, or broke), after
   * which another process may hold the lock. The call itself rejects with that error at once; long work should stop
   * on it, and fence its writes (LeaseService.fence(), or a version column). Undefined outside such a call.
   *
   * @example
   * await locks.withAdvisoryLock('nightly-export', async () => {
   *   for (const chunk of chunks) {
   *     locks.sessionLockSignal()?.throwIfAborted();
   *     await exportChunk(chunk);
   *   }
   * }, { scope: 'session' });
   */
  sessionLockSignal(): AbortSignal | undefined {
    return sessionLockSignal(this.txHost.dataSource);
  }

  /**
   * Who holds or awaits advisory locks in this database (all of them, or only `key`'s): key, mode,
   * backend pid, since when, from where. Reads pg_locks and pg_stat_activity.
   */
  async holders(key?: LockKey, options: { namespace?: number } = {}): Promise<AdvisoryLockHolder[]> {
    return readHolders(this.txHost.manager, key === undefined ? undefined : advisoryLockKey(key, options.namespace));
  }

  private request(keys: readonly LockKey[], options: AdvisoryLockCallOptions, where: string): LockRequest {
    if (!Array.isArray(keys) || keys.length === 0) throw new InvalidOptionError(`${where} keys`, keys, 'at least one key');
    return lockRequest(keys, options);
  }

  private runLocked<T>(request: LockRequest, fn: () => T | Promise<T>, options: AdvisoryLockCallOptions & Pick<TransactionOptions, 'isolation'>): Promise<LockOutcome<T>> {
    const outcome = this.lockAndRun(request, fn, options);
    return request.observation ? request.observation.settle(outcome) : outcome;
  }

  private async lockAndRun<T>(
    request: LockRequest,
    fn: () => T | Promise<T>,
    options: AdvisoryLockCallOptions & Pick<TransactionOptions, 'isolation'>,
  ): Promise<LockOutcome<T>> {
    if (options.scope === 'session') {
      if (this.pooler === 'transaction') throw new SessionLockPoolerError(request.label, 'declared');
      const scope = this.txHost.scope();
      const ended = scope?.refusal();
      if (ended) throw ended;
      if (scope) {
        throw new InvalidOptionError('scope', 'session', '"transaction" inside a transaction (a session lock would be released before the transaction commits)');
      }
      // A nested call reuses the session its caller holds: part of work already running.
      if (!this.txHost.shutdown.isOpen) this.txHost.shutdown.admit('session lock', currentSessionKeys(this.txHost.dataSource) !== undefined);
      const test = currentScope(this.txHost.dataSource)?.root;
      if (test?.kind === 'test') return this.sessionLockUnderTest(test, request, fn);
      return this.sessions.run(request, fn);
    }
    try {
      return { ran: true, value: await this.lockInTransaction(request, fn, options) };
    } catch (error) {
      if (error instanceof NotAcquired) return { ran: false, failure: error.failure };
      throw error;
    }
  }

  // Under nestjs-txlock/testing, a session-scope lock is taken in the test's transaction, as the app's transaction-scope
  // locks are there (docs/testing.md): held until the test ends, and taking turns in the process with the test's other
  // lock calls on its keys (the test transaction's BranchLocks). On a pooled connection of its own it would wait for
  // ever for a key a transaction-scope lock of the same test took before. The call holds the test's connection while
  // it runs (asideUnderTest()): its body's statements must not wait for an app transaction of another request that
  // waits for its keys. The body runs outside the app's transactions, as in production.
  private sessionLockUnderTest<T>(test: TransactionScope, request: LockRequest, fn: () => T | Promise<T>): Promise<LockOutcome<T>> {
    const ended = test.refusal();
    if (ended) return Promise.reject(ended);
    return this.txHost.asideUnderTest((aside) =>
      BranchLocks.of(test.locals).run(
        request,
        async (timeoutMs): Promise<LockOutcome<T>> => {
          const failure = await takeAdvisoryLocks(aside, request, timeoutMs, false, this.logger);
          request.observation?.acquired(failure);
          if (failure !== undefined) return { ran: false, failure };
          return { ran: true, value: await runAsTestSession(this.txHost.dataSource, aside.connection, fn) };
        },
        (failure) => ({ ran: false, failure }),
        aside,
      ),
    );
  }

  // A transaction-scope advisory lock call; a lock that could not be had comes out as NotAcquired.
  private lockInTransaction<T>(request: LockRequest, fn: () => T | Promise<T>, options: AdvisoryLockCallOptions & Pick<TransactionOptions, 'isolation'>): Promise<T> {
    return this.inTransaction(
      { propagation: options.propagation, isolation: options.isolation },
      fn,
      (scope, own, timeoutMs) => takeAdvisoryLocks(scope, request, timeoutMs, own, this.logger),
      request,
    );
  }

  /**
   * Runs `take` then `fn` in a transaction. Joining the caller's transaction (REQUIRED/MANDATORY with one
   * active), `take` runs before joining: its savepoint keeps a busy lock from aborting or poisoning the
   * caller's transaction. Otherwise it runs first thing inside the transaction or savepoint opened for the
   * call (`own`), where a failure simply rolls that back. `take` returns an error to stop before fn, which
   * comes out as NotAcquired. With `request` (advisory keys), the call also holds the keys against the other
   * branches of the same transaction (BranchLocks) from before `take` until `fn` has settled; the time spent
   * waiting for them counts against the request's `timeoutMs`, and `take` gets what is left.
   */
  private inTransaction<T>(
    transaction: Pick<TransactionOptions, 'propagation' | 'isolation'>,
    fn: () => T | Promise<T>,
    take: (scope: TransactionScope, own: boolean, timeoutMs: number | undefined) => Promise<unknown>,
    request?: LockRequest,
  ): Promise<T> {
    const { propagation } = transaction;
    const guarded = (scope: TransactionScope, own: boolean, body: () => Promise<T>): Promise<T> => {
      const start = async (timeoutMs: number | undefined): Promise<T> => {
        const failure = await take(scope, own, timeoutMs);
        request?.observation?.acquired(failure);
        if (failure !== undefined) throw new NotAcquired(failure);
        // Awaited rather than returned: an async function returning a promise costs two more jobs and a promise.
        return await body();
      };
      if (!request) return start(undefined);
      // A transaction that has ended says so before its branch locks answer (a nowait call would say the key is busy).
      const ended = scope.refusal();
      if (ended) return Promise.reject(ended);
      return BranchLocks.of(scope.root.locals).run(
        request,
        start,
        (failure) => {
          throw new NotAcquired(failure);
        },
        scope,
      );
    };
    try {
      const outer = this.txHost.scope();
      const joins = outer && (propagation === undefined || propagation === Propagation.REQUIRED || propagation === Propagation.MANDATORY);
      // The options were checked with the lock's (lock.options.ts): run without reading them again.
      if (joins) return guarded(outer, false, () => this.txHost.runChecked({ propagation }, fn));
      return this.txHost.runChecked(transaction, () => guarded(this.txHost.scope()!, true, async () => await fn()));
    } catch (error) {
      return Promise.reject(error);
    }
  }
}
