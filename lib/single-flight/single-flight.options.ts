import { InvalidOptionError } from '../errors.js';
import { assertWholeNumber } from '../transaction/transaction.options.js';

/** Options of `SingleFlightService.run()`. */
export interface SingleFlightOptions {
  /** How long the computed value is kept and shared, in ms. Required. */
  ttlMs: number;
  /** Separates families of keys (`'reports'`, `'prices'`), for the stored value and for the lock. Default `''`. */
  namespace?: string;
  /** The longest one caller waits for someone else's computation (or for the lock), in ms; then LockTimeoutError for that caller only. Default: no limit. */
  timeoutMs?: number;
}

/** The `singleFlight` part of the module options. */
export interface SingleFlightModuleOptions {
  /**
   * Where values are kept: `'postgres'` (default; a table, shared by every process on the database) or
   * `'cache-manager'` (the app's Nest CACHE_MANAGER; share it across processes, e.g. Redis, or each process computes once).
   */
  store?: 'postgres' | 'cache-manager';
  /** The table of the postgres store, optionally schema-qualified. Default `txlock_single_flight`. */
  table?: string;
  /** Create the table at bootstrap if it is missing (safe with replicas starting together). Default false. */
  autoCreate?: boolean;
}

/** Throws InvalidOptionError for an empty key or out-of-range durations. */
export function validateSingleFlight(key: unknown, options: SingleFlightOptions, where: string): void {
  if (key !== undefined && (typeof key !== 'string' || key.length === 0)) throw new InvalidOptionError(`${where} key`, key, 'a non-empty string');
  if (options.ttlMs === undefined) throw new InvalidOptionError(`${where} "ttlMs"`, undefined, 'a whole number >= 1');
  assertWholeNumber(options.ttlMs, `${where} "ttlMs"`, 1);
  assertWholeNumber(options.timeoutMs, `${where} "timeoutMs"`, 1);
  if (options.namespace !== undefined && typeof options.namespace !== 'string') {
    throw new InvalidOptionError(`${where} "namespace"`, options.namespace, 'a string');
  }
}
