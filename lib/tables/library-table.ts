import type { DataSource } from 'typeorm';
import { MissingTableError } from '../errors.js';
import { sqlState } from '../transaction/sql-state.js';

const UNDEFINED_TABLE = '42P01';

/** A table one of the library's services works on, as that service names it. */
export interface LibraryTable {
  /** The quoted, possibly schema-qualified name. */
  table: string;
  /** The service that uses it, for messages. */
  service: string;
  /** Its part of the module options (`counters`, `leases`, `singleFlight`). */
  option: string;
}

/** The MissingTableError for `error` when it says the service's table does not exist; else the error itself. */
export function explainMissingTable(error: unknown, table: LibraryTable): unknown {
  return sqlState(error) === UNDEFINED_TABLE && String((error as Error).message).includes(table.table.split('.').pop()!.replace(/"/g, ''))
    ? new MissingTableError(table.table, table.service, table.option, error)
    : error;
}

/** Which of `tables` do not exist in the database, in one query. */
export async function missingTables(dataSource: DataSource, tables: readonly LibraryTable[]): Promise<LibraryTable[]> {
  const present = await tablesExist(dataSource, tables.map((t) => t.table));
  return tables.filter((_, i) => !present[i]);
}

/**
 * Whether each of `tables` (quoted, possibly schema-qualified names) exists, in one catalog read through `source`
 * (a DataSource or a query runner): it needs no right on the tables and runs on a read-only database.
 */
export async function tablesExist(source: Pick<DataSource, 'query'>, tables: readonly string[]): Promise<boolean[]> {
  if (tables.length === 0) return [];
  const [row] = (await source.query(`SELECT ${tables.map((_, i) => `to_regclass($${i + 1}) IS NOT NULL AS t${i}`).join(', ')}`, [...tables])) as Record<string, boolean>[];
  return tables.map((_, i) => row![`t${i}`] === true);
}
