import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { AsyncResource } from 'node:async_hooks';
import type { EntityTarget, ObjectLiteral } from 'typeorm';
import { ensureTable } from '../common/ensure-table.js';
import { EntityTable, type EntityValues } from '../common/entity-table.js';
import { checkOptionKeys } from '../common/option-keys.js';
import { CounterOverflowError, InvalidOptionError } from '../errors.js';
import { explainMissingTable, type LibraryTable } from '../tables/library-table.js';
import { explainConnectionLoss } from '../transaction/connection-errors.js';
import { sqlState } from '../transaction/sql-state.js';
import { TransactionHost } from '../transaction/transaction.host.js';
import { currentScope, type TransactionScope } from '../transaction/transaction-scope.js';
import { TXLOCK_MODULE_OPTIONS } from '../txlock.module-definition.js';
import type { TxLockModuleOptions } from '../txlock-options.interface.js';
import { columnIncrementStatement } from './column-increment.js';
import { CounterCoalescer } from './counter-coalescer.js';
import { allShardRows, keyOfRow, randomShardRow, shardCount } from './counter-shards.js';
import { counterValue, isSafe, readBounds, SAFE_LIMIT, toCounterKey, toInteger, withinSafeRange, type BigIntValueOption, type CounterValue, type Integer } from './counter-value.js';
import {
  COUNTER_CALLS,
  resolveCounterOptions,
  windowParam,
  type BoundedResult,
  type ColumnBoundOptions,
  type CounterBoundOptions,
  type CounterIncrementOptions,
  type ResolvedCounterOptions,
} from './counter.options.js';
import { CounterSql, type BoundedRow, type CounterRow } from './counter.sql.js';

const NUMERIC_OUT_OF_RANGE = '22003';

/**
 * Exact counters in PostgreSQL: every change is one guarded statement, so no two callers can read the
 * same old value and both write old + 1 (the lost update of `findOne` + `save`). Inside a transaction a
 * call joins it and rolls back with it; outside one it commits on its own.
 *
 * Values are `number`s (a call that would pass Number.MAX_SAFE_INTEGER fails with CounterOverflowError and changes
 * nothing), or `bigint`s over PostgreSQL's whole bigint range for a call given `{ bigint: true }` (see CounterValue).
 *
 * @example
 * const likes = await counters.increment(`post:${id}:likes`);
 * await counters.increment('page-views', 1, { shards: 8 }); // hot on every replica: spread over 8 rows
 * const { applied } = await counters.tryIncrement(`quota:${userId}`, 1, { max: 100, windowMs: 60_000 });
 * const [stock] = await counters.incrementColumn(Product, { id }, 'stock', -1, { min: 0 });
 */
@Injectable()
export class CounterService implements OnModuleInit {
  private readonly options: ResolvedCounterOptions;
  private readonly sql: CounterSql;
  private readonly coalescer: CounterCoalescer;

  constructor(
    @Inject(TXLOCK_MODULE_OPTIONS) moduleOptions: TxLockModuleOptions,
    private readonly txHost: TransactionHost,
  ) {
    this.options = resolveCounterOptions({ ...moduleOptions.counters, autoCreate: moduleOptions.counters?.autoCreate ?? moduleOptions.autoCreate });
    this.sql = new CounterSql(this.options.table);
    // Coalesced statements run outside any transaction by construction: the drain loop runs in no caller's context.
    const drains = new AsyncResource('TxLockCounterCoalescer');
    this.coalescer = new CounterCoalescer(
      (key, delta, windowMs, limit) => this.addNow(key, delta, windowMs, limit, BigInt),
      (drain) => txHost.detached(drains, drain),
    );
  }

  /** Creates the counters table at bootstrap when `counters.autoCreate` (or `autoCreate`) is on (safe for replicas booting together). */
  async onModuleInit(): Promise<void> {
    if (this.options.autoCreate) await ensureTable(this.txHost.dataSource, this.sql.table, [this.sql.createTable]);
  }

