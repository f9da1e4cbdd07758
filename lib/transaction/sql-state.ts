import { CommitOutcomeUnknownError, ConnectionLostError } from '../errors.js';

const SQLSTATE = /^[0-9A-Z]{5}$/;
const RETRYABLE = new Set(['40001', '40P01']); // serialization_failure, deadlock_detected

/**
 * The PostgreSQL SQLSTATE of an error: pg's `code`, TypeORM's `driverError.code`, or the same on its
 * `cause` chain (our own errors wrap the database error as `cause`).
 */
export function sqlState(error: unknown): string | undefined {
  for (let current = error, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    const candidate = current as { code?: unknown; driverError?: { code?: unknown }; cause?: unknown };
    for (const code of [candidate.code, candidate.driverError?.code]) {
      if (typeof code === 'string' && SQLSTATE.test(code)) return code;
    }
    current = candidate.cause;
  }
  return undefined;
}

/**
 * True for a serialization failure, a deadlock or a lost connection: the transaction was rolled back and may
 * succeed if run again. Never for a COMMIT whose outcome is unknown (it may have committed).
 */
export function isRetryable(error: unknown): boolean {
  if (error instanceof ConnectionLostError) return true;
  if (error instanceof CommitOutcomeUnknownError) return false;
  const state = sqlState(error);
  return state !== undefined && RETRYABLE.has(state);
}
