import { allowedKeys, checkOptionKeys, type KeyList } from '../common/option-keys.js';
import { InvalidOptionError } from '../errors.js';
import { Propagation } from '../transaction/transaction.options.js';
import { validateNamespace } from './lock-key.js';

/** The propagations under which a lock has a transaction to live in. */
export type LockPropagation = typeof Propagation.REQUIRED | typeof Propagation.REQUIRES_NEW | typeof Propagation.NESTED | typeof Propagation.MANDATORY;
const LOCK_PROPAGATIONS: readonly string[] = [Propagation.REQUIRED, Propagation.REQUIRES_NEW, Propagation.NESTED, Propagation.MANDATORY];

/** How long to wait for a lock another caller holds. Set at most one of `timeoutMs` and `nowait`. */
export interface LockWaitOptions {
  /** Wait at most this long (ms, set with `lock_timeout` for the lock statement only), then throw LockTimeoutError. Default: wait forever. */
  timeoutMs?: number;
  /** Do not wait at all: when the lock is taken, throw LockNotAcquiredError (or skip). Default false. */
  nowait?: boolean;
  /**
   * Stops waiting when it aborts: the call fails with LockAbortedError, the wait is cancelled on the server too
   * (its pooled connection is free at once), and nothing runs. An abort after the lock was taken changes nothing.
   * Inside an HTTP request, the request's own signal (its client went away) applies by default.
   */
  signal?: AbortSignal;
}

/** Options of LockService.withAdvisoryLock() and friends. */
export interface AdvisoryLockCallOptions extends LockWaitOptions {
  /** Take a shared lock: shared holders run together, an exclusive holder excludes them all. Default false (exclusive). */
  shared?: boolean;
  /**
   * `'transaction'` (default): held until the transaction ends, which is opened (or joined) for the call;
   * safe behind PgBouncer in transaction mode. `'session'`: held on one pinned connection until the call
   * ends, with no transaction, for long jobs; needs a direct connection (not a transaction-mode pooler)
   * and cannot be used inside a transaction.
   */
  scope?: 'transaction' | 'session';
  /** Key namespace 0–14, the top 4 bits of the key, so features never collide. Default 0. */
  namespace?: number;
  /**
   * Transaction scope only: how the call relates to an active transaction (see Propagation). Default
   * REQUIRED (join it, or begin one). SUPPORTS, NOT_SUPPORTED and NEVER are refused: the lock needs a transaction.
   */
  propagation?: LockPropagation;
  /**
   * A low-cardinality name for the key (`'account'`, not the account's id), put on the lock's telemetry as
   * `txlock.lock.label`. The key itself never is. Default: none.
   */
  label?: string;
}

/** Options of LockService.lockTables() and @TableLock(). */
export interface TableLockOptions extends LockWaitOptions {
  /** @TableLock() only: how the method relates to an active transaction. Default REQUIRED. */
  propagation?: LockPropagation;
}

/** The eight PostgreSQL table lock modes, weakest first. */
export const TableLockMode = {
  ACCESS_SHARE: 'ACCESS SHARE',
  ROW_SHARE: 'ROW SHARE',
  ROW_EXCLUSIVE: 'ROW EXCLUSIVE',
  SHARE_UPDATE_EXCLUSIVE: 'SHARE UPDATE EXCLUSIVE',
  SHARE: 'SHARE',
  SHARE_ROW_EXCLUSIVE: 'SHARE ROW EXCLUSIVE',
  EXCLUSIVE: 'EXCLUSIVE',
  ACCESS_EXCLUSIVE: 'ACCESS EXCLUSIVE',
} as const;
/** One of the eight table lock modes, spelled as in `LOCK TABLE ... IN <mode> MODE`. */
export type TableLockMode = (typeof TableLockMode)[keyof typeof TableLockMode];
const TABLE_LOCK_MODES: readonly string[] = Object.values(TableLockMode);

/** Throws InvalidOptionError, naming the eight valid modes, unless `mode` is one of them. */
export function validateTableLockMode(mode: unknown, where: string): asserts mode is TableLockMode {
  if (typeof mode !== 'string' || !TABLE_LOCK_MODES.includes(mode)) throw new InvalidOptionError(`${where} mode`, mode, TABLE_LOCK_MODES);
}

/** Throws InvalidOptionError when a wait option is out of range, or both are set. */
export function validateWait(options: LockWaitOptions, where: string): void {
  const { timeoutMs, nowait } = options;
  if (timeoutMs !== undefined && (!Number.isSafeInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 2_147_483_647)) {
    throw new InvalidOptionError(`${where} "timeoutMs"`, timeoutMs, 'an integer number of milliseconds from 1 to 2147483647');
  }
  if (nowait !== undefined && typeof nowait !== 'boolean') throw new InvalidOptionError(`${where} "nowait"`, nowait, [true, false]);
  if (options.signal !== undefined && !isAbortSignal(options.signal)) throw new InvalidOptionError(`${where} "signal"`, options.signal, 'an AbortSignal');
  if (nowait && timeoutMs !== undefined) {
    throw new InvalidOptionError(`${where} "nowait"`, nowait, 'false when timeoutMs is set (either wait a while or not at all)');
  }
}

