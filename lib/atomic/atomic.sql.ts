import type { ObjectLiteral } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import type { BoundColumn, EntityTable } from '../common/entity-table.js';
import { quoteIdentifier, SqlParams } from '../common/sql.js';

/** A statement with its bound parameters. */
export interface Statement {
  sql: string;
  params: unknown[];
}

/** The flag and position columns our statements add to each returned row (beside the table's own). */
export const CREATED = 'txlock_created';
export const POSITION = 'txlock_position';

const names = (columns: readonly ColumnMetadata[]) => columns.map((column) => quoteIdentifier(column.databaseName)).join(', ');
/** `("a", "b")` and `$1, $2` for the columns and values of an INSERT. */
function insertList(insert: readonly BoundColumn[], params: SqlParams): { columns: string; values: string } {
  return { columns: names(insert.map((bound) => bound.column)), values: insert.map(({ value }) => params.add(value)).join(', ') };
}
/**
 * `l."a" = r."a" AND ...`; columns in `nullable` (some input row has a NULL there) compare with IS NOT DISTINCT
 * FROM instead, which matches NULL to NULL but cannot use an index, so only they pay for it.
 */
function matching(columns: readonly ColumnMetadata[], left: string, right: string, nullable: ReadonlySet<ColumnMetadata>): string {
  return columns
    .map((column) => {
      const name = quoteIdentifier(column.databaseName);
      return `${left}.${name} ${nullable.has(column) ? 'IS NOT DISTINCT FROM' : '='} ${right}.${name}`;
    })
    .join(' AND ');
}

/**
 * ` AND NOT EXISTS (a row with the unique key's values)` when `where` has columns outside the key, else nothing.
 * Such a row does not match `where`, so the INSERT is not attempted: it could only conflict, and PostgreSQL
 * would report a NOT NULL column the new row lacks before the conflict. No row comes back (a named conflict).
 */
function unlessKeyTaken<E extends ObjectLiteral>(table: EntityTable<E>, where: BoundColumn[], unique: readonly ColumnMetadata[], params: SqlParams): string {
  if (where.every(({ column }) => unique.includes(column))) return '';
  const key = where.filter(({ column }) => unique.includes(column));
  return ` AND NOT EXISTS (SELECT 1 FROM ${table.name} WHERE ${table.whereSql(key, params)})`;
}

/**
 * get-or-create in one round trip: read the row, and only when the read found nothing insert it with
 * `ON CONFLICT (unique key) DO NOTHING` (so a hit burns no sequence value). Returns the row with
 * `txlock_created`, or no row when the insert lost a race to a row this statement's snapshot cannot see.
 * The read takes up to 2 rows so that a lookup matching several is seen (and refused) rather than hidden.
 * The INSERT ... SELECT lets PostgreSQL type each parameter from its target column.
 */
export function getOrCreateStatement<E extends ObjectLiteral>(
  table: EntityTable<E>,
  where: BoundColumn[],
  insert: BoundColumn[],
  unique: readonly ColumnMetadata[],
): Statement {
  const params = new SqlParams();
  const existing = `SELECT * FROM ${table.name} WHERE ${table.whereSql(where, params)} LIMIT 2`;
  const { columns, values } = insertList(insert, params);
  const taken = unlessKeyTaken(table, where, unique, params);
  const sql = `WITH existing AS (${existing}),
    inserted AS (
      INSERT INTO ${table.name} (${columns}) SELECT ${values} WHERE NOT EXISTS (SELECT 1 FROM existing)${taken}
      ON CONFLICT (${names(unique)}) DO NOTHING RETURNING *)
    SELECT true AS ${CREATED}, * FROM inserted UNION ALL SELECT false, * FROM existing`;
  return { sql, params: params.values };
}

