import { MAX_TIMER_MS } from './common/durations.js';
import { allowedKeys, checkOptionKeys } from './common/option-keys.js';
import type { CounterModuleOptions } from './counters/counter.options.js';
import { InvalidOptionError } from './errors.js';
import type { LeaseModuleOptions } from './leases/lease.options.js';
import type { ShutdownModuleOptions } from './lifecycle/shutdown.options.js';
import { OUTBOX_MODULE_KEYS, outboxSettings } from './outbox/outbox.options.js';
import { POOLER_MODES } from './server/pooler.js';
import type { SingleFlightModuleOptions } from './single-flight/single-flight.options.js';
import { assertWholeNumber, readTransactionOptions } from './transaction/transaction.options.js';
import type { TxLockModuleOptions } from './txlock-options.interface.js';
import { MIN_VANISHED_CLIENT_TIMEOUT_MS } from './transaction/vanished-client.js';

// Every key TxLockModuleOptions (and each part of it) accepts, for the error that lists them.
const OWNER = 'TxLockModule';
const KEYS = {
  '': allowedKeys<TxLockModuleOptions>(OWNER, {
    dataSource: true,
    joinDataSource: true,
    autoCreate: true,
    isolation: true,
    timeoutMs: true,
    retries: true,
    retryBackoff: true,
    acquireTimeoutMs: true,
    rollbackOnDisconnect: true,
    pooler: true,
    preparedStatements: true,
    counters: true,
    leases: true,
    singleFlight: true,
    outbox: true,
    shutdown: true,
    vanishedClientTimeoutMs: true,
    settings: true,
  }),
  retryBackoff: allowedKeys<NonNullable<TxLockModuleOptions['retryBackoff']>>(OWNER, { minMs: true, maxMs: true }),
  counters: allowedKeys<CounterModuleOptions>(OWNER, { table: true, autoCreate: true, coalesce: true }),
  leases: allowedKeys<LeaseModuleOptions>(OWNER, { table: true, autoCreate: true, holderId: true }),
  singleFlight: allowedKeys<SingleFlightModuleOptions>(OWNER, { store: true, table: true, autoCreate: true }),
  outbox: OUTBOX_MODULE_KEYS,
  shutdown: allowedKeys<ShutdownModuleOptions>(OWNER, { graceMs: true }),
};
const STORES = ['postgres', 'cache-manager'];
const BOOLEANS = ['joinDataSource', 'autoCreate', 'rollbackOnDisconnect', 'preparedStatements'] as const;

/**
 * Refuses TxLockModule options with keys it does not know (a typo such as `retrys`, an option given at the wrong
 * level such as a top-level `table`) or values of the wrong kind, with InvalidOptionError naming the valid keys or
 * values (and the closest key), and module-wide defaults out of range (isolation, timeoutMs, retries, acquireTimeoutMs,
 * retryBackoff, shutdown.graceMs). Options of the features (counters, leases...) with ranges are checked by their services.
 */
export function validateModuleOptions(options: unknown): void {
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('TxLockModule options', options, 'an options object');
  const record = options as Record<string, unknown>;
  checkOptionKeys(record, KEYS['']);
  for (const part of ['retryBackoff', 'counters', 'leases', 'singleFlight', 'outbox', 'shutdown'] as const) {
    const value = record[part];
    if (value === undefined) continue;
    if (typeof value !== 'object' || value === null) throw new InvalidOptionError(`TxLockModule option "${part}"`, value, 'an object');
    checkOptionKeys(value, KEYS[part], part);
  }
  for (const key of BOOLEANS) {
    if (record[key] !== undefined && typeof record[key] !== 'boolean') throw new InvalidOptionError(`TxLockModule option "${key}"`, record[key], [true, false]);
  }
  if (record.pooler !== undefined && !POOLER_MODES.includes(record.pooler as never)) throw new InvalidOptionError('TxLockModule option "pooler"', record.pooler, POOLER_MODES);
  const store = (record.singleFlight as { store?: unknown } | undefined)?.store;
  if (store !== undefined && !STORES.includes(store as string)) throw new InvalidOptionError('TxLockModule option "singleFlight.store"', store, STORES);
  const checked = options as TxLockModuleOptions;
  outboxSettings(checked.outbox, checked.autoCreate, checked.pooler);
  readTransactionOptions({ isolation: checked.isolation, timeoutMs: checked.timeoutMs, retries: checked.retries }, 'TxLockModule option');
  // These become Node timers, which fire after 1 ms when given more than MAX_TIMER_MS.
  assertWholeNumber(checked.acquireTimeoutMs, 'TxLockModule option "acquireTimeoutMs"', 1, MAX_TIMER_MS);
  assertWholeNumber(checked.shutdown?.graceMs, 'TxLockModule option "shutdown.graceMs"', 0, MAX_TIMER_MS);
  const bound = checked.vanishedClientTimeoutMs;
  if (bound !== undefined && bound !== false && (typeof bound !== 'number' || !Number.isSafeInteger(bound) || bound < MIN_VANISHED_CLIENT_TIMEOUT_MS || bound > MAX_TIMER_MS)) {
    throw new InvalidOptionError('TxLockModule option "vanishedClientTimeoutMs"', bound, `false, or a whole number of milliseconds from ${MIN_VANISHED_CLIENT_TIMEOUT_MS} to ${MAX_TIMER_MS}`);
  }
  if (checked.settings !== undefined && typeof checked.settings !== 'function') {
    throw new InvalidOptionError('TxLockModule option "settings"', checked.settings, "a function of the call's context returning custom settings, such as ({ request }) => ({ 'app.tenant_id': ... })");
  }
  if (checked.retryBackoff !== undefined) {
    assertWholeNumber(checked.retryBackoff.minMs, 'TxLockModule option "retryBackoff.minMs"', 0, MAX_TIMER_MS);
    assertWholeNumber(checked.retryBackoff.maxMs, 'TxLockModule option "retryBackoff.maxMs"', checked.retryBackoff.minMs, MAX_TIMER_MS);
  }
}
