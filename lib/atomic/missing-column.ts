import type { ObjectLiteral } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import type { EntityTable } from '../common/entity-table.js';
import { MissingColumnValueError } from '../errors.js';
import { sqlState } from '../transaction/sql-state.js';

const NOT_NULL_VIOLATION = '23502';

/** The fields pg reports with a NOT NULL violation. */
interface NotNullFields {
  table?: unknown;
  schema?: unknown;
  column?: unknown;
}

/**
 * The MissingColumnValueError for a NOT NULL violation (23502) that one of our INSERTs into `table` hit on a
 * column the caller gave no value for (so it took its default, and has none). Undefined for any other error,
 * for another table (a trigger's insert), and for a column among `given`: a NULL the caller passed explicitly
 * is the caller's value, and the database's own error says so better.
 */
export function missingColumnError(
  table: EntityTable<ObjectLiteral>,
  error: unknown,
  given: readonly ColumnMetadata[],
): MissingColumnValueError | undefined {
  if (sqlState(error) !== NOT_NULL_VIOLATION) return undefined;
  const fields = notNullFields(error);
  const { tableName, schema } = table.metadata;
  if (typeof fields?.column !== 'string' || fields.table !== tableName) return undefined;
  if (schema !== undefined && fields.schema !== undefined && fields.schema !== schema) return undefined;
  if (given.some((column) => column.databaseName === fields.column)) return undefined;
  return new MissingColumnValueError(table.entityName, table.propertyOf(fields.column), error);
}

/** pg's error fields, on the error, on TypeORM's `driverError`, or down the `cause` chain. */
function notNullFields(error: unknown): NotNullFields | undefined {
  for (let current = error, depth = 0; current && typeof current === 'object' && depth < 8; depth++) {
    const candidate = current as NotNullFields & { code?: unknown; driverError?: NotNullFields & { code?: unknown }; cause?: unknown };
    if (candidate.code === NOT_NULL_VIOLATION && candidate.column !== undefined) return candidate;
    if (candidate.driverError?.code === NOT_NULL_VIOLATION) return candidate.driverError;
    current = candidate.cause;
  }
  return undefined;
}
