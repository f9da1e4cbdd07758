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
const matching = (columns: readonly ColumnMetadata[], left: string, right: string) =>
  columns.map((column) => `${left}.${quoteIdentifier(column.databaseName)} = ${right}.${quoteIdentifier(column.databaseName)}`).join(' AND ');

/**
 * get-or-create in one round trip: read the row, and only when the read found nothing insert it with
 * `ON CONFLICT (unique key) DO NOTHING` (so a hit burns no sequence value). Returns the row with
 * `txlock_created`, or no row when the insert lost a race to a row this statement's snapshot cannot see.
 * The INSERT ... SELECT lets PostgreSQL type each parameter from its target column.
 */
export function getOrCreateStatement<E extends ObjectLiteral>(
  table: EntityTable<E>,
  where: BoundColumn[],
  insert: BoundColumn[],
  unique: readonly ColumnMetadata[],
): Statement {
  const params = new SqlParams();
  const existing = `SELECT * FROM ${table.name} WHERE ${table.whereSql(where, params)} LIMIT 1`;
  const { columns, values } = insertList(insert, params);
  const sql = `WITH existing AS (${existing}),
    inserted AS (
      INSERT INTO ${table.name} (${columns}) SELECT ${values} WHERE NOT EXISTS (SELECT 1 FROM existing)
      ON CONFLICT (${names(unique)}) DO NOTHING RETURNING *)
    SELECT true AS ${CREATED}, * FROM inserted UNION ALL SELECT false, * FROM existing`;
  return { sql, params: params.values };
}

/** Reads the row matching `where` (a fresh snapshot under READ COMMITTED). */
export function readStatement<E extends ObjectLiteral>(table: EntityTable<E>, where: BoundColumn[]): Statement {
  const params = new SqlParams();
  return { sql: `SELECT * FROM ${table.name} WHERE ${table.whereSql(where, params)} LIMIT 1`, params: params.values };
}

/** A plain INSERT ... RETURNING * (the advisory-lock path, where the lock already excludes other creators). */
export function insertStatement<E extends ObjectLiteral>(table: EntityTable<E>, insert: BoundColumn[]): Statement {
  const params = new SqlParams();
  const { columns, values } = insertList(insert, params);
  return { sql: `INSERT INTO ${table.name} (${columns}) VALUES (${values}) RETURNING *`, params: params.values };
}

/**
 * update-or-create in one statement: `INSERT ... ON CONFLICT (unique key) DO UPDATE SET <values>`, guarded
 * so a row that shares the unique key but differs in another `where` column is not overwritten (no row
 * comes back then). `xmax = 0` tells an inserted row from an updated one.
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
  const { columns, values } = insertList(insert, params);
  const set = update.map(({ column }) => `${quoteIdentifier(column.databaseName)} = EXCLUDED.${quoteIdentifier(column.databaseName)}`);
  const { updateDateColumn, versionColumn } = table.metadata;
  if (updateDateColumn) set.push(`${quoteIdentifier(updateDateColumn.databaseName)} = CURRENT_TIMESTAMP`);
  if (versionColumn) set.push(`${quoteIdentifier(versionColumn.databaseName)} = ${row}.${quoteIdentifier(versionColumn.databaseName)} + 1`);
  // Nothing to update still needs a no-op SET for the row to be locked and returned.
  if (set.length === 0) set.push(`${names([unique[0]!])} = EXCLUDED.${names([unique[0]!])}`);
  const extra = where.filter(({ column }) => !unique.includes(column));
  const guard = extra.length === 0 ? '' : ` WHERE ${extra.map(({ column }) => `${row}.${names([column])} IS NOT DISTINCT FROM EXCLUDED.${names([column])}`).join(' AND ')}`;
  const sql = `INSERT INTO ${table.name} AS ${row} (${columns}) VALUES (${values})
    ON CONFLICT (${names(unique)}) DO UPDATE SET ${set.join(', ')}${guard}
    RETURNING (${row}.xmax = 0) AS ${CREATED}, ${row}.*`;
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
): Statement {
  const selected = columns.map((column) => `i.${quoteIdentifier(column.databaseName)}`).join(', ');
  const sql = `WITH input AS (SELECT * FROM json_populate_recordset(NULL::${table.name}, $1::json) WITH ORDINALITY),
    existing AS (SELECT i.ordinality AS ${POSITION}, t.* FROM input i JOIN ${table.name} t ON ${matching(key, 't', 'i')}),
    inserted AS (
      INSERT INTO ${table.name} (${names(columns)})
      SELECT ${selected} FROM input i WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE e.${POSITION} = i.ordinality) ORDER BY i.ordinality
      ON CONFLICT (${names(unique)}) DO NOTHING RETURNING *)
    SELECT true AS ${CREATED}, i.ordinality AS ${POSITION}, n.* FROM inserted n JOIN input i ON ${matching(key, 'n', 'i')}
    UNION ALL SELECT false, e.* FROM existing e`;
  return { sql, params: [JSON.stringify(rows)] };
}

/** Re-reads rows of a bulk chunk by key, with their 1-based positions in `rows`. */
export function bulkReadStatement<E extends ObjectLiteral>(table: EntityTable<E>, key: readonly ColumnMetadata[], rows: ObjectLiteral[]): Statement {
  const sql = `SELECT i.ordinality AS ${POSITION}, t.* FROM json_populate_recordset(NULL::${table.name}, $1::json) WITH ORDINALITY i
    JOIN ${table.name} t ON ${matching(key, 't', 'i')}`;
  return { sql, params: [JSON.stringify(rows)] };
}
