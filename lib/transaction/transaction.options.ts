import { MAX_TIMER_MS } from '../common/durations.js';
import { allowedKeys, checkOptionKeys, type KeyList } from '../common/option-keys.js';
import { InvalidOptionError } from '../errors.js';
import { readSettings, type TransactionSettings } from './transaction-settings.js';

/** How a transactional call relates to a transaction that may already be active. */
export const Propagation = {
  /** Join the active transaction, or begin one (default). */
  REQUIRED: 'REQUIRED',
  /** Always begin a new transaction on a second connection; the active one is suspended meanwhile. */
  REQUIRES_NEW: 'REQUIRES_NEW',
  /** Inside an active transaction, run in a SAVEPOINT that rolls back alone; otherwise like REQUIRED. */
  NESTED: 'NESTED',
  /** Join the active transaction if there is one; otherwise run without a transaction. */
  SUPPORTS: 'SUPPORTS',
  /** Run without a transaction; an active one is suspended (its connection stays held). */
  NOT_SUPPORTED: 'NOT_SUPPORTED',
  /** Join the active transaction; throw TransactionRequiredError when there is none. */
  MANDATORY: 'MANDATORY',
  /** Run without a transaction; throw TransactionNotAllowedError when one is active. */
  NEVER: 'NEVER',
} as const;
/** One of the seven propagation names. */
export type Propagation = (typeof Propagation)[keyof typeof Propagation];

/** PostgreSQL isolation levels (READ UNCOMMITTED behaves as READ COMMITTED in PostgreSQL, so it is not offered). */
export const IsolationLevel = {
  READ_COMMITTED: 'READ COMMITTED',
  REPEATABLE_READ: 'REPEATABLE READ',
  SERIALIZABLE: 'SERIALIZABLE',
} as const;
/** One of the isolation level names, as PostgreSQL spells them. */
export type IsolationLevel = (typeof IsolationLevel)[keyof typeof IsolationLevel];

/** Options of `@Transactional()` and `TransactionHost.run()`. */
export interface TransactionOptions {
  /** Default `REQUIRED`. */
  propagation?: Propagation;
  /** Default: the module's `isolation`, else the server's default (READ COMMITTED). Only applies when a transaction begins. */
  isolation?: IsolationLevel;
  /** Begin the transaction READ ONLY. Default false. Only applies when a transaction begins. */
  readOnly?: boolean;
  /** `statement_timeout` for this transaction only (SET LOCAL), in ms. Default: the module's `timeoutMs`, else none. */
  timeoutMs?: number;
  /**
   * How many times to re-run the whole call after a serialization failure (40001) or deadlock (40P01).
   * Only the outermost transaction retries. Default: the module's `retries`, else 0.
   */
  retries?: number;
  /**
   * Custom settings this transaction sets for itself (`set_config(name, value, true)` in its opening statements, no
   * round trip of their own): `{ 'app.tenant_id': tenantId }` for row-level-security policies. Over the module's
   * `settings` for the same names. Only applies when a transaction begins; joining one (REQUIRED, NESTED...) with
   * other values for these names is refused (InvalidOptionError). Names must be `prefix.name` (InvalidSettingError).
   */
  settings?: TransactionSettings;
}

const PROPAGATIONS = Object.values(Propagation);
const ISOLATIONS = Object.values(IsolationLevel);

/** The keys of TransactionOptions. */
export const TRANSACTION_OPTION_KEYS: KeyList<TransactionOptions> = { propagation: true, isolation: true, readOnly: true, timeoutMs: true, retries: true, settings: true };
const RUN_KEYS = allowedKeys<TransactionOptions>('TransactionHost.run()', TRANSACTION_OPTION_KEYS);

/**
 * A copy of `options` with each field read once, after checking every one (InvalidOptionError names the valid
 * values, or for a key outside `allowed` the valid keys and the closest one). Called on every call, never cached by
 * object identity: an options object changed after its first use is checked again, and the copy is what the call
 * goes on with, so a getter cannot answer differently later.
 */
export function readTransactionOptions(options: TransactionOptions, where = 'transaction option', allowed = RUN_KEYS): TransactionOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError(where, options, 'an options object');
  checkOptionKeys(options, allowed);
  const { propagation, isolation, readOnly, timeoutMs, retries } = options;
  const entries = readSettings(options.settings, `${where} "settings"`);
  const settings = entries.length > 0 ? Object.freeze(Object.fromEntries(entries)) : undefined;
  if (propagation !== undefined && !PROPAGATIONS.includes(propagation)) {
    throw new InvalidOptionError(`${where} "propagation"`, propagation, PROPAGATIONS);
  }
  if (isolation !== undefined && !ISOLATIONS.includes(isolation)) {
    throw new InvalidOptionError(`${where} "isolation"`, isolation, ISOLATIONS);
  }
  if (readOnly !== undefined && typeof readOnly !== 'boolean') {
    throw new InvalidOptionError(`${where} "readOnly"`, readOnly, [true, false]);
  }
  assertWholeNumber(timeoutMs, `${where} "timeoutMs"`, 1, MAX_TIMEOUT_MS);
  assertWholeNumber(retries, `${where} "retries"`, 0);
  return { propagation, isolation, readOnly, timeoutMs, retries, settings };
}

// PostgreSQL's largest timeout setting is also Node's largest timer.
const MAX_TIMEOUT_MS = MAX_TIMER_MS;

/** Throws InvalidOptionError unless value is undefined or a safe integer in [min, max]. */
export function assertWholeNumber(value: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(name, value, max === Number.MAX_SAFE_INTEGER ? `a whole number >= ${min}` : `a whole number from ${min} to ${max}`);
  }
}
