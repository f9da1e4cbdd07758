import { LockAbortedError, LockNotAcquiredError, LockTimeoutError, ServerLockTimeoutError, TxLockError } from '../errors.js';
import { observeLock, type LockObservation } from '../telemetry/lock-telemetry.js';
import type { LockFeature } from '../telemetry/telemetry.types.js';
import { requestAbortSignal } from '../transaction/client-disconnect.interceptor.js';
import { isStatementTimeout } from '../transaction/library-statement-errors.js';
import { sqlState } from '../transaction/sql-state.js';
import { advisoryLockKeyOfText, DEFAULT_LOCK_NAMESPACE, lockKeyText, validateNamespace, type LockKey } from './lock-key.js';
import type { AdvisoryLockCallOptions } from './lock.options.js';

/** One advisory lock call, resolved: keys derived, sorted and de-duplicated, wait options fixed. */
export interface LockRequest {
  /** Sorted by value, without duplicates, so two callers always take common keys in the same order. */
  keys: bigint[];
  /** Names the lock in error messages. */
  label: string;
  shared: boolean;
  timeoutMs?: number;
  nowait: boolean;
  /**
   * Ends the wait (in the process and on the server) when it aborts: the call's own `signal`, else the abort signal
   * of the HTTP request it serves (its client went away).
   */
  signal?: AbortSignal;
  /** Reports the request's wait, outcome and hold while telemetry is on. */
  observation?: LockObservation;
}

/** Derives the request for `keys` (each a key, possibly of several parts); the time of the request starts its wait. */
export function lockRequest(keys: readonly LockKey[], options: AdvisoryLockCallOptions, feature: LockFeature = 'advisory'): LockRequest {
  const namespace = options.namespace ?? DEFAULT_LOCK_NAMESPACE;
  validateNamespace(namespace, true);
  // Each key's text is made once: it names the lock and derives its value.
  const texts = keys.map(lockKeyText);
  const derived =
    texts.length === 1 ? [advisoryLockKeyOfText(texts[0]!, namespace)] : [...new Set(texts.map((text) => advisoryLockKeyOfText(text, namespace)))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return {
    keys: derived,
    label: `advisory lock ${texts.join(' + ')}`,
    shared: options.shared ?? false,
    timeoutMs: options.timeoutMs,
    nowait: options.nowait ?? false,
    signal: options.signal ?? requestAbortSignal.getStore(),
    observation: observeLock(feature, options, derived.length),
  };
}

/**
 * The named error for a lock the database refused (55P03: the call's lock_timeout, or NOWAIT), else the error
 * itself. A wait ended by a setting the call did not make (the server's, database's or role's lock_timeout on a
 * call without timeoutMs, or statement_timeout) is a ServerLockTimeoutError naming that setting.
 */
export function lockFailure(error: unknown, label: string, wait: { timeoutMs?: number; nowait?: boolean }): unknown {
  if (isStatementTimeout(error)) return new ServerLockTimeoutError(label, 'statement_timeout', wait.timeoutMs, error);
  if (sqlState(error) !== '55P03') return error;
  if (wait.timeoutMs !== undefined) return new LockTimeoutError(label, wait.timeoutMs, error);
  return wait.nowait ? new LockNotAcquiredError(label, error) : new ServerLockTimeoutError(label, 'lock_timeout', undefined, error);
}

/**
 * The error for a wait its signal ended: the signal's reason when it is one of ours (ClientDisconnectedError),
 * else LockAbortedError with the reason as its cause.
 */
export function lockAborted(request: Pick<LockRequest, 'label' | 'signal'>): unknown {
  const reason: unknown = request.signal?.reason;
  return reason instanceof TxLockError ? reason : new LockAbortedError(request.label, reason);
}

/** The reason a try reports for a failure made by lockFailure() or a busy try-lock. */
export function failureReason(failure: unknown): 'locked' | 'timeout' {
  return failure instanceof LockTimeoutError ? 'timeout' : 'locked';
}
