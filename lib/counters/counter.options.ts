import { assertDurationMs, MAX_DURATION_MS } from '../common/durations.js';
import { allowedKeys, type KeyList } from '../common/option-keys.js';
import { qualifiedTableName } from '../common/sql.js';
import type { BigIntValueOption, Integer } from './counter-value.js';

/** The `counters` option of TxLockModule. */
export interface CounterModuleOptions {
  /**
   * The counters table, `name` or `schema.name` (letters, digits, `_`, `$`). Default `'txlock_counters'`.
   * The exported TxLockCounter entity maps the default name.
   */
  table?: string;
  /**
   * Create the table at bootstrap when it is missing, under an advisory lock so replicas booting together do
   * not race. Default `false`: create it with a migration (see TxLockCounter).
   */
  autoCreate?: boolean;
  /**
   * Merge concurrent `increment`/`decrement` calls on one key, made outside a transaction in this process,
   * into one statement while the previous one is in flight; each caller still gets its own value. Default `true`.
   */
  coalesce?: boolean;
}

/** Options of `increment` and `decrement`. */
export interface CounterWindowOptions extends BigIntValueOption {
  /**
   * Fixed window length in ms: the first call after the window ended starts the count again from zero, in
   * the same statement. Windows are timed by the database clock. At most MAX_DURATION_MS (100 years).
   * Default: no window (the count never resets).
   */
  windowMs?: number;
}

/**
 * Options of `increment` and `decrement`: a window, or a key spread over several rows. Not both: each shard
 * row would start and end its own window, so the total would mix counts of different windows.
 */
export interface CounterIncrementOptions extends CounterWindowOptions {
  /**
   * Spread the key over this many rows (1 to MAX_COUNTER_SHARDS) for a key that is hot across many replicas:
   * each statement changes one row chosen at random, so replicas rarely wait for one row lock. `get(key)`
   * still returns the exact total (it sums the rows), and `set`, `reset`, `delete` and `getMany` act on all
   * of them. The trade-off: the value an increment returns is its row's new value, so the values returned
   * are no longer one gap-free sequence (each row counts on its own; no value repeats within a row). Calls
   * in one process still share statements (one queue per key, each statement to one row). Bounds cannot be
   * sharded (`tryIncrement` would need every row: the hot row again), nor can windows. Default 1: one row.
   */
  shards?: number;
}

/** Options of `tryIncrement` / `tryDecrement`: the bounds the value must stay within after the change. */
export interface CounterBoundOptions extends CounterWindowOptions {
  /** The value may not go above this. */
  max?: Integer;
  /** The value may not go below this. */
  min?: Integer;
}

/** What `tryIncrement` / `tryDecrement` did (`value` a bigint when the call passed `{ bigint: true }`). */
export interface BoundedResult<Value extends number | bigint = number> {
  /** True when the change was applied; false when it would have crossed a bound (nothing changed). */
  applied: boolean;
  /**
   * The value after the change when applied. When refused: the value the statement could see (as of its
   * snapshot; under heavy concurrency it may already be out of date), 0 for a missing or expired counter.
   */
  value: Value;
  /** When the current window ends (database clock), for windowed counters; else null. Use it for Retry-After. */
  resetsAt: Date | null;
}

/**
 * Options of `incrementColumn`: the bounds the column must stay within after the change. Without
 * `{ bigint: true }` the values are numbers, and rows that would pass ±Number.MAX_SAFE_INTEGER are left unchanged
 * as a bound would leave them (only a bigint column can get there).
 */
export interface ColumnBoundOptions extends BigIntValueOption {
  /** The column may not go above this; rows that would are left unchanged. */
  max?: Integer;
  /** The column may not go below this (`0` for stock); rows that would are left unchanged. */
  min?: Integer;
}

/** The counters options with defaults applied and the table name validated and quoted. */
export interface ResolvedCounterOptions {
  table: string;
  autoCreate: boolean;
  coalesce: boolean;
}

const BIGINT: KeyList<BigIntValueOption> = { bigint: true };
const WINDOW: KeyList<CounterWindowOptions> = { ...BIGINT, windowMs: true };
const BOUNDS = { max: true, min: true } as const;
/** The option keys each CounterService call takes (tryIncrement() reads `shards` only to refuse it with its reason). */
export const COUNTER_CALLS = {
  increment: allowedKeys<CounterIncrementOptions>('CounterService.increment()', { ...WINDOW, shards: true }),
  decrement: allowedKeys<CounterIncrementOptions>('CounterService.decrement()', { ...WINDOW, shards: true }),
  tryIncrement: allowedKeys<CounterBoundOptions & CounterIncrementOptions>('CounterService.tryIncrement()', { ...WINDOW, ...BOUNDS, shards: true }),
  tryDecrement: allowedKeys<CounterBoundOptions & CounterIncrementOptions>('CounterService.tryDecrement()', { ...WINDOW, ...BOUNDS, shards: true }),
  get: allowedKeys<BigIntValueOption>('CounterService.get()', BIGINT),
  getMany: allowedKeys<BigIntValueOption>('CounterService.getMany()', BIGINT),
  incrementColumn: allowedKeys<ColumnBoundOptions>('CounterService.incrementColumn()', { ...BIGINT, ...BOUNDS }),
};

const DEFAULT_TABLE = 'txlock_counters';

/** Applies defaults; throws InvalidOptionError for a table name that is not `name` or `schema.name`. */
export function resolveCounterOptions(options: CounterModuleOptions = {}): ResolvedCounterOptions {
  return {
    table: qualifiedTableName(options.table ?? DEFAULT_TABLE, 'counters.table'),
    autoCreate: options.autoCreate ?? false,
    coalesce: options.coalesce ?? true,
  };
}

/** A window length as a bound parameter, or InvalidOptionError. */
export function windowParam(windowMs: number | undefined): string | null {
  if (windowMs === undefined) return null;
  assertDurationMs(windowMs, 'windowMs', 1, MAX_DURATION_MS, 'MAX_DURATION_MS, 100 years');
  return String(windowMs);
}
