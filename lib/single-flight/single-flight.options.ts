import { assertDurationMs, MAX_DURATION_MS, MAX_TIMER_MS } from '../common/durations.js';
import { isWellFormed, WELL_FORMED_TEXT } from '../common/text.js';
import { allowedKeys, checkOptionKeys, type AllowedKeys, type KeyList } from '../common/option-keys.js';
import { InvalidOptionError } from '../errors.js';

/** Options of `SingleFlightService.run()`. */
export interface SingleFlightOptions {
  /** How long the computed value is kept and shared, in ms. Required; at most MAX_DURATION_MS (100 years). */
  ttlMs: number;
  /** Separates families of keys (`'reports'`, `'prices'`), for the stored value and for the lock. Default `''`. */
  namespace?: string;
  /**
   * The longest one caller waits for someone else's computation (or for the lock), in ms; then LockTimeoutError
   * for that caller only. At most MAX_TIMER_MS (a Node timer). Default: no limit.
   */
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

const TTL_BOUND = 'MAX_DURATION_MS, 100 years';
const TIMER_BOUND = 'MAX_TIMER_MS, the longest delay a Node timer keeps';

/**
 * Throws InvalidOptionError for a key that is not a non-empty string, a namespace that is not a string,
 * either one not well-formed UTF-16 (refused as counter keys, lock keys and lease names are), or
 * out-of-range durations. (NUL is fine here: keys are stored JSON-encoded, which escapes it.)
 */
/** The keys of SingleFlightOptions. */
export const SINGLE_FLIGHT_OPTION_KEYS: KeyList<SingleFlightOptions> = { ttlMs: true, namespace: true, timeoutMs: true };
/** What SingleFlightService.run() takes. */
export const SINGLE_FLIGHT_RUN = allowedKeys<SingleFlightOptions>('SingleFlightService.run()', SINGLE_FLIGHT_OPTION_KEYS);

/** Throws InvalidOptionError for a bad key, a key of `options` that `allowed` lacks, or a value out of range. */
export function validateSingleFlight(key: unknown, options: SingleFlightOptions, where: string, allowed: AllowedKeys): void {
  if (key !== undefined) {
    if (typeof key !== 'string' || key.length === 0) throw new InvalidOptionError(`${where} key`, key, 'a non-empty string');
    if (!isWellFormed(key)) throw new InvalidOptionError(`${where} key`, key, `a string that is ${WELL_FORMED_TEXT}`);
  }
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError(`${where} options`, options, 'an object with ttlMs');
  checkOptionKeys(options, allowed);
  if (options.ttlMs === undefined) throw new InvalidOptionError(`${where} "ttlMs"`, undefined, `a whole number of milliseconds from 1 to ${MAX_DURATION_MS} (${TTL_BOUND})`);
  assertDurationMs(options.ttlMs, `${where} "ttlMs"`, 1, MAX_DURATION_MS, TTL_BOUND);
  assertDurationMs(options.timeoutMs, `${where} "timeoutMs"`, 1, MAX_TIMER_MS, TIMER_BOUND);
  const { namespace } = options;
  if (namespace !== undefined && typeof namespace !== 'string') throw new InvalidOptionError(`${where} "namespace"`, namespace, 'a string');
  if (namespace !== undefined && !isWellFormed(namespace)) {
    throw new InvalidOptionError(`${where} "namespace"`, namespace, `a string that is ${WELL_FORMED_TEXT}`);
  }
}
