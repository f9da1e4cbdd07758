import { Injectable } from '@nestjs/common';
import type { EntityTarget, ObjectLiteral } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import { EntityTable, type BoundColumn, type EntityValues } from '../common/entity-table.js';
import { checkOptionKeys } from '../common/option-keys.js';
import { advisoryKey } from '../common/sql.js';
import {
  AdvisoryIsolationError,
  GetOrCreateConflictError,
  GetOrCreateSerializationError,
  InvalidOptionError,
  MissingColumnValueError,
  MissingUniqueConstraintError,
  MultipleRowsFoundError,
} from '../errors.js';
import { explainConnectionLoss } from '../transaction/connection-errors.js';
import { sqlState } from '../transaction/sql-state.js';
import { currentScope } from '../transaction/transaction-scope.js';
import { TransactionHost } from '../transaction/transaction.host.js';
import { IsolationLevel, Propagation } from '../transaction/transaction.options.js';
import { ATOMIC_CALLS, type BulkGetOrCreateOptions, type BulkGetOrCreateResult, type GetOrCreateOptions, type GetOrCreateResult } from './atomic.options.js';
import {
  bulkGetOrCreateStatement,
  bulkReadStatement,
  CREATED,
  getOrCreateStatement,
  insertStatement,
  POSITION,
  readStatement,
  updateOrCreateStatement,
  type Statement,
} from './atomic.sql.js';
import { planBulk, type PlannedRow } from './bulk-plan.js';
import { missingColumnError } from './missing-column.js';
import { NullKeyRule, type NullValue } from './null-key-rule.js';
import { findUniqueKey } from './unique-key.js';
import { updateColumns } from './update-columns.js';

/** How often an insert that lost a race is re-read before giving up (each round needs a concurrent delete to fail). */
const ATTEMPTS = 3;
const SERIALIZATION_FAILURE = '40001';
const NO_MATCHING_CONSTRAINT = '42P10';

type Row = ObjectLiteral;

/** What a statement's errors are read against: the unique key it targets, the columns its INSERT was given. */
interface StatementContext {
  unique?: readonly ColumnMetadata[];
  given?: readonly ColumnMetadata[];
}

/**
 * Race-free get-or-create, update-or-create and bulk get-or-create on any TypeORM entity, for the
 * find-then-save pattern that creates duplicates (Django's get_or_create, TypeORM's findOne + save).
 * PostgreSQL's unique constraint decides who creates; everyone else reads the winner's row. Inside a
 * transaction each call joins it within a savepoint, so a failure never aborts the caller's transaction.
 *
 * @example
 * const { entity: session, created } = await atomic.getOrCreate(Session, { key }, { userId });
 * const { entity } = await atomic.updateOrCreate(Setting, { userId, name }, { value });
 * const { entities } = await atomic.bulkGetOrCreate(Domain, names.map((name) => ({ name })), { conflictColumns: ['name'] });
 */
@Injectable()
export class AtomicService {
  private readonly nullKeys = new NullKeyRule();

  constructor(private readonly txHost: TransactionHost) {}

