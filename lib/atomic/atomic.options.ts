import { allowedKeys } from '../common/option-keys.js';

/** Options of `getOrCreate`. */
export interface GetOrCreateOptions {
  /**
   * Only for tables without a unique constraint on the `where` columns: `'advisory'` serialises callers on an
   * advisory lock derived from the table and the `where` values, inside a transaction. It only protects
   * against writers that use it too: every code path that inserts these rows must call getOrCreate with
   * `{ lock: 'advisory' }`. Inside a caller's transaction the lock is held until that transaction ends.
   * Refused inside REPEATABLE READ (the snapshot predates the lock). Ignored when a
   * unique constraint exists: the constraint is the better guard. Default: none (a unique constraint is required).
   */
  lock?: 'advisory';
}

/** The result of `getOrCreate` / `updateOrCreate`. */
export interface GetOrCreateResult<Entity> {
  /** The row, read back from the database (generated ids, defaults and all). */
  entity: Entity;
  /** True for exactly one of any number of concurrent callers: the one whose INSERT created the row. */
  created: boolean;
}

/** Options of `bulkGetOrCreate`. */
export interface BulkGetOrCreateOptions<Entity> {
  /** The properties that identify a row; a unique constraint must cover them (or a subset of them). */
  conflictColumns: readonly (keyof Entity & string)[];
}

/** The result of `bulkGetOrCreate`, in the order of the input rows. */
export interface BulkGetOrCreateResult<Entity> {
  /** One entity per input row (rows with the same conflict key get the same entity). */
  entities: Entity[];
  /** Whether this call created each row; a repeated key counts as created at its first position only. */
  created: boolean[];
}

/** The option keys of each AtomicService call that takes options. */
export const ATOMIC_CALLS = {
  getOrCreate: allowedKeys<GetOrCreateOptions>('AtomicService.getOrCreate()', { lock: true }),
  bulkGetOrCreate: allowedKeys<BulkGetOrCreateOptions<object>>('AtomicService.bulkGetOrCreate()', { conflictColumns: true }),
};
