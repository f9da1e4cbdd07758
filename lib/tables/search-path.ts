import type { DataSource } from 'typeorm';
import { MissingTableError, TableNotOnSearchPathError } from '../errors.js';
import type { LibraryTable } from './library-table.js';

// An unqualified table name as qualifiedTableName() quotes it: `"txlock_counters"`.
const UNQUALIFIED = /^"([^"]+)"$/;

/**
 * The error for a library table the bootstrap check did not find: when its name has no schema and a table of that
 * name exists in a schema the connection's search_path leaves out (a role or database whose search_path lacks
 * `public`), TableNotOnSearchPathError, which names the search_path and the schema-qualified table option; else
 * MissingTableError. One catalog query, on the failure path only.
 */
export async function missingTableError(dataSource: DataSource, missing: LibraryTable): Promise<MissingTableError> {
  const name = UNQUALIFIED.exec(missing.table)?.[1];
  if (name === undefined) return new MissingTableError(missing.table, missing.service, missing.option);
  const rows = (await dataSource.query(
    `SELECT n.nspname AS schema, current_setting('search_path') AS search_path
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relname = $1 AND c.relkind IN ('r', 'p') ORDER BY n.nspname = 'public' DESC, n.nspname`,
    [name],
  )) as { schema: string; search_path: string }[];
  if (rows.length === 0) return new MissingTableError(missing.table, missing.service, missing.option);
  return new TableNotOnSearchPathError(missing.table, missing.service, missing.option, rows.map((row) => row.schema), rows[0]!.search_path);
}