  /**
   * The row matching `where`, created from `where` + `defaults` when missing. One round trip when the row
   * exists (outside a transaction). N concurrent callers create exactly one row; exactly one gets
   * `created: true`; all get the same row. A unique constraint must cover the `where` columns (else
   * MissingUniqueConstraintError), unless `{ lock: 'advisory' }`. Inside REPEATABLE READ/SERIALIZABLE, losing
   * the race to an invisible row throws GetOrCreateSerializationError (40001): retry the transaction.
   * Refused with InvalidOptionError: an unknown property in `where` or `defaults`, and a NULL in a column of the
   * unique key unless that key is NULLS NOT DISTINCT. MultipleRowsFoundError when `where` matches several rows
   * (possible with `{ lock: 'advisory' }` only); MissingColumnValueError when the row must be created and a
   * NOT NULL column without default got no value.
   */
  async getOrCreate<Entity extends ObjectLiteral>(
    target: EntityTarget<Entity>,
    where: EntityValues<Entity>,
    defaults: EntityValues<Entity> = {},
    options: GetOrCreateOptions = {},
  ): Promise<GetOrCreateResult<Entity>> {
    checkOptionKeys(options, ATOMIC_CALLS.getOrCreate);
    if (options.lock !== undefined && options.lock !== 'advisory') throw new InvalidOptionError('lock', options.lock, ['advisory']);
    const table = EntityTable.of(this.txHost.dataSource, target);
    const bound = table.bindWhere(where);
    table.checkInsertProperties(defaults, 'defaults');
    const insert = table.insertColumns(overlay(defaults, where));
    const nulls = nullsOf(bound, 'where');
    const unique = findUniqueKey(table.metadata, bound.map((b) => b.column), nulls.map((n) => n.column));
    if (unique) {
      return this.againOnMissingColumn(() =>
        this.isolated(async () => {
          await this.checkNullKey(table, unique, nulls);
          return this.getOrInsert(table, bound, insert, unique);
        }),
      );
    }
    if (options.lock !== 'advisory') throw this.missingUnique(table, bound.map((b) => b.column));
    // Outside a transaction the lock needs one of its own: READ COMMITTED, so the read after the lock sees rows committed while waiting.
    return this.txHost.isActive
      ? this.isolated(() => this.getOrInsertLocked(table, bound, insert))
      : this.txHost.run({ isolation: IsolationLevel.READ_COMMITTED }, () => this.getOrInsertLocked(table, bound, insert));
  }

  /**
   * Updates the row matching `where` with `values`, or creates it from `where` + `values`, in one statement
   * (`UPDATE`, then only if that found nothing `INSERT ... ON CONFLICT DO UPDATE`). `created` tells which
   * happened. A unique constraint must cover the `where` columns. An existing row needs only the columns that
   * change; a new one needs every NOT NULL column without default (else MissingColumnValueError). A `values`
   * entry for a `where` column outside the unique key is applied (found by the old value, set to the new one);
   * one that changes a unique key column is refused (InvalidOptionError), as is a NULL in the key unless it is
   * NULLS NOT DISTINCT. Concurrent callers on one key leave exactly one row.
   */
  async updateOrCreate<Entity extends ObjectLiteral>(
    target: EntityTarget<Entity>,
    where: EntityValues<Entity>,
    values: EntityValues<Entity>,
  ): Promise<GetOrCreateResult<Entity>> {
    const table = EntityTable.of(this.txHost.dataSource, target);
    const bound = table.bindWhere(where);
    const whereColumns = bound.map((b) => b.column);
    const nulls = nullsOf(bound, 'where');
    const unique = findUniqueKey(table.metadata, whereColumns, nulls.map((n) => n.column)) ?? this.throwMissingUnique(table, whereColumns);
    const update = updateColumns(table, bound, table.bind(values, 'values'), unique);
    const insert = table.insertColumns(overlay(where, values));
    const statement = updateOrCreateStatement(table, bound, insert, update, unique);
    const context = { unique, given: insert.map((b) => b.column) };
    const [row] = await this.againOnMissingColumn(() =>
      this.isolated(async () => {
        await this.checkNullKey(table, unique, nulls);
        return this.query(table, statement, context);
      }),
    );
    if (!row) throw new GetOrCreateConflictError(table.entityName, unique.map((c) => c.propertyPath));
    return { entity: table.hydrate(row), created: row[CREATED] === true };
  }