/** Throws InvalidOptionError when the propagation gives the lock no transaction to live in. */
export function validateLockPropagation(propagation: unknown, where: string): void {
  if (propagation !== undefined && !LOCK_PROPAGATIONS.includes(propagation as string)) {
    throw new InvalidOptionError(`${where} "propagation"`, propagation, `one of ${LOCK_PROPAGATIONS.join(', ')} (a lock needs a transaction to live in)`);
  }
}

/** Validates every advisory lock option, naming the valid values in the error. */
export function validateAdvisoryOptions(options: AdvisoryLockCallOptions, where: string): void {
  validateWait(options, where);
  validateLockPropagation(options.propagation, where);
  if (options.scope !== undefined && options.scope !== 'transaction' && options.scope !== 'session') {
    throw new InvalidOptionError(`${where} "scope"`, options.scope, ['transaction', 'session']);
  }
  if (options.scope === 'session' && options.propagation !== undefined) {
    throw new InvalidOptionError(`${where} "propagation"`, options.propagation, 'unset with scope "session" (a session lock runs outside any transaction)');
  }
  if (options.shared !== undefined && typeof options.shared !== 'boolean') throw new InvalidOptionError(`${where} "shared"`, options.shared, [true, false]);
  if (options.namespace !== undefined) validateNamespace(options.namespace);
  if (options.label !== undefined && (typeof options.label !== 'string' || options.label.length === 0 || options.label.length > 100)) {
    throw new InvalidOptionError(`${where} "label"`, options.label, 'a short, non-empty string of at most 100 characters');
  }
}

/** The keys of AdvisoryLockCallOptions. */
export const ADVISORY_LOCK_CALL_KEYS: KeyList<AdvisoryLockCallOptions> = {
  timeoutMs: true,
  nowait: true,
  signal: true,
  shared: true,
  scope: true,
  namespace: true,
  propagation: true,
  label: true,
};
const WITH_ADVISORY_LOCK = allowedKeys<AdvisoryLockCallOptions>('withAdvisoryLock()', ADVISORY_LOCK_CALL_KEYS);
const TRY_ADVISORY_LOCK = allowedKeys<AdvisoryLockCallOptions>('tryAdvisoryLock()', ADVISORY_LOCK_CALL_KEYS);

/** The keys of TableLockOptions. */
export const TABLE_LOCK_KEYS: KeyList<TableLockOptions> = { timeoutMs: true, nowait: true, signal: true, propagation: true };
const TABLE_LOCK_CALLS = {
  'lockTables()': allowedKeys<TableLockOptions>('lockTables()', TABLE_LOCK_KEYS),
  'withTableLock()': allowedKeys<TableLockOptions>('withTableLock()', TABLE_LOCK_KEYS),
};

/**
 * A checked copy of advisory lock options, each field read once: what the call goes on with, so an options
 * object changed after its first use (or a getter) cannot slip a different value past the check. A key the
 * options do not have is refused.
 */
export function readAdvisoryOptions(options: AdvisoryLockCallOptions, where: 'withAdvisoryLock()' | 'tryAdvisoryLock()'): AdvisoryLockCallOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError(`${where} options`, options, 'an options object');
  checkOptionKeys(options, where === 'withAdvisoryLock()' ? WITH_ADVISORY_LOCK : TRY_ADVISORY_LOCK);
  const { timeoutMs, nowait, shared, scope, namespace, propagation, label, signal } = options;
  const snapshot = { timeoutMs, nowait, shared, scope, namespace, propagation, label, signal };
  validateAdvisoryOptions(snapshot, where);
  return snapshot;
}

/** A copy of table lock options, each field read once (validateTableLock() checks it); a key they do not have is refused. */
export function readTableLockOptions(options: TableLockOptions, where: keyof typeof TABLE_LOCK_CALLS): TableLockOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('table lock options', options, 'an options object');
  checkOptionKeys(options, TABLE_LOCK_CALLS[where]);
  const { timeoutMs, nowait, propagation, signal } = options;
  return { timeoutMs, nowait, propagation, signal };
}

// Duck-typed: an AbortSignal of another realm (a test runner's VM context) is as good as ours.
function isAbortSignal(value: unknown): value is AbortSignal {
  const signal = value as Partial<AbortSignal> | null;
  return typeof signal === 'object' && signal !== null && typeof signal.aborted === 'boolean' && typeof signal.addEventListener === 'function';
}
