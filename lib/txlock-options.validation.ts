import { MAX_TIMER_MS } from './common/durations.js';
import { InvalidOptionError } from './errors.js';
import { POOLER_MODES } from './server/pooler.js';
import { assertWholeNumber, readTransactionOptions } from './transaction/transaction.options.js';
import type { TxLockModuleOptions } from './txlock-options.interface.js';

// Every key TxLockModuleOptions (and each part of it) accepts, for the error that lists them.
const KEYS = {
  '': [
    'dataSource',
    'joinDataSource',
    'autoCreate',
    'isolation',
    'timeoutMs',
    'retries',
    'retryBackoff',
    'acquireTimeoutMs',
    'rollbackOnDisconnect',
    'pooler',
    'preparedStatements',
    'counters',
    'leases',
    'singleFlight',
  ],
  retryBackoff: ['minMs', 'maxMs'],
  counters: ['table', 'autoCreate', 'coalesce'],
  leases: ['table', 'autoCreate', 'holderId'],
  singleFlight: ['store', 'table', 'autoCreate'],
} as const;
const STORES = ['postgres', 'cache-manager'];
const BOOLEANS = ['joinDataSource', 'autoCreate', 'rollbackOnDisconnect', 'preparedStatements'] as const;

/**
 * Refuses TxLockModule options with keys it does not know (a typo such as `retrys`, an option given at the wrong
 * level such as a top-level `table`) or values of the wrong kind, with InvalidOptionError naming the valid keys or
 * values (and the closest key), and module-wide defaults out of range (isolation, timeoutMs, retries, acquireTimeoutMs,
 * retryBackoff). Options of the features (counters, leases...) with ranges are checked by their services.
 */
export function validateModuleOptions(options: unknown): void {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('TxLockModule options', options, 'an options object');
  const record = options as Record<string, unknown>;
  checkKeys(record, '');
  for (const part of ['retryBackoff', 'counters', 'leases', 'singleFlight'] as const) {
    const value = record[part];
    if (value === undefined) continue;
    if (typeof value !== 'object' || value === null) throw new InvalidOptionError(`TxLockModule option "${part}"`, value, 'an object');
    checkKeys(value as Record<string, unknown>, part);
  }
  for (const key of BOOLEANS) {
    if (record[key] !== undefined && typeof record[key] !== 'boolean') throw new InvalidOptionError(`TxLockModule option "${key}"`, record[key], [true, false]);
  }
  if (record.pooler !== undefined && !POOLER_MODES.includes(record.pooler as never)) throw new InvalidOptionError('TxLockModule option "pooler"', record.pooler, POOLER_MODES);
  const store = (record.singleFlight as { store?: unknown } | undefined)?.store;
  if (store !== undefined && !STORES.includes(store as string)) throw new InvalidOptionError('TxLockModule option "singleFlight.store"', store, STORES);
  const checked = options as TxLockModuleOptions;
  readTransactionOptions({ isolation: checked.isolation, timeoutMs: checked.timeoutMs, retries: checked.retries }, 'TxLockModule option');
  // Both become Node timers, which fire after 1 ms when given more than MAX_TIMER_MS.
  assertWholeNumber(checked.acquireTimeoutMs, 'TxLockModule option "acquireTimeoutMs"', 1, MAX_TIMER_MS);
  if (checked.retryBackoff !== undefined) {
    assertWholeNumber(checked.retryBackoff.minMs, 'TxLockModule option "retryBackoff.minMs"', 0, MAX_TIMER_MS);
    assertWholeNumber(checked.retryBackoff.maxMs, 'TxLockModule option "retryBackoff.maxMs"', checked.retryBackoff.minMs, MAX_TIMER_MS);
  }
}

function checkKeys(record: Record<string, unknown>, part: keyof typeof KEYS): void {
  const valid: readonly string[] = KEYS[part];
  for (const key of Object.keys(record)) {
    if (valid.includes(key)) continue;
    const name = part ? `${part}.${key}` : key;
    const closest = closestKey(key, valid);
    throw new InvalidOptionError(
      `TxLockModule option`,
      name,
      valid,
      `Unknown TxLockModule option "${name}"${closest ? ` (did you mean "${part ? `${part}.` : ''}${closest}"?)` : ''}: ` +
        `${part ? `"${part}" takes` : 'the options are'} ${valid.map((k) => `"${k}"`).join(', ')}.`,
    );
  }
}

// The valid key nearest to a misspelt one (Levenshtein distance at most 2), if any.
function closestKey(key: string, valid: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of valid) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}
