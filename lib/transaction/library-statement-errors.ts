import { ReadOnlyTransactionError, ServerTimeoutError, TransactionSerializationError } from '../errors.js';
import { sqlState } from './sql-state.js';

const READ_ONLY_TRANSACTION = '25006';
const LOCK_NOT_AVAILABLE = '55P03';
const QUERY_CANCELED = '57014';
// query_canceled also answers a cancel request (pg_cancel_backend); only statement_timeout says this.
const STATEMENT_TIMEOUT = /statement timeout/i;

/**
 * True when `error` is a statement cancelled by `statement_timeout` (the server's, database's, role's, connection's,
 * or a transaction's SET LOCAL), not by a cancel request.
 */
export function isStatementTimeout(error: unknown): boolean {
  return sqlState(error) === QUERY_CANCELED && STATEMENT_TIMEOUT.test(String((error as { message?: unknown })?.message));
}

/**
 * The named error for a failure of one of the library's own statements inside a transaction (the caller's, or a
 * test's): a serialization failure or deadlock says to retry the transaction and keeps its SQLSTATE (so the
 * `retries` loop still sees it); a write refused by a read-only transaction names the setting. Else `error`.
 */
export function explainInTransaction(error: unknown): unknown {
  const state = sqlState(error);
  if (state === '40001' || state === '40P01') return new TransactionSerializationError(state, error);
  if (state === READ_ONLY_TRANSACTION) return new ReadOnlyTransactionError(error);
  return error;
}

/**
 * The named error for a failure of one of the library's own statements outside any transaction, once the library
 * has given up sending it again: a server, database or role setting (read-only default, statement_timeout,
 * lock_timeout) is named. Else `error`.
 */
export function explainAutocommit(error: unknown): unknown {
  const state = sqlState(error);
  if (state === READ_ONLY_TRANSACTION) return new ReadOnlyTransactionError(error);
  if (state === LOCK_NOT_AVAILABLE) return new ServerTimeoutError('lock_timeout', error);
  if (isStatementTimeout(error)) return new ServerTimeoutError('statement_timeout', error);
  return error;
}
