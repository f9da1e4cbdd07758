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

/** An option has a value outside its valid set; thrown when the decorator is applied or the call is made. */
export class InvalidOptionError extends TxLockError {
  constructor(
    readonly option: string,
    readonly value: unknown,
    readonly valid: readonly unknown[] | string,
  ) {
    const expected = typeof valid === 'string' ? valid : `one of ${valid.map((v) => JSON.stringify(v)).join(', ')}`;
    super(`Invalid ${option} ${JSON.stringify(value)}: expected ${expected}.`);
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

/** No pooled connection became free in time (for example REQUIRES_NEW while every connection is taken). */
export class PoolExhaustedError extends TxLockError {
  constructor(readonly waitedMs: number) {
    super(
      `No database connection became free within ${waitedMs} ms. Every pooled connection is in use ` +
        `(REQUIRES_NEW needs a second connection while the outer transaction holds one). ` +
        `Raise the pool size ("extra.max" / "poolSize"), lower concurrency, or raise acquireTimeoutMs.`,
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

/** A counter key is empty, too long, not a string, or contains a NUL character (PostgreSQL text cannot hold one). */
export class InvalidCounterKeyError extends TxLockError {
  constructor(
    readonly key: unknown,
    reason: string,
  ) {
    super(`Invalid counter key ${JSON.stringify(String(key)).slice(0, 80)}: ${reason}.`);
  }
}

/** An amount, bound or value given to a counter is not an integer PostgreSQL's bigint can hold exactly. */
export class InvalidAmountError extends TxLockError {
  constructor(
    readonly argument: string,
    readonly value: unknown,
    reason: string,
  ) {
    super(
      `Invalid ${argument} ${typeof value === 'bigint' ? `${value}n` : JSON.stringify(value) ?? String(value)}: ${reason}. ` +
        `Pass an integer: a number up to Number.MAX_SAFE_INTEGER, or a bigint within -2^63..2^63-1.`,
    );
  }
}

/** A counter or column would leave its type's range (bigint for counters); nothing was changed. */
export class CounterOverflowError extends TxLockError {
  constructor(
    readonly target: string,
    cause: unknown,
  ) {
    super(`Incrementing ${target} would overflow its integer type; nothing was changed. Reset it, or use a wider column type.`, { cause });
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
  }
}

/** The HTTP client went away before its response was sent; its transaction was rolled back. */
export class ClientDisconnectedError extends TxLockError {
  constructor() {
    super('The HTTP client disconnected before the response was sent, so the transaction was rolled back instead of committed.');
  }
}

/** A lock key cannot be turned into an advisory lock key (empty, or an argument that has no stable text form). */
export class InvalidLockKeyError extends TxLockError {
  constructor(
    readonly key: unknown,
    reason: string,
  ) {
    super(`Invalid lock key: ${reason}. Pass a string, a number, a bigint or an array of those, or give the decorator key: (...args) => ...`);
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
  }
}

/**
 * A session-scope lock was not held any more when it was released: pg_advisory_unlock answered false, or the
 * connection that held it broke (for example pg_terminate_backend). The work ran, but possibly not alone.
 */
export class LockLostError extends TxLockError {
  constructor(
    readonly lock: string,
    cause?: unknown,
  ) {
    super(
      `The session lock on ${lock} was no longer held when the work finished (the connection was reset or terminated, ` +
        `or something unlocked it): other callers may have run at the same time. Check what the work changed; ` +
        `prefer transaction scope (the default) for locks that protect writes.`,
      { cause },
    );
  }
}

/** A table name given to @TableLock() or lockTables() is not a plain [schema.]table identifier. */
export class InvalidTableNameError extends TxLockError {
  constructor(
    readonly table: string,
    reason: string,
  ) {
    super(
      `Invalid table name ${JSON.stringify(table).slice(0, 120)}: ${reason}. Give "table" or "schema.table" made of letters, ` +
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
  }
}