/** Reads the rows matching `where` (a fresh snapshot under READ COMMITTED), at most 2: enough to tell one from several. */
export function readStatement<E extends ObjectLiteral>(table: EntityTable<E>, where: BoundColumn[]): Statement {
  const params = new SqlParams();
  return { sql: `SELECT * FROM ${table.name} WHERE ${table.whereSql(where, params)} LIMIT 2`, params: params.values };
}

/** A plain INSERT ... RETURNING * (the advisory-lock path, where the lock already excludes other creators). */
export function insertStatement<E extends ObjectLiteral>(table: EntityTable<E>, insert: BoundColumn[]): Statement {
  const params = new SqlParams();
  const { columns, values } = insertList(insert, params);
  return { sql: `INSERT INTO ${table.name} (${columns}) VALUES (${values}) RETURNING *`, params: params.values };
}

/**
 * update-or-create in one statement. First `UPDATE ... WHERE <where>`: an existing row gets only `update`'s
 * columns, so callers need not repeat the NOT NULL columns they do not change (PostgreSQL checks NOT NULL on
 * a row proposed for INSERT before ON CONFLICT looks for the existing one). Only when that updated nothing
 * (and unlessKeyTaken), `INSERT ... ON CONFLICT (unique key) DO UPDATE`: a row inserted concurrently and
 * committed after this statement's snapshot is then updated, not duplicated (READ COMMITTED). That update is
 * guarded by the `where` values outside the unique key (bound, not EXCLUDED: `update` may change them), so a
 * row that shares the key but not the rest of `where` is left alone and no row comes back. `xmax = 0` tells
 * an inserted row from an updated one.
 */
export function updateOrCreateStatement<E extends ObjectLiteral>(
  table: EntityTable<E>,
  where: BoundColumn[],
  insert: BoundColumn[],
  update: BoundColumn[],
  unique: readonly ColumnMetadata[],
): Statement {
  const params = new SqlParams();
  const row = 'txlock_row';
  const name = (column: ColumnMetadata) => quoteIdentifier(column.databaseName);
  const bookkeeping: string[] = [];
  const { updateDateColumn, versionColumn } = table.metadata;
  if (updateDateColumn) bookkeeping.push(`${name(updateDateColumn)} = CURRENT_TIMESTAMP`);
  if (versionColumn) bookkeeping.push(`${name(versionColumn)} = ${row}.${name(versionColumn)} + 1`);
  // Nothing to update still needs a no-op SET for the row to be locked and returned.
  const setList = (set: string[]) => (set.length > 0 ? set : [`${name(unique[0]!)} = ${row}.${name(unique[0]!)}`]).join(', ');
  const updateSet = setList([...update.map(({ column, value }) => `${name(column)} = ${params.add(value)}`), ...bookkeeping]);
  const found = table.whereSql(where, params, row);
  const { columns, values } = insertList(insert, params);
  const taken = unlessKeyTaken(table, where, unique, params);
  const conflictSet = setList([...update.map(({ column }) => `${name(column)} = EXCLUDED.${name(column)}`), ...bookkeeping]);
  const extra = where.filter(({ column }) => !unique.includes(column));
  const guard = extra.length === 0 ? '' : ` WHERE ${table.whereSql(extra, params, row)}`;
  const sql = `WITH updated AS (
      UPDATE ${table.name} AS ${row} SET ${updateSet} WHERE ${found}
      RETURNING false AS ${CREATED}, ${row}.*),
    inserted AS (
      INSERT INTO ${table.name} AS ${row} (${columns}) SELECT ${values} WHERE NOT EXISTS (SELECT 1 FROM updated)${taken}
      ON CONFLICT (${names(unique)}) DO UPDATE SET ${conflictSet}${guard}
      RETURNING (${row}.xmax = 0) AS ${CREATED}, ${row}.*)
    SELECT * FROM updated UNION ALL SELECT * FROM inserted`;
  return { sql, params: params.values };
}