  /**
   * get-or-create for many rows at once: existing rows are read, missing ones inserted, in at most
   * ceil(distinct rows / 1000) statements (plus a re-read for rows that lost a race), whatever the number of
   * concurrent callers. Rows are sorted by conflict key first, so concurrent bulk calls cannot deadlock.
   * Results come back in input order. Each row must give every conflict column; a NULL in a column of the
   * unique key is refused unless that key is NULLS NOT DISTINCT; unknown properties are refused.
   */
  async bulkGetOrCreate<Entity extends ObjectLiteral>(
    target: EntityTarget<Entity>,
    rows: readonly EntityValues<Entity>[],
    options: BulkGetOrCreateOptions<Entity>,
  ): Promise<BulkGetOrCreateResult<Entity>> {
    const table = EntityTable.of(this.txHost.dataSource, target);
    checkOptionKeys(options, ATOMIC_CALLS.bulkGetOrCreate);
    if (!Array.isArray(options?.conflictColumns) || options.conflictColumns.length === 0) {
      throw new InvalidOptionError('conflictColumns', options?.conflictColumns, 'a non-empty array of property names');
    }
    const key = options.conflictColumns.flatMap((property) => table.columns(property, 'conflictColumns'));
    const plan = planBulk(table, rows as readonly ObjectLiteral[], key);
    const nullColumns = plan.nulls.map((n) => n.column);
    const unique = findUniqueKey(table.metadata, key, nullColumns) ?? this.throwMissingUnique(table, key);
    const nullable = new Set(nullColumns);
    const found = new Map<string, { entity: Entity; created: boolean }>();
    await this.isolated(async () => {
      await this.checkNullKey(table, unique, plan.nulls);
      for (const chunk of plan.chunks) await this.getOrInsertChunk(table, chunk, key, unique, nullable, found);
    });
    const seen = new Set<string>();
    const result: BulkGetOrCreateResult<Entity> = { entities: [], created: [] };
    for (const rowKey of plan.keys) {
      const { entity, created } = found.get(rowKey)!;
      result.entities.push(entity);
      result.created.push(created && !seen.has(rowKey));
      seen.add(rowKey);
    }
    return result;
  }

