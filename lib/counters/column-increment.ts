import type { ObjectLiteral } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import type { EntityTable, EntityValues } from '../common/entity-table.js';
import { quoteIdentifier, SqlParams } from '../common/sql.js';
import { InvalidOptionError } from '../errors.js';
import type { ColumnBoundOptions } from './counter.options.js';
import { readBounds, withinSafeRange } from './counter-value.js';

const INTEGER_TYPES = new Set(['smallint', 'integer', 'bigint', 'int', 'int2', 'int4', 'int8']);
const BIGINT_TYPES = new Set(['bigint', 'int8']);

/**
 * `UPDATE ... SET col = col + $by WHERE <where> [AND col + $by within bounds] RETURNING col`: the F()
 * expression of Django, but giving the new values back. Rows the bounds refuse are left unchanged; for number
 * values (no `bigint: true`) a bigint column is also bounded by ±Number.MAX_SAFE_INTEGER (smaller types always fit).
 * The update-date and version columns move as TypeORM's own update would move them.
 */
export function columnIncrementStatement<Entity extends ObjectLiteral>(
  table: EntityTable<Entity>,
  where: EntityValues<Entity>,
  property: string,
  by: bigint,
  bounds: ColumnBoundOptions,
  normalizeType: (column: ColumnMetadata) => string,
): { sql: string; params: unknown[] } {
  const column = table.column(property, 'column');
  const type = normalizeType(column);
  if (!INTEGER_TYPES.has(type)) {
    throw new InvalidOptionError('column', property, `an integer column (smallint, integer, bigint) of ${table.entityName}`);
  }
  const params = new SqlParams();
  const name = quoteIdentifier(column.databaseName);
  const next = `${name} + ${params.add(by.toString())}`;
  const sets = [`${name} = ${next}`];
  const { updateDateColumn, versionColumn } = table.metadata;
  if (updateDateColumn) sets.push(`${quoteIdentifier(updateDateColumn.databaseName)} = CURRENT_TIMESTAMP`);
  if (versionColumn) sets.push(`${quoteIdentifier(versionColumn.databaseName)} = ${quoteIdentifier(versionColumn.databaseName)} + 1`);
  const conditions = [table.whereSql(table.bindWhere(where), params)];
  const read = readBounds(bounds);
  const { min, max } = BIGINT_TYPES.has(type) ? withinSafeRange(read, bounds.bigint) : read;
  if (min !== undefined) conditions.push(`${next} >= ${params.add(min.toString())}`);
  if (max !== undefined) conditions.push(`${next} <= ${params.add(max.toString())}`);
  const sql = `WITH changed AS (UPDATE ${table.name} SET ${sets.join(', ')} WHERE ${conditions.join(' AND ')} RETURNING ${name} AS v)
    SELECT v::text AS "value" FROM changed`;
  return { sql, params: params.values };
}
