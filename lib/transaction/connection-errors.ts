import { QueryFailedError } from 'typeorm';
import { ConnectionLostError, IdleInTransactionTimeoutError } from '../errors.js';
import { sqlState } from './sql-state.js';

// Class 08 (connection exception) and the server telling us it is going away: admin_shutdown (57P01, also
// pg_terminate_backend), crash_shutdown (57P02), cannot_connect_now (57P03, starting up or shutting down).
const SHUTDOWN = new Set(['57P01', '57P02', '57P03']);
// What pg and Node say when the socket itself failed (no SQLSTATE: the server never answered).
const SOCKET_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ECONNABORTED']);
// pg's native client passes on libpq's messages, with no SQLSTATE even when the server said why it closed the connection.
const SOCKET_MESSAGES =
  /Connection terminated|connection error|not queryable|Connection ended|socket hang up|read ECONNRESET|timeout exceeded when trying to connect|server closed the connection unexpectedly|no connection to the server|could not (?:receive|send) data (?:from|to) server/i;
// The server's own words for 25P03, which libpq puts in front of its message when a statement met the closed connection.
const IDLE_TIMEOUT_MESSAGE = /terminating connection due to idle-in-transaction timeout/;

/**
 * True when `error` says the connection to the server is gone, not that a statement failed: the cases where
 * the same call may succeed on a fresh connection. Looks through TypeORM's `driverError` and `cause` chains.
 */
export function isConnectionLoss(error: unknown): boolean {
  const state = sqlState(error);
  if (state !== undefined) return state.startsWith('08') || SHUTDOWN.has(state);
  for (let current = error, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    const candidate = current as { code?: unknown; message?: unknown; driverError?: unknown; cause?: unknown };
    if (typeof candidate.code === 'string' && SOCKET_CODES.has(candidate.code)) return true;
    if (typeof candidate.message === 'string' && SOCKET_MESSAGES.test(candidate.message)) return true;
    current = candidate.driverError ?? candidate.cause;
  }
  return false;
}

/**
 * IdleInTransactionTimeoutError when `lost`, what broke a transaction's connection, is PostgreSQL ending the session
 * for sitting idle in the transaction longer than idle_in_transaction_session_timeout (25P03: the transaction was
 * rolled back, so this is not an unknown outcome); else undefined. pg's native client gives no SQLSTATE, only libpq's
 * message, which starts with the server's when a statement met the closed connection.
 */
export function idleInTransactionTimeout(lost: unknown): IdleInTransactionTimeoutError | undefined {
  const state = sqlState(lost);
  const said = state === undefined && lost instanceof Error && IDLE_TIMEOUT_MESSAGE.test(lost.message);
  return state === '25P03' || said ? new IdleInTransactionTimeoutError(lost) : undefined;
}

/** `error` itself, or a ConnectionLostError wrapping it when it is a lost connection (never wrapped twice). */
export function explainConnectionLoss(error: unknown): unknown {
  return !(error instanceof ConnectionLostError) && isConnectionLoss(error) ? new ConnectionLostError(error) : error;
}

/**
 * A statement's failure in the shape TypeORM gives every failed query (`QueryFailedError` with `driverError`,
 * `code`, `constraint`...), so one exception filter handles the library's own statements (COMMIT, locks) too.
 */
export function asQueryFailed(error: unknown, sql: string): unknown {
  if (error instanceof QueryFailedError || sqlState(error) === undefined || !(error instanceof Error)) return error;
  return new QueryFailedError(sql, [], error);
}
