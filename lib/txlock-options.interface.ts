import type { DataSource } from 'typeorm';
import type { CounterModuleOptions } from './counters/counter.options.js';
import type { IsolationLevel } from './transaction/transaction.options.js';
import type { LeaseModuleOptions } from './leases/lease.options.js';
import type { ShutdownModuleOptions } from './lifecycle/shutdown.options.js';
import type { OutboxModuleOptions } from './outbox/outbox.options.js';
import type { PoolerMode } from './server/pooler.js';
import type { SingleFlightModuleOptions } from './single-flight/single-flight.options.js';
import type { TransactionSettings } from './transaction/transaction-settings.js';
import type { SettingsContext } from './transaction/request-context.js';

/** Options of `TxLockModule.forRoot()` / `forRootAsync()`. */
export interface TxLockModuleOptions {
  /**
   * The TypeORM DataSource to serve: the DataSource itself, or the name it was registered under with
   * `TypeOrmModule.forRoot({ name })`. Default: the default one (`TypeOrmModule.forRoot()` without a name).
   * It must be a PostgreSQL DataSource. Register TxLockModule once per DataSource; a named registration's
   * services are injected with `@InjectTxLock(Service, name)` (see getTxLockToken()).
   */
  dataSource?: DataSource | string;
  /**
   * Inside a transaction of this library, every TypeORM call made through the DataSource itself joins it:
   * `@InjectRepository()` repositories, `dataSource.getRepository()`, `dataSource.manager`, `dataSource.query()`,
   * query builders, custom repositories. Default `true`. With `false`, only `@InjectTxRepository()` repositories
   * and `TransactionHost` (its `manager`, `getRepository()`) reach the transaction.
   */
  joinDataSource?: boolean;
  /**
   * Create every table the library uses (counters, leases, single flight, outbox) at bootstrap when it is missing, under
   * an advisory lock so replicas booting together do not race. Default `false`: create them with the exported
   * migrations (TxLockTablesMigration, TxLockOutboxMigration) or entities. `counters.autoCreate`, `leases.autoCreate`,
   * `singleFlight.autoCreate` and `outbox.autoCreate` override it per table.
   */
  autoCreate?: boolean;
  /** Isolation level for transactions that do not name one. Default: the server's (READ COMMITTED). */
  isolation?: IsolationLevel;
  /** `statement_timeout` (ms) for transactions that do not set `timeoutMs`. Default: none. */
  timeoutMs?: number;
  /** Retries after serialization failures/deadlocks for transactions that do not set `retries`. Default 0. */
  retries?: number;
  /** Jittered exponential backoff between retries, in ms. Default `{ minMs: 5, maxMs: 250 }`. */
  retryBackoff?: { minMs: number; maxMs: number };
  /**
   * How long to wait for a pooled connection before throwing PoolExhaustedError, in ms. Default 10000.
   * Bounds the wait of REQUIRES_NEW when every connection is held by outer transactions.
   */
  acquireTimeoutMs?: number;
  /**
   * Roll back the transaction of an HTTP handler whose client disconnected before the response was sent, also when
   * it left before the handler began (during a guard). Default true (TxLockModule registers a global interceptor for it).
   */
  rollbackOnDisconnect?: boolean;
  /**
   * What sits between the app and PostgreSQL. `'none'` (default): a direct connection; session-scope locks check
   * it on each pooled connection's first one and refuse to run behind a pooler (SessionLockPoolerError).
   * `'transaction'`: a transaction-mode pooler (PgBouncer pool_mode=transaction, RDS Proxy, Supavisor, Neon's and
   * Supabase's pooled endpoints); everything else works there, and session-scope locks are refused at bootstrap
   * (decorated methods) and on every call. `'session'`: a pooler that keeps one server connection per client
   * connection (PgBouncer pool_mode=session); session-scope locks are allowed without the check.
   */
  pooler?: PoolerMode;
  /**
   * Prepare the library's own statements outside transactions (counters, get-or-create, leases, single flight) once
   * per pooled connection, so PostgreSQL does not parse and plan them on every call. Default `true`, and even then only where
   * the bootstrap check reached PostgreSQL directly and `pooler` is `'none'`: behind a pooler they stay unprepared.
   * `false`: never. Your own queries and TypeORM's are unaffected.
   */
  preparedStatements?: boolean;
  /**
   * How long (ms) a client that vanished (a network partition, a dead node: no FIN, no RST) may keep its locks and
   * transactions, and how long its own statement may wait for an answer that cannot come. Default 60000; at least
   * 1000. Each transaction sets `idle_in_transaction_session_timeout` and TCP keepalives LOCAL in its opening
   * statements (PostgreSQL 14+ also `client_connection_check_interval`), a statement with no answer for half of it
   * is checked on a new connection and its connection closed when the server no longer serves it, and a connection
   * pinned by a session-scope lock sends a heartbeat every quarter of it. `false`: none of this (the server's own
   * settings apply). See docs/production.md.
   */
  vanishedClientTimeoutMs?: number | false;
  /**
   * Settings every transaction of this DataSource sets for itself (`set_config(name, value, true)` in its opening
   * statements, no round trip of their own), derived per call: `({ request }) => ({ 'app.tenant_id': request.user.tenantId })`.
   * Called when a transaction begins and for the library's own statements outside transactions (counters,
   * get-or-create...); `request` is the HTTP request being handled, if any. Return undefined for none. A call's own
   * `settings` (`@Transactional({ settings })`) override the same names. Names must be custom settings
   * (`prefix.name`). See docs/production.md for row-level security.
   */
  settings?: (context: SettingsContext) => TransactionSettings | undefined;
  /** The lease table used by LeaseService and @ScheduledLock(). */
  leases?: LeaseModuleOptions;
  /** CounterService settings: table name, `autoCreate` (default false), `coalesce` (default true). */
  counters?: CounterModuleOptions;
  /** Where SingleFlightService keeps values: the postgres table (default) or the app's CACHE_MANAGER. */
  singleFlight?: SingleFlightModuleOptions;
  /** The transactional outbox (OutboxService, @OnOutboxEvent()): its table, and how this replica's relay delivers. */
  outbox?: OutboxModuleOptions;
  /**
   * What `app.close()` (SIGTERM with `enableShutdownHooks()`) gives running work: `graceMs` (default 10000) for
   * transactions and lock calls to finish before they are rolled back. New work is refused from the start of the close
   * (docs/production.md).
   */
  shutdown?: ShutdownModuleOptions;
}
