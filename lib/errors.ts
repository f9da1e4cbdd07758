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
