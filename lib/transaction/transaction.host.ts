import { Inject, Injectable, Logger, Optional, type BeforeApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type { AsyncResource } from 'node:async_hooks';
import type { Pool, QueryResult } from 'pg';
import type { DataSource, EntityManager, EntityTarget, ObjectLiteral, QueryRunner, Repository } from 'typeorm';
import {
  ClientDisconnectedError,
  CommitOutcomeUnknownError,
  ConnectionLostError,
  InvalidOptionError,
  RollbackOnlyError,
  SerializationRetriesExhaustedError,
  TransactionNotAllowedError,
  TransactionRequiredError,
  TestKitLimitError,
  TransactionTimeoutError,
  TxLockConfigurationError,
} from '../errors.js';
import { DEFAULT_SHUTDOWN_GRACE_MS } from '../lifecycle/shutdown.options.js';
import { ShutdownGate } from '../lifecycle/shutdown-gate.js';
import { startTelemetry, telemetry } from '../telemetry/telemetry.js';
import { traceTransaction, type TransactionObservation } from '../telemetry/transaction-telemetry.js';
import { TXLOCK_DATA_SOURCE_NAME, TXLOCK_MODULE_OPTIONS } from '../txlock.module-definition.js';
import { validateModuleOptions } from '../txlock-options.validation.js';
import type { TxLockModuleOptions } from '../txlock-options.interface.js';
import { requestAbortSignal } from './client-disconnect.interceptor.js';
import { longLivedResult, type LongLivedResult } from './result-lifetime.js';
import { isRetryable, sqlState } from './sql-state.js';
import { sendAutocommit } from './autocommit-statement.js';
import { explainInTransaction } from './library-statement-errors.js';
import { routeIntoTransactions } from './data-source-routing.js';
import { DEFAULT_DATA_SOURCE_NAME, resolveDataSource } from './resolve-data-source.js';
import { TransactionConnection } from './transaction-connection.js';
import {
  bindCallerToTest,
  currentScope,
  holdsConnection,
  runInScope,
  runOutsideTransactions,
  runOutsideUnderTest,
  setTestScope,
  testScopeOf,
  unbindCallerFromTest,
  type TransactionHook,
  type TransactionScope,
} from './transaction-scope.js';
import type { StandIn } from './transaction-connection.js';
import { assertIsolation, isolationFromSetting } from './isolation.js';
import { PreparedStatements } from './prepared-statements.js';
import { Propagation, readTransactionOptions, type TransactionOptions } from './transaction.options.js';
import { processWide } from '../common/process-state.js';
import { currentSettingsContext } from './request-context.js';
import { mergeSettings, readSettings, type SettingEntry } from './transaction-settings.js';
import { setIdleInTransactionTimeout } from './native-idle-timeout.js';
import { computeBound, DEFAULT_VANISHED_CLIENT_TIMEOUT_MS, keepPoolAlive, setVanishedClientBound, vanishedClientBound, type VanishedClientBound } from './vanished-client.js';
import { CallContextSlot } from '../common/call-context.js';

/** How long a transaction waits for a pooled connection when `acquireTimeoutMs` is not set. */
export const DEFAULT_ACQUIRE_TIMEOUT_MS = 10_000;
const DEFAULT_BACKOFF = { minMs: 5, maxMs: 250 };

// The live registration of each DataSource: a second one for the same DataSource is a configuration error.
const registrations = processWide('transaction-hosts', () => new WeakMap<DataSource, TransactionHost>());
// Tags of the scopes shared work is grouped by under a test transaction (sharingTag()).
const scopeTags = new WeakMap<TransactionScope, string>();
let lastScopeTag = 0;
// A test transaction begun with { strict: true }, and whether the kit said once what REQUIRES_NEW does there.
const STRICT_TEST = processWide('strict-test-key', () => Symbol('nestjs-txlock:strict-test'));
let warnedOfRequiresNew = false;
// The settings of each transaction begun with some (what a call joining it must agree with).
const scopeSettings = processWide('scope-settings', () => new WeakMap<TransactionScope, readonly SettingEntry[]>());
// Settings fixed for shared work run detached (coalesced increments, single flights, lease renewals): the ones of
// the callers that share it, computed when it was started, since the request it came from is not its context.
const pinnedSettings = new CallContextSlot<ReadonlyMap<DataSource, readonly SettingEntry[]>>('pinned-settings');

/**
 * The current transaction, and the one way to start one without a decorator. `@Transactional()` calls
 * `run()`; services inject this to reach the transaction the caller is in.
 *
 * @example
 * constructor(private readonly tx: TransactionHost) {}
 * await this.tx.run({ isolation: 'SERIALIZABLE', retries: 3 }, async () => {
 *   await this.tx.getRepository(Account).increment({ id }, 'balance', 10);
 * });
 */
@Injectable()
export class TransactionHost implements OnModuleInit, BeforeApplicationShutdown {
  private readonly logger = new Logger('TxLock');
  private resolvedDataSource?: DataSource;
  private unroute?: () => void;
  private readonly statements = new PreparedStatements();
  // The server's default_transaction_isolation for this DataSource's role, as the bootstrap check read it.
  private serverIsolation?: string;
  // What app.close() does to this registration's work (docs/production.md); replaced by a fresh one at onModuleInit.
  private gate = new ShutdownGate();

  constructor(
    @Inject(TXLOCK_MODULE_OPTIONS) private readonly options: TxLockModuleOptions,
    private readonly moduleRef: ModuleRef,
    @Optional() @Inject(TXLOCK_DATA_SOURCE_NAME) private readonly dataSourceName: string = DEFAULT_DATA_SOURCE_NAME,
  ) {
    // forRoot() checked them already; forRootAsync()'s factory result is checked here, as soon as it exists.
    validateModuleOptions(options);
  }

  /**
   * Fails the bootstrap early when there is no usable PostgreSQL DataSource, or when another registration of
   * TxLockModule already serves it; then makes the DataSource's own calls join its transactions (unless
   * `joinDataSource: false`). Switches the library's telemetry on or off by the OpenTelemetry providers registered.
   */
  async onModuleInit(): Promise<void> {
    const dataSource = this.dataSource;
    const other = registrations.get(dataSource);
    if (other && other !== this) {
      throw new TxLockConfigurationError(
        `TxLockModule is registered twice for the same DataSource (${describeDataSource(dataSource)}). Register it once per ` +
          `DataSource: TxLockModule.forRoot() for the default one, TxLockModule.forRoot({ dataSource: '<name>' }) for each named one.`,
      );
    }
    registrations.set(dataSource, this);
    this.gate = ShutdownGate.open(dataSource);
    // Until the bootstrap check has identified the server: what every supported version (13+) accepts.
    this.boundVanishedClients(13, false);
    if (this.options.joinDataSource !== false) this.unroute = this.routeDataSource();
    // Telemetry is on when an OpenTelemetry tracer or meter provider is registered by now.
    await startTelemetry();
  }

  private routeDataSource(joins?: (scope: TransactionScope) => boolean, apart = false): () => void {
    const dataSource = this.dataSource;
    return routeIntoTransactions(dataSource, (scope, body) => runInScope(dataSource, scope, () => this.run({ propagation: Propagation.NESTED }, body)), joins, apart);
  }

  /**
   * The app is closing (`app.close()`, or SIGTERM with `enableShutdownHooks()`): refuses new transactions, locks, leases
   * and single flights (ShuttingDownError), stops the outbox relay, aborts `shutdownSignal` and held leases' signals,
   * waits up to `shutdown.graceMs` for running transactions and lock calls, rolls back the ones still running
   * (ShutdownRollbackError), then puts the DataSource back as it was. Nest runs every `beforeApplicationShutdown` before
   * any `onApplicationShutdown`, where @nestjs/typeorm destroys the DataSource and its pool, so all of this happens while
   * the pool is still open. Not `onModuleDestroy`: the app's own providers may still use the library in theirs, and the
   * DataSource must keep routing into running transactions until they end (docs/production.md).
   */
  async beforeApplicationShutdown(): Promise<void> {
    await this.gate.close(this.options.shutdown?.graceMs ?? DEFAULT_SHUTDOWN_GRACE_MS, this.logger);
    this.unroute?.();
    this.unroute = undefined;
    if (this.resolvedDataSource && registrations.get(this.resolvedDataSource) === this) {
      registrations.delete(this.resolvedDataSource);
      setVanishedClientBound(this.resolvedDataSource, undefined);
      setIdleInTransactionTimeout(this.resolvedDataSource, undefined);
    }
  }

  // The module option vanishedClientTimeoutMs, as settings and checks for this DataSource (vanished-client.ts).
  private boundVanishedClients(major: number, byBackend: boolean): VanishedClientBound | undefined {
    const ms = this.options.vanishedClientTimeoutMs ?? DEFAULT_VANISHED_CLIENT_TIMEOUT_MS;
    const bound = ms === false ? undefined : computeBound(ms, major, byBackend);
    setVanishedClientBound(this.dataSource, bound);
    if (bound) keepPoolAlive(this.pool, bound);
    return bound;
  }

  /**
   * The settings a call made now gets from the module option `settings` (its request's), or the ones pinned for the
   * shared work it runs in; none without the option. Not part of the public API.
   * @internal
   */
  moduleSettings(): readonly SettingEntry[] {
    if (this.options.settings === undefined) return [];
    const pinned = pinnedSettings.getStore()?.get(this.dataSource);
    if (pinned) return pinned;
    return readSettings(this.options.settings(currentSettingsContext()), 'TxLockModule option "settings" result');
  }

  /**
   * Aborted (reason: ShuttingDownError) as soon as the app begins to close: long-running work (a job, a session-scope
   * lock's body, a batch inside a transaction) can watch it and stop early, before the grace period runs out.
   */
  get shutdownSignal(): AbortSignal {
    return this.gate.signal;
  }

  /**
   * What the app's close does to this registration's work: the services admit new work through it, and the outbox
   * relay stops with it. Not part of the public API.
   * @internal
   */
  get shutdown(): ShutdownGate {
    return this.gate;
  }

  // TypeORM's PostgresDriver keeps its pg Pool as `master`.
  private get pool(): Pool {
    return (this.dataSource.driver as unknown as { master: Pool }).master;
  }

  /** The PostgreSQL DataSource this module works on. */
  get dataSource(): DataSource {
    this.resolvedDataSource ??= resolveDataSource(this.moduleRef, this.options.dataSource, this.dataSourceName);
    return this.resolvedDataSource;
  }

  /** True when the caller runs inside a transaction. */
  get isActive(): boolean {
    return this.scope() !== undefined;
  }

  /** The EntityManager of the current transaction, or the DataSource's own manager outside one. */
  get manager(): EntityManager {
    // Under nestjs-txlock/testing, outside the app's transactions: the test's transaction, even with joinDataSource: false.
    return currentScope(this.dataSource)?.connection.queryRunner.manager ?? this.dataSource.manager;
  }

  /** The QueryRunner of the current transaction, or undefined outside one. */
  get queryRunner(): QueryRunner | undefined {
    return this.scope()?.connection.queryRunner;
  }

  /** A repository bound to the current transaction (or to no transaction outside one). Call it where you use it. */
  getRepository<Entity extends ObjectLiteral>(target: EntityTarget<Entity>): Repository<Entity> {
    return this.manager.getRepository(target);
  }

  /**
   * Runs `hook` once after the outermost transaction commits (like Django's `on_commit`), outside any
   * transaction. Outside a transaction it runs at once. A hook registered inside a NESTED savepoint that
   * rolls back is dropped. A failing hook is logged and does not undo the commit.
   */
  afterCommit(hook: TransactionHook): void | Promise<void> {
    const scope = this.scope();
    if (!scope) return this.runHooks([hook], 'afterCommit');
    throwIfEnded(scope);
    scope.afterCommit.push(hook);
  }

  /**
   * Runs `hook` once after the outermost transaction rolls back, or right after the NESTED savepoint it
   * was registered in rolls back. Outside a transaction it is never run.
   */
  afterRollback(hook: TransactionHook): void {
    const scope = this.scope();
    if (!scope) return;
    throwIfEnded(scope);
    scope.afterRollback.push(hook);
  }

  /** Runs `fn` in a transaction with default options (REQUIRED). */
  run<T>(fn: () => T | Promise<T>): Promise<T>;
  /**
   * Runs `fn` as `options.propagation` says. When `fn` returns an Observable or a stream, the transaction
   * stays open until it completes, and is rolled back if it errors or is abandoned.
   */
  run<T>(options: TransactionOptions, fn: () => T | Promise<T>): Promise<T>;
  run<T>(optionsOrFn: TransactionOptions | (() => T | Promise<T>), maybeFn?: () => T | Promise<T>): Promise<T> {
    try {
      return typeof optionsOrFn === 'function' ? this.runChecked({}, optionsOrFn) : this.runChecked(readTransactionOptions(optionsOrFn), maybeFn!);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * run() with options read and checked already (readTransactionOptions(), or a lock's own checks): for the
   * decorators and the library's own calls, which would otherwise read them twice per call. Not part of the public API.
   * @internal
   */
  runChecked<T>(options: TransactionOptions, fn: () => T | Promise<T>): Promise<T> {
    try {
      const scope = this.scope();
      // The common case first, without an extra async layer: REQUIRED with no transaction begins one.
      if (!scope && (options.propagation ?? Propagation.REQUIRED) === Propagation.REQUIRED) return this.begin(options, fn);
      return this.propagate(options, scope, fn);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  // A scope that has ended counts as none for the propagations that do not use it; the others refuse it, so
  // work that outlived its transaction never runs outside one, nor in a transaction that is not its own. Not async
  // (runChecked() turns a throw into a rejection): joining a transaction, the most common call inside one, then
  // costs one async frame (join()), not two.
  private propagate<T>(options: TransactionOptions, scope: TransactionScope | undefined, fn: () => T | Promise<T>): Promise<T> {
    const propagation = options.propagation ?? Propagation.REQUIRED;
    switch (propagation) {
      case Propagation.REQUIRES_NEW:
        return this.begin(options, fn);
      case Propagation.NOT_SUPPORTED:
        return scope ? this.suspended(scope, fn) : Promise.resolve(fn());
      case Propagation.NEVER:
        if (scope && !scope.refusal()) throw new TransactionNotAllowedError(describe(fn));
        return scope ? this.suspended(scope, fn) : Promise.resolve(fn());
    }
    if (scope) {
      throwIfEnded(scope);
      // Joined or nested, the call runs at the transaction's level: asking for a stronger one is refused, never weakened.
      if (options.isolation !== undefined) assertIsolation(options.isolation, scope, `${describe(fn)} (propagation ${propagation})`);
      if (options.settings) assertSameSettings(options.settings, scope);
    }
    switch (propagation) {
      case Propagation.REQUIRED:
        return scope ? this.join(scope, fn) : this.begin(options, fn);
      case Propagation.NESTED:
        return scope ? this.nested(scope, fn) : this.begin(options, fn);
      case Propagation.SUPPORTS:
        return scope ? this.join(scope, fn) : Promise.resolve(fn());
      case Propagation.MANDATORY:
        if (!scope) throw new TransactionRequiredError(describe(fn));
        return this.join(scope, fn);
    }
  }

  /**
   * The caller's scope on this host's DataSource (its transaction there, even if that has ended), if any.
   * For the library's own services (locks, counters); not part of the public API.
   * @internal
   */
  scope(): TransactionScope | undefined {
    const scope = currentScope(this.dataSource);
    return scope?.kind === 'test' ? undefined : scope;
  }

  /**
   * Sends one of the library's own parameterised statements (counters, get-or-create, leases, single flight) in
   * the caller's transaction on this DataSource, or outside one on a pooled connection of its own (autocommit),
   * straight to pg: TypeORM's per-query work (a query runner, events, result wrapping) is not needed for them.
   * Rows come back; a failure has TypeORM's QueryFailedError shape, or is a named error for what a server, database
   * or role setting caused (see library-statement-errors.ts). Outside a transaction, failures that had no effect are
   * sent again (sendAutocommit). Not part of the public API.
   * @internal
   */
  query<Row = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<Row[]> {
    // Not async: one promise per call, not an async frame around the statement's (counters at one caller, the common
    // case, paid for every frame in latency).
    const scope = currentScope(this.dataSource);
    if (scope) {
      try {
        return scope.connection.query(scope, sql, params).then(rowsOf<Row>, throwExplainedInTransaction);
      } catch (error) {
        return Promise.reject(explainInTransaction(error));
      }
    }
    try {
      this.dataSource.logger.logQuery(sql, params);
      // Prepared only here, outside transactions, where a failed statement had no effect and can be sent again.
      return sendAutocommit(this.pool, this.statements, sql, params, this.moduleSettings(), vanishedClientBound(this.dataSource)).then(rowsOf<Row>);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * What the bootstrap check (ServerCheck) found: on a direct connection to PostgreSQL, unless the module declares a
   * pooler or `preparedStatements: false`, the library's own statements outside transactions are prepared once per
   * pooled connection. Not part of the public API.
   * @internal
   */
  serverIdentified(server: { proxied: boolean; defaultIsolation?: string; idleInTransactionMs?: number; major?: number }): void {
    this.serverIsolation = isolationFromSetting(server.defaultIsolation);
    const bound = this.boundVanishedClients(server.major ?? 13, !server.proxied && (this.options.pooler ?? 'none') === 'none');
    const idleLimits = [server.idleInTransactionMs, bound?.ms].filter((ms): ms is number => ms !== undefined && ms > 0);
    setIdleInTransactionTimeout(this.dataSource, idleLimits.length > 0 ? Math.min(...idleLimits) : undefined);
    if (!server.proxied && (this.options.pooler ?? 'none') === 'none' && this.options.preparedStatements !== false) this.statements.enable();
  }

  // A NOT_SUPPORTED (or NEVER) body called in `scope`: outside its transaction. Under a test transaction, in a savepoint
  // that stands for "outside any transaction" (asideUnderTest()): a statement failing there undoes only itself, and a
  // transaction begun there is one of its own (its readOnly and timeoutMs applied), as in production.
  private suspended<T>(scope: TransactionScope, fn: () => T | Promise<T>): Promise<T> {
    if (scope.root.kind !== 'test') return Promise.resolve(runInScope(this.dataSource, null, fn));
    this.assertKitCanRunOwnWork(`${describe(fn)} (propagation NOT_SUPPORTED or NEVER)`);
    // Once the caller's transaction ended (work that outlived it), in what is still open around it.
    return this.asideUnderTest(async () => fn(), scope.openOrAround());
  }

  /**
   * Runs `fn` outside any transaction of this DataSource, whatever the caller is in: for the library's own
   * statements that must commit on their own (leases). Under a test transaction, where everything must be
   * rolled back with the test, in the caller's scope instead. Not part of the public API.
   * @internal
   */
  outsideTransaction<T>(fn: () => T): T {
    const scope = currentScope(this.dataSource);
    if (scope?.root.kind !== 'test') return runInScope(this.dataSource, null, fn);
    this.assertKitCanRunOwnWork('a statement that commits on its own connection (a lease)');
    return runOutsideUnderTest(scope, fn);
  }

  /**
   * Under a test transaction, runs `fn` (outside the app's transactions, as in production) in a savepoint of its own
   * that holds the test's connection until `fn` has settled and the work it awaits with it: the app's transactions of
   * the test's other requests begin after it, or it after them. For a session-scope lock, whose body must not wait for
   * an app transaction that waits for its keys, and a NOT_SUPPORTED body. Opened in `parent` (the caller's scope by
   * default). Released whatever `fn` did: what it wrote outside any transaction stays, as autocommit's writes do; what
   * it leaves running goes on outside it. Not part of the public API.
   * @internal
   */
  async asideUnderTest<T>(fn: (scope: TransactionScope) => Promise<T>, parent = currentScope(this.dataSource)!): Promise<T> {
    const scope = await parent.connection.savepoint(parent, undefined, 'test');
    try {
      const result = await runInScope(this.dataSource, scope, () => fn(scope));
      const kept = scope.keptOpen();
      if (kept) await kept;
      return result;
    } finally {
      if (!scope.ended) await parent.connection.endSavepoint(scope, true);
      scope.mergeInto(parent);
    }
  }

  /**
   * True when the caller runs under a test transaction of nestjs-txlock/testing: what it takes is rolled back with the
   * test (a lease), so the app's shutdown need not wait for it. Not part of the public API.
   * @internal
   */
  inTestTransaction(): boolean {
    return this.underTest();
  }

  /**
   * Runs `fn` in `resource`'s async context (made at bootstrap, so work shared by many callers pins none of
   * their contexts); under a test transaction, in the caller's instead, since there every statement must wait
   * for the scope its caller is in. Not part of the public API.
   * @internal
   */
  detached<T>(resource: AsyncResource, fn: () => T): T {
    if (this.underTest()) return fn();
    if (this.options.settings === undefined) return resource.runInAsyncScope(fn);
    // The callers' settings (sharingTag() keeps callers of other settings apart), without their request.
    const settings = new Map(pinnedSettings.getStore() ?? []).set(this.dataSource, this.moduleSettings());
    return resource.runInAsyncScope(() => pinnedSettings.run(settings, fn));
  }

  /**
   * A tag of the scope the caller runs in, under a test transaction ('' otherwise): work shared between callers
   * (coalesced increments, single flights) is shared there only by callers of one scope, since it runs (and ends)
   * in its callers' scope, and one request waiting for another's savepoint would wait for ever on the test's one
   * connection. Not part of the public API.
   * @internal
   */
  sharingTag(): string {
    // Callers whose settings differ (another tenant's) never share a statement.
    const settings = this.options.settings === undefined ? '' : `settings:${JSON.stringify(this.moduleSettings())}`;
    return settings + this.testTag();
  }

  private testTag(): string {
    const scope = this.underTest() ? currentScope(this.dataSource) : undefined;
    if (!scope) return '';
    let tag = scopeTags.get(scope);
    if (tag === undefined) scopeTags.set(scope, (tag = `test:${++lastScopeTag}`));
    return tag;
  }

  /**
   * Puts this DataSource under a test transaction (nestjs-txlock/testing): until endTestTransaction(), code
   * outside the app's own transactions runs in it, and those transactions become savepoints of it. `strict`: what the
   * test transaction cannot reproduce fails the test (TestKitLimitError) instead of being said once.
   * `byTestIdentity`: the test's code is known by the test runner's own context (begun from a beforeEach hook).
   * @internal
   */
  async beginTestTransaction(strict = false, byTestIdentity = false): Promise<TransactionScope> {
    const dataSource = this.dataSource;
    if (testScopeOf(dataSource)) throw new TxLockConfigurationError('A test transaction is already open on this DataSource: end it (rollback()) before beginning another.');
    // Before the first await: the caller's continuation (the test itself, when it begins its own) inherits the binding.
    const bound = bindCallerToTest(dataSource, byTestIdentity);
    const connection = await TransactionConnection.open(dataSource, this.options.acquireTimeoutMs ?? DEFAULT_ACQUIRE_TIMEOUT_MS, 'test', false);
    connection.routeManagerTransactions((scope, body) => runInScope(dataSource, scope, () => this.run({ propagation: Propagation.NESTED }, body)));
    connection.begin();
    if (strict) connection.root.locals.set(STRICT_TEST, true);
    // Every statement the app sends on the DataSource belongs to a test, also with joinDataSource: false (then only
    // code of a test joins: the app's transactions alone still leave plain TypeORM calls out, as in production, and
    // what joins an app transaction here stands apart from it, as production's connection of its own would).
    this.unroute ??= this.routeDataSource((scope) => scope.root.kind === 'test', true);
    setTestScope(dataSource, connection.root);
    bound(connection.root);
    return connection.root;
  }

  /**
   * Rolls the test transaction back and takes the DataSource out of test mode. Returns how much of the test's
   * work was still running (open transactions or statements in flight: a missing await), which was rolled back too.
   * @internal
   */
  async endTestTransaction(): Promise<{ stillRunning: number }> {
    unbindCallerFromTest();
    const root = testScopeOf(this.dataSource);
    if (!root) return { stillRunning: 0 };
    setTestScope(this.dataSource, undefined);
    const stillRunning = root.connection.pendingWork;
    await this.rollbackAndClose(root.connection, 'end of test');
    return { stillRunning };
  }

  /** Begins a transaction on its own connection, retrying the whole of `fn` after serialization failures. */
  private begin<T>(options: TransactionOptions, fn: () => T | Promise<T>): Promise<T> {
    if (!this.gate.isOpen) this.gate.admit('transaction', currentScope(this.dataSource) !== undefined);
    if (this.underTest()) return this.beginUnderTest(options, fn);
    const retries = options.retries ?? this.options.retries ?? 0;
    if (telemetry) return traceTransaction(telemetry, this.describeTransaction(options), (observed) => this.beginWithRetries(options, fn, retries, observed));
    // Without retries or a timeout to explain, one attempt is the whole story: no loop around it.
    if (retries === 0 && (options.timeoutMs ?? this.options.timeoutMs) === undefined) return this.attempt(options, fn).result;
    return this.beginWithRetries(options, fn, retries);
  }

  // Under a test transaction, a transaction of the app is a savepoint of the scope it starts in, with its readOnly and
  // timeoutMs applied there (isolation and retries cannot be: docs/testing.md).
  private async beginUnderTest<T>(options: TransactionOptions, fn: () => T | Promise<T>): Promise<T> {
    // A transaction begun by work whose own transaction ended (REQUIRES_NEW in a listener that runs after it) is
    // a new one in production: here a savepoint of what is still open around it, the test's transaction at least.
    const parent = currentScope(this.dataSource)!.openOrAround();
    if (parent.kind !== 'test') this.kitDifference(parent, describe(fn));
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    try {
      const settings = mergeSettings(this.moduleSettings(), readSettings(options.settings, 'settings'));
      return await this.nested(parent, fn, { isolation: this.isolationFor(options), readOnly: options.readOnly === true, timeoutMs, settings });
    } catch (error) {
      throw this.explain(error, options);
    }
  }

  // True when the caller runs under a test transaction of nestjs-txlock/testing (its own test's, even one that ended).
  private underTest(): boolean {
    return currentScope(this.dataSource)?.root.kind === 'test';
  }

  // A transaction of its own begun inside one of the app's (REQUIRES_NEW, a single flight) is a savepoint under the
  // kit, where production takes a second pooled connection (a pool too small for it waits or fails): said once, or
  // refused in strict mode; refused inside a readOnly transaction, where it could not write.
  private kitDifference(parent: TransactionScope, call: string): void {
    this.assertKitCanRunOwnWork('a transaction of its own (REQUIRES_NEW, a single flight)');
    const what = `${call} began a transaction of its own inside another one (REQUIRES_NEW, or a single flight)`;
    const production = 'it takes a second pooled connection while the first is held (with too small a pool it waits, then fails with PoolExhaustedError)';
    if (parent.root.locals.has(STRICT_TEST)) throw new TestKitLimitError(what, production);
    if (warnedOfRequiresNew) return;
    warnedOfRequiresNew = true;
    this.logger.warn(`nestjs-txlock/testing: ${what}; in production ${production}. Here it is a savepoint of the test's transaction. Size the pool for it; pass { strict: true } to fail such tests instead.`);
  }

  // Work that commits on a connection of its own in production runs in the caller's scope under the kit: inside a
  // readOnly transaction it could not write, so the kit says it cannot reproduce that rather than fail otherwise.
  private assertKitCanRunOwnWork(what: string): void {
    for (let scope = currentScope(this.dataSource); scope; scope = scope.parent) {
      if (scope.readOnly) throw new TestKitLimitError(`${what} inside a readOnly transaction`, 'it runs on a connection of its own and commits there');
    }
  }

  private async beginWithRetries<T>(options: TransactionOptions, fn: () => T | Promise<T>, retries: number, observed?: TransactionObservation): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      observed?.attempt();
      const current = this.attempt(options, fn);
      try {
        return await current.result;
      } catch (error) {
        if (!isRetryable(error) || retries === 0) throw this.explain(error, options);
        if (attempt > retries || current.handedOut) {
          observed?.exhausted();
          throw error instanceof ConnectionLostError ? error : new SerializationRetriesExhaustedError(attempt, error);
        }
        observed?.retry(error);
        await this.backoff(attempt);
      }
    }
  }

  // One transaction. Its result resolves early with the handout of a long-lived value (Observable, stream).
  private attempt<T>(options: TransactionOptions, fn: () => T | Promise<T>): Attempt<T> {
    return new Attempt((handout) => this.transaction(options, fn, handout));
  }

  private async transaction<T>(
    options: TransactionOptions,
    fn: () => T | Promise<T>,
    handout: (value: unknown) => void,
  ): Promise<T> {
    const dataSource = this.dataSource;
    const acquireTimeoutMs = this.options.acquireTimeoutMs ?? DEFAULT_ACQUIRE_TIMEOUT_MS;
    const disconnected = requestAbortSignal.getStore();
    const connection = await TransactionConnection.open(dataSource, acquireTimeoutMs, 'transaction', holdsConnection(), disconnected);
    connection.routeManagerTransactions((scope, body) => runInScope(dataSource, scope, () => this.run({ propagation: Propagation.NESTED }, body)));
    const scope = connection.root;
    scope.isolation = this.isolationFor(options);
    let longLived: LongLivedResult | undefined;
    let result: T;
    const onDisconnect = () => scope.markRollbackOnly(disconnected!.reason);
    disconnected?.addEventListener('abort', onDisconnect, { once: true });
    if (disconnected?.aborted) onDisconnect(); // the client left while we waited for a connection
    try {
      const settings = mergeSettings(this.moduleSettings(), readSettings(options.settings, 'settings'));
      if (settings.length > 0) scopeSettings.set(scope, settings);
      connection.begin({ isolation: options.isolation ?? this.options.isolation, readOnly: options.readOnly, timeoutMs: options.timeoutMs ?? this.options.timeoutMs, settings });
      if (connection.hasSubscribers) {
        await connection.broadcast('BeforeTransactionStart');
        await connection.broadcast('AfterTransactionStart');
      }
      result = await runInScope(dataSource, scope, async () => {
        const value = await fn();
        longLived = longLivedResult(value, disconnected);
        if (!longLived) return value;
        handout(longLived.handout);
        await longLived.finished;
        return longLived.handout as T;
      });
      // Detached work deferred by a lock of this transaction has its turn before the end (BranchLocks).
      const kept = scope.keptOpen();
      if (kept) await kept;
      if (scope.rollbackOnly instanceof ClientDisconnectedError) throw scope.rollbackOnly;
      if (scope.rollbackOnly !== undefined) {
        throw new RollbackOnlyError('a call that joined it threw', { cause: scope.rollbackOnly });
      }
      await connection.commit();
    } catch (error) {
      disconnected?.removeEventListener('abort', onDisconnect);
      if (error instanceof CommitOutcomeUnknownError) {
        // Neither outcome is known: no hooks, no retry, and the connection is destroyed.
        await connection.close(error).catch(() => undefined);
        longLived?.settle(error);
        throw error;
      }
      await this.rollbackAndClose(connection, error);
      // Rolled back by the app's shutdown: that is what the caller must learn, whatever its code met meanwhile.
      const failure = connection.abandonment ?? error;
      if (failure !== error && failure instanceof Error && failure.cause === undefined) failure.cause = error;
      longLived?.settle(failure);
      if (scope.afterRollback.length > 0) await this.runHooks(scope.afterRollback, 'afterRollback');
      throw failure;
    }
    disconnected?.removeEventListener('abort', onDisconnect);
    await connection.close();
    longLived?.settle();
    if (scope.afterCommit.length > 0) await this.runHooks(scope.afterCommit, 'afterCommit');
    return result;
  }

  private async rollbackAndClose(connection: TransactionConnection, cause: unknown): Promise<void> {
    try {
      await connection.rollback();
      await connection.close();
    } catch (rollbackError) {
      if (!connection.isLost) this.logger.warn(`ROLLBACK failed (${String(rollbackError)}); discarding the connection after: ${String(cause)}`);
      await connection.close(rollbackError).catch(() => undefined);
    }
  }

  private async join<T>(scope: TransactionScope, fn: () => T | Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      scope.markRollbackOnly(error);
      throw error;
    }
  }

  /**
   * Runs `fn` in a savepoint of `parent`. `standsForTransaction`: the savepoint stands for a transaction of the app
   * under a test transaction (with what it was asked to run with), so its afterCommit hooks run when it is released
   * instead of waiting for the test transaction, which never commits.
   */
  private async nested<T>(parent: TransactionScope, fn: () => T | Promise<T>, standsForTransaction?: StandIn): Promise<T> {
    const connection = parent.connection;
    const scope = await connection.savepoint(parent, standsForTransaction);
    if (standsForTransaction?.settings?.length) scopeSettings.set(scope, standsForTransaction.settings);
    let result: T;
    try {
      result = await runInScope(this.dataSource, scope, fn);
      const kept = scope.keptOpen();
      if (kept) await kept;
      if (scope.rollbackOnly !== undefined) {
        throw new RollbackOnlyError('a call that joined its savepoint threw', { cause: scope.rollbackOnly });
      }
      // Standing for an app transaction: ends as its COMMIT would (RollbackOnlyError once a caught statement aborted it).
      await connection.endSavepoint(scope, true, standsForTransaction !== undefined);
    } catch (error) {
      // Refused when the transaction around it ended first: its end rolled this savepoint back already.
      if (!scope.ended) await connection.endSavepoint(scope, false).catch(() => undefined);
      await this.runHooks(scope.afterRollback, 'afterRollback');
      throw error;
    }
    if (standsForTransaction === undefined) scope.mergeInto(parent);
    else if (scope.afterCommit.length > 0) await this.runHooks(scope.afterCommit, 'afterCommit');
    return result;
  }

  // The level a transaction begun with `options` runs at: asked for, the module's, or the server's default.
  private isolationFor(options: TransactionOptions): string {
    return options.isolation ?? this.options.isolation ?? this.serverIsolation ?? 'READ COMMITTED';
  }

  // The settings a transaction span describes.
  private describeTransaction(options: TransactionOptions): Parameters<typeof traceTransaction>[1] {
    const isolation = options.isolation ?? this.options.isolation;
    return { propagation: options.propagation ?? Propagation.REQUIRED, isolation, readOnly: options.readOnly, database: (this.dataSource.driver as { database?: string }).database };
  }

  private explain(error: unknown, options: TransactionOptions): unknown {
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    if (timeoutMs !== undefined && sqlState(error) === '57014') return new TransactionTimeoutError(timeoutMs, error);
    return error;
  }

  private async backoff(attempt: number): Promise<void> {
    const { minMs, maxMs } = this.options.retryBackoff ?? DEFAULT_BACKOFF;
    const ceiling = Math.min(maxMs, minMs * 2 ** attempt);
    await new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
  }

  private async runHooks(hooks: TransactionHook[], kind: string): Promise<void> {
    for (const hook of hooks) {
      try {
        await runOutsideTransactions(hook);
      } catch (error) {
        this.logger.error(`${kind} hook failed: ${error instanceof Error ? error.stack : String(error)}`);
      }
    }
  }
}

// A call joining (or nesting in) a transaction runs with that transaction's settings: other values are refused, never
// ignored, since a row-level-security setting silently left as another tenant's would show that tenant's rows.
function assertSameSettings(settings: object, scope: TransactionScope): void {
  let standing: TransactionScope | undefined = scope;
  while (standing && !scopeSettings.has(standing)) standing = standing.parent;
  const current = new Map(standing ? scopeSettings.get(standing) : []);
  for (const [name, value] of readSettings(settings, 'settings')) {
    if (current.get(name) !== value) {
      throw new InvalidOptionError(
        `settings "${name}"`,
        value,
        `the value of the transaction the call joins (${current.has(name) ? 'another value' : 'unset'} there): settings apply when a transaction begins; use propagation REQUIRES_NEW to run with other ones`,
      );
    }
  }
}

// The rows of a result, as query() returns them.
function rowsOf<Row>(result: QueryResult): Row[] {
  return result.rows as Row[];
}

function throwExplainedInTransaction(error: unknown): never {
  throw explainInTransaction(error);
}

function throwIfEnded(scope: TransactionScope): void {
  const refusal = scope.refusal();
  if (refusal) throw refusal;
}

function describeDataSource(dataSource: DataSource): string {
  const { database, host } = dataSource.options as { database?: string; host?: string };
  return [host, database].filter(Boolean).join('/') || 'no host or database in its options';
}

function describe(fn: () => unknown): string {
  return fn.name ? `"${fn.name}"` : 'This call';
}

// One transaction (attempt()): its result, which resolves early with the handout of a long-lived value (Observable,
// stream), and whether that happened (then it is not retried). A class rather than an object literal: V8 may allocate
// a literal's objects in its old generation (allocation-site pretenuring), where a dead one keeps what it points to
// (this call's promise, and through it the transaction) alive through young-generation collections.
class Attempt<T> {
  handedOut = false;
  readonly result: Promise<T>;

  constructor(run: (handout: (value: unknown) => void) => Promise<T>) {
    this.result = new Promise<T>((resolve, reject) => {
      run((value) => {
        this.handedOut = true;
        resolve(value as T);
      }).then(resolve, reject);
    });
  }
}