/**
 * bulk get-or-create of one chunk in one statement. `$1` is a JSON array of rows keyed by column name, turned
 * into typed rows with `json_populate_recordset(NULL::table, $1)` (any column type, one parameter whatever the
 * row count). Existing rows are read; the others are inserted in array order (the caller sorts by key, so
 * concurrent bulk calls take row locks in the same order and cannot deadlock). Each returned row carries its
 * 1-based position in the array; positions missing from the result lost a race and must be re-read.
 */
export function bulkGetOrCreateStatement<E extends ObjectLiteral>(
  table: EntityTable<E>,
  columns: readonly ColumnMetadata[],
  key: readonly ColumnMetadata[],
  unique: readonly ColumnMetadata[],
  rows: ObjectLiteral[],
  nullable: ReadonlySet<ColumnMetadata>,
): Statement {
  const selected = columns.map((column) => `i.${quoteIdentifier(column.databaseName)}`).join(', ');
  const sql = `WITH input AS (SELECT * FROM json_populate_recordset(NULL::${table.name}, $1::json) WITH ORDINALITY),
    existing AS (SELECT i.ordinality AS ${POSITION}, t.* FROM input i JOIN ${table.name} t ON ${matching(key, 't', 'i', nullable)}),
    inserted AS (
      INSERT INTO ${table.name} (${names(columns)})
      SELECT ${selected} FROM input i WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE e.${POSITION} = i.ordinality) ORDER BY i.ordinality
      ON CONFLICT (${names(unique)}) DO NOTHING RETURNING *)
    SELECT true AS ${CREATED}, i.ordinality AS ${POSITION}, n.* FROM inserted n JOIN input i ON ${matching(key, 'n', 'i', nullable)}
    UNION ALL SELECT false, e.* FROM existing e`;
  return { sql, params: [JSON.stringify(rows)] };
}

/** Re-reads rows of a bulk chunk by key, with their 1-based positions in `rows`. */
export function bulkReadStatement<E extends ObjectLiteral>(
  table: EntityTable<E>,
  key: readonly ColumnMetadata[],
  rows: ObjectLiteral[],
  nullable: ReadonlySet<ColumnMetadata>,
): Statement {
  const sql = `SELECT i.ordinality AS ${POSITION}, t.* FROM json_populate_recordset(NULL::${table.name}, $1::json) WITH ORDINALITY i
    JOIN ${table.name} t ON ${matching(key, 't', 'i', nullable)}`;
  return { sql, params: [JSON.stringify(rows)] };
}

/** The boolean column of nullsNotDistinctStatement's single row. */
export const NULLS_NOT_DISTINCT = 'txlock_nulls_not_distinct';

/**
 * Whether a valid, non-partial unique index on exactly the `key` columns (in any order; INCLUDE columns aside)
 * is NULLS NOT DISTINCT (PostgreSQL 15+). ON CONFLICT (key) takes every such index as an arbiter, so one is
 * enough for a NULL to conflict. The flag is read through to_jsonb(pg_index row), which has no such field on
 * PostgreSQL 13-14 (the column does not exist there): NULL, so false, instead of a statement that fails to plan.
 */
export function nullsNotDistinctStatement<E extends ObjectLiteral>(table: EntityTable<E>, key: readonly ColumnMetadata[]): Statement {
  const sql = `SELECT EXISTS (
      SELECT 1 FROM pg_index i
      WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
        AND coalesce((to_jsonb(i) ->> 'indnullsnotdistinct')::boolean, false)
        AND i.indnkeyatts = cardinality($2::text[])
        AND ARRAY(SELECT a.attname::text FROM pg_attribute a
          WHERE a.attrelid = i.indrelid AND a.attnum = ANY ((i.indkey::int2[])[0:i.indnkeyatts - 1])) @> $2::text[]
    ) AS ${NULLS_NOT_DISTINCT}`;
  return { sql, params: [table.name, key.map((column) => column.databaseName)] };
}