  /**
   * Adds `by` (default 1, not negative) to `key` and returns the new value, creating the counter at `by`.
   * With `windowMs`, a call after the window ended starts a fresh count (fixed window, database clock).
   * With `shards`, the key is spread over that many rows and the value returned is the new value of the row
   * this call changed (see CounterIncrementOptions); `get(key)` returns the total.
   */
  increment<Options extends CounterIncrementOptions = object>(key: string, by: Integer = 1, options?: Options): Promise<CounterValue<Options>> {
    try {
      checkOptionKeys(options, COUNTER_CALLS.increment);
      return this.add(key, toInteger(by, 'by', { nonNegative: true }), options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Subtracts `by` (default 1, not negative) from `key` and returns the new value (it may go below zero; see tryDecrement). */
  decrement<Options extends CounterIncrementOptions = object>(key: string, by: Integer = 1, options?: Options): Promise<CounterValue<Options>> {
    try {
      checkOptionKeys(options, COUNTER_CALLS.decrement);
      return this.add(key, -toInteger(by, 'by', { nonNegative: true }), options);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Adds `by` only if the value stays at most `max` (a quota): under any concurrency, never more than
   * `max` is granted. Check and consume are one statement. Not for sharded keys: `shards` is refused, and on
   * a key other calls increment with `shards` the bound would only see the row `key` itself.
   */
  async tryIncrement<Options extends CounterBoundOptions & { max: Integer }>(key: string, by: Integer, options: Options): Promise<BoundedResult<CounterValue<Options>>> {
    checkOptionKeys(options, COUNTER_CALLS.tryIncrement);
    return this.tryAdd(key, toInteger(by, 'by', { nonNegative: true }), options);
  }

  /** Subtracts `by` only if the value stays at least `min` (stock, credits): it never goes below. */
  async tryDecrement<Options extends CounterBoundOptions & { min: Integer }>(key: string, by: Integer, options: Options): Promise<BoundedResult<CounterValue<Options>>> {
    checkOptionKeys(options, COUNTER_CALLS.tryDecrement);
    return this.tryAdd(key, -toInteger(by, 'by', { nonNegative: true }), options);
  }

  /** The value of `key` (the total of its shards for a sharded key): 0 when it does not exist or its window has ended. */
  async get<Options extends BigIntValueOption = object>(key: string, options?: Options): Promise<CounterValue<Options>> {
    checkOptionKeys(options, COUNTER_CALLS.get);
    const rows = await this.query<{ value: string | null }>(this.sql.get, [allShardRows(toCounterKey(key))], key);
    return counterValue(rows[0]?.value ?? 0, options, key);
  }

  /** The values of `keys` in one statement, in the order given (0 for missing or ended counters; totals for sharded keys). */
  async getMany<Options extends BigIntValueOption = object>(keys: readonly string[], options?: Options): Promise<Map<string, CounterValue<Options>>> {
    checkOptionKeys(options, COUNTER_CALLS.getMany);
    const valid = keys.map(toCounterKey);
    const rows = await this.query<{ key: string; value: string }>(this.sql.getMany, [valid.flatMap(allShardRows)], 'counters');
    const totals = new Map<string, bigint>();
    for (const row of rows) {
      const key = keyOfRow(row.key);
      totals.set(key, (totals.get(key) ?? 0n) + BigInt(row.value));
    }
    return new Map(valid.map((key) => [key, counterValue(totals.get(key) ?? 0n, options, key)]));
  }

  /** Sets `key` to `value` (creating it), removing any window; a sharded key becomes one row again. */
  async set(key: string, value: Integer): Promise<void> {
    const [row, ...shards] = allShardRows(toCounterKey(key));
    await this.query(this.sql.set, [row, toInteger(value, 'value').toString(), shards], key);
  }

  /** Sets `key` back to 0, removing any window. */
  async reset(key: string): Promise<void> {
    return this.set(key, 0);
  }

  /** Deletes `key` (and its shards); true when it existed. */
  async delete(key: string): Promise<boolean> {
    const rows = await this.query<{ n: number }>(this.sql.delete, [allShardRows(toCounterKey(key))], key);
    return rows[0]!.n > 0;
  }

  /** Deletes every counter whose window has ended (run it now and then for per-user rate limits); returns how many. */
  async deleteExpired(): Promise<number> {
    const rows = await this.query<{ n: number }>(this.sql.deleteExpired, [], 'counters');
    return rows[0]!.n;
  }

  /**
   * `UPDATE table SET column = column + by WHERE where` in the database, the safe form of
   * `entity.points += by; save()`. Returns the new value of each updated row (empty when no row matched, or
   * the bounds refused every matched row: with `{ min: 0 }` stock never goes negative). Identifiers come
   * from TypeORM metadata and are quoted; values are bound. Entity listeners and subscribers do not run.
   */
  async incrementColumn<Entity extends ObjectLiteral, Options extends ColumnBoundOptions = object>(
    target: EntityTarget<Entity>,
    where: EntityValues<Entity>,
    column: keyof Entity & string,
    by: Integer,
    bounds?: Options,
  ): Promise<CounterValue<Options>[]> {
    checkOptionKeys(bounds, COUNTER_CALLS.incrementColumn);
    const dataSource = this.txHost.dataSource;
    const table = EntityTable.of(dataSource, target);
    const normalize = (metadata: Parameters<typeof dataSource.driver.normalizeType>[0]) => dataSource.driver.normalizeType(metadata);
    const { sql, params } = columnIncrementStatement(table, where, column, toInteger(by, 'by'), bounds ?? {}, normalize);
    const name = `${table.entityName}.${column}`;
    const rows = await this.query<{ value: string }>(sql, params, name);
    return rows.map((row) => counterValue(row.value, bounds, name));
  }

  // Not async (increment() and decrement() turn a throw into a rejection): a coalesced increment, the hot path, makes
  // one promise, its place in the batch.
  private add<Options extends CounterIncrementOptions>(key: string, delta: bigint, options: Options | undefined): Promise<CounterValue<Options>> {
    const validKey = toCounterKey(key);
    const windowMs = windowParam(options?.windowMs);
    const shards = shardCount(options?.shards);
    if (shards > 1 && windowMs !== null) {
      throw new InvalidOptionError('shards', options?.shards, 'no shards with windowMs: each shard would start and end its own window');
    }
    const limit = options?.bigint ? null : SAFE_LIMIT;
    if (this.options.coalesce && !this.txHost.isActive) {
      // Handed out as the caller takes it (a bigint exactly when there is no limit): no promise of its own to convert.
      const value = this.coalescer.add(validKey, delta, windowMs, shards, limit, this.txHost.sharingTag()) as Promise<CounterValue<Options>>;
      const test = currentScope(this.txHost.dataSource)?.root;
      if (test?.kind === 'test') countAsTestWork(value, test);
      return value;
    }
    return this.addNow(randomShardRow(validKey, shards), delta, windowMs, limit, (value) => counterValue(value, options, key));
  }

  // `row` is the key itself, or one of its shards (then errors still name the key). With `limit`, a value that
  // would pass it changes nothing and fails: a delta that does by itself before anything is sent, else the
  // statement's guard returns no row. The new value is handed to `as`, in the reaction that reads the row: not
  // async, so an increment costs one promise here instead of an async frame per step.
  private addNow<T>(row: string, delta: bigint, windowMs: string | null, limit: bigint | null, as: (value: string) => T): Promise<T> {
    const key = keyOfRow(row);
    if (limit !== null && (delta > limit || delta < -limit)) return Promise.reject(new CounterOverflowError(key, undefined, 'number'));
    const limitParam = limit?.toString() ?? null;
    const sql = windowMs === null ? this.sql.add : this.sql.addInWindow;
    const params = windowMs === null ? [row, delta.toString(), limitParam] : [row, delta.toString(), windowMs, limitParam];
    return this.query<CounterRow, T>(sql, params, key, (rows) => {
      if (!rows[0]) throw new CounterOverflowError(key, undefined, 'number');
      return as(rows[0].value);
    });
  }

  private async tryAdd<Options extends CounterBoundOptions>(key: string, delta: bigint, options: Options): Promise<BoundedResult<CounterValue<Options>>> {
    const validKey = toCounterKey(key);
    // A bound on a sharded total needs every shard locked at once: the one hot row sharding avoids.
    const { shards } = options as CounterIncrementOptions;
    if (shards !== undefined) throw new InvalidOptionError('shards', shards, 'no shards with bounds (min, max): use an unsharded key for quotas and stock');
    const windowMs = windowParam(options.windowMs);
    const asked = readBounds(options);
    if (asked.min === undefined && asked.max === undefined) throw new InvalidOptionError('bounds', options, 'at least one of min, max');
    const { min, max } = withinSafeRange(asked, options.bigint);
    // A new counter starts at 0: when `delta` alone is out of bounds, the statement must not create one.
    const creates = (min === undefined || delta >= min) && (max === undefined || delta <= max);
    const sql = creates ? this.sql.addWithinBoundsOrCreate : this.sql.addWithinBounds;
    const rows = await this.query<BoundedRow>(sql, [validKey, delta.toString(), windowMs, min?.toString() ?? null, max?.toString() ?? null], key);
    const row = rows[0];
    const seen = BigInt(row?.value ?? 0);
    // Refused by the safe-integer range only (the caller's own bounds would have allowed it): an overflow.
    if (row && !row.applied && !options.bigint && !isSafe(seen + delta) && (asked.min === undefined || seen + delta >= asked.min) && (asked.max === undefined || seen + delta <= asked.max)) {
      throw new CounterOverflowError(key, undefined, 'number');
    }
    return { applied: row?.applied ?? false, value: counterValue(seen, options, key), resetsAt: row?.expires_at ?? null };
  }

  /**
   * The table this service keeps its data in, for the bootstrap check of the library's tables. Not part of the
   * public API.
   * @internal
   */
  libraryTable(): LibraryTable {
    return { table: this.sql.table, service: 'CounterService', option: 'counters' };
  }

  // In the caller's transaction, or alone (autocommit) outside one; with `then`, the rows are read in the same reaction
  // that explains a failure (what `then` throws is its own error, not explained).
  private query<Row>(sql: string, params: unknown[], target: string): Promise<Row[]>;
  private query<Row, T>(sql: string, params: unknown[], target: string, then: (rows: Row[]) => T): Promise<T>;
  private query<Row, T>(sql: string, params: unknown[], target: string, then?: (rows: Row[]) => T): Promise<Row[] | T> {
    return this.txHost.query<Row>(sql, params).then(then, (error: unknown) => {
      if (sqlState(error) === NUMERIC_OUT_OF_RANGE) throw new CounterOverflowError(target, error);
      throw explainConnectionLoss(explainMissingTable(error, this.libraryTable()));
    });
  }
}

// Under a test transaction, an increment waiting in its batch is the test's work until it settles, also while the batch
// has no statement queued on the test's connection yet: the test's end reports it (UnfinishedTestWorkError).
function countAsTestWork(value: Promise<unknown>, test: TransactionScope): void {
  test.unsent++;
  const settled = () => {
    test.unsent--;
  };
  value.then(settled, settled);
}