  private async getOrInsert<Entity extends ObjectLiteral>(
    table: EntityTable<Entity>,
    where: BoundColumn[],
    insert: BoundColumn[],
    unique: ColumnMetadata[],
  ): Promise<GetOrCreateResult<Entity>> {
    const context = { unique, given: insert.map((b) => b.column) };
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const row = this.single(table, where, await this.query(table, getOrCreateStatement(table, where, insert, unique), context));
      if (row) return { entity: table.hydrate(row), created: row[CREATED] === true };
      // The insert conflicted with a row committed after this statement's snapshot: a new statement sees it
      // under READ COMMITTED. Under REPEATABLE READ/SERIALIZABLE the snapshot never will.
      const winner = this.single(table, where, await this.query(table, readStatement(table, where)));
      if (winner) return { entity: table.hydrate(winner), created: false };
      await this.throwUnlessReadCommitted(table);
    }
    throw new GetOrCreateConflictError(table.entityName, unique.map((c) => c.propertyPath));
  }

  private async getOrInsertLocked<Entity extends ObjectLiteral>(
    table: EntityTable<Entity>,
    where: BoundColumn[],
    insert: BoundColumn[],
  ): Promise<GetOrCreateResult<Entity>> {
    const values = JSON.stringify(
      where.map(({ column, value }) => [column.databaseName, value]).sort(),
      (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v),
    );
    const lockKey = advisoryKey(`get-or-create:${table.name}:${values}`);
    const [lock] = await this.txHost.query<{ isolation: string }>(
      `SELECT pg_advisory_xact_lock($1::bigint), current_setting('transaction_isolation') AS isolation`,
      [lockKey],
    );
    if (lock!.isolation === 'repeatable read') throw new AdvisoryIsolationError(table.entityName);
    const existing = this.single(table, where, await this.query(table, readStatement(table, where)));
    if (existing) return { entity: table.hydrate(existing), created: false };
    const [created] = await this.query(table, insertStatement(table, insert), { given: insert.map((b) => b.column) });
    return { entity: table.hydrate(created!), created: true };
  }

  private async getOrInsertChunk<Entity extends ObjectLiteral>(
    table: EntityTable<Entity>,
    chunk: PlannedRow[],
    key: ColumnMetadata[],
    unique: ColumnMetadata[],
    nullable: ReadonlySet<ColumnMetadata>,
    found: Map<string, { entity: Entity; created: boolean }>,
  ): Promise<void> {
    const collect = (rows: Row[], planned: PlannedRow[]) => {
      for (const row of rows) found.set(planned[Number(row[POSITION]) - 1]!.key, { entity: table.hydrate(row), created: row[CREATED] === true });
    };
    const columns = chunk[0]!.columns;
    const statement = bulkGetOrCreateStatement(table, columns, key, unique, chunk.map((r) => r.json), nullable);
    collect(await this.query(table, statement, { unique, given: columns }), chunk);
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const missing = chunk.filter((row) => !found.has(row.key));
      if (missing.length === 0) return;
      if (attempt > 1) await this.throwUnlessReadCommitted(table);
      collect(await this.query(table, bulkReadStatement(table, key, missing.map((r) => r.json), nullable)), missing);
    }
    if (chunk.some((row) => !found.has(row.key))) throw new GetOrCreateConflictError(table.entityName, unique.map((c) => c.propertyPath));
  }

  /**
   * Runs `attempt` once more when it failed with MissingColumnValueError. PostgreSQL checks NOT NULL on the row
   * proposed for INSERT before it looks for a conflicting one, so a row committed after the statement's snapshot
   * surfaces as that error rather than as a conflict; the next statement sees the row under READ COMMITTED and
   * takes it. When there is no such row, the second failure is the answer. (`attempt` must be isolated: inside
   * a transaction the failed statement aborted its savepoint.)
   */
  private async againOnMissingColumn<T>(attempt: () => Promise<T>): Promise<T> {
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof MissingColumnValueError)) throw error;
      return attempt();
    }
  }

  /** NullKeyRule, reading the catalog through the current transaction (or the pool outside one). */
  private checkNullKey(table: EntityTable<ObjectLiteral>, unique: readonly ColumnMetadata[], nulls: readonly NullValue[]): Promise<void> {
    return this.nullKeys.check(table, unique, nulls, (statement) => this.query(table, statement));
  }

  /** The one row a lookup read, or none; MultipleRowsFoundError when it read two (reads take at most 2). */
  private single(table: EntityTable<ObjectLiteral>, where: BoundColumn[], rows: Row[]): Row | undefined {
    if (rows.length > 1) throw new MultipleRowsFoundError(table.entityName, where.map((b) => b.column.propertyPath));
    return rows[0];
  }

  /** Inside a transaction: in a savepoint, so a failed statement does not abort the caller's transaction. */
  private isolated<T>(fn: () => Promise<T>): Promise<T> {
    return this.txHost.isActive ? this.txHost.run({ propagation: Propagation.NESTED }, fn) : fn();
  }

  private async throwUnlessReadCommitted(table: EntityTable<ObjectLiteral>): Promise<void> {
    // Outside a transaction each statement has a snapshot of its own, whatever the server's default isolation.
    if (!currentScope(this.txHost.dataSource)) return;
    const [row] = await this.txHost.query<{ isolation: string }>(`SELECT current_setting('transaction_isolation') AS isolation`);
    if (row!.isolation !== 'read committed') throw new GetOrCreateSerializationError(table.entityName);
  }

  private async query(table: EntityTable<ObjectLiteral>, statement: Statement, context: StatementContext = {}): Promise<Row[]> {
    try {
      return await this.txHost.query<Row>(statement.sql, statement.params);
    } catch (error) {
      const state = sqlState(error);
      if (state === SERIALIZATION_FAILURE) throw new GetOrCreateSerializationError(table.entityName, error);
      // The entity declares a unique key that the database lacks (a migration was not run).
      if (state === NO_MATCHING_CONSTRAINT && context.unique) throw this.missingUnique(table, context.unique);
      if (context.given) throw missingColumnError(table, error, context.given) ?? explainConnectionLoss(error);
      throw explainConnectionLoss(error);
    }
  }

  private missingUnique(table: EntityTable<ObjectLiteral>, columns: readonly ColumnMetadata[]): MissingUniqueConstraintError {
    return new MissingUniqueConstraintError(table.entityName, table.name, columns.map((c) => c.databaseName));
  }

  private throwMissingUnique(table: EntityTable<ObjectLiteral>, columns: readonly ColumnMetadata[]): never {
    throw this.missingUnique(table, columns);
  }
}

/** The `where` entries whose value is NULL, as NullKeyRule reports them (`where.tenant`). */
function nullsOf(bound: readonly BoundColumn[], argument: string): NullValue[] {
  return bound.filter((b) => b.value === null).map(({ column }) => ({ column, option: `${argument}.${column.propertyPath}` }));
}

/** `base` with the defined properties of `top` over it (an undefined one leaves base's value, as everywhere else here). */
function overlay(base: ObjectLiteral, top: ObjectLiteral): ObjectLiteral {
  const merged: ObjectLiteral = { ...base };
  for (const [property, value] of Object.entries(top)) if (value !== undefined) merged[property] = value;
  return merged;
}
