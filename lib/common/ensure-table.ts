import type { DataSource } from 'typeorm';
import { tablesExist } from '../tables/library-table.js';
import { createOwnQueryRunner } from '../transaction/data-source-routing.js';
import { sqlState } from '../transaction/sql-state.js';
import { advisoryKey } from './sql.js';

// "already exists" as a table, or as its row type in pg_type (the unique violation CREATE TABLE IF NOT
// EXISTS raises when another session creates the same table at the same moment).
const ALREADY_EXISTS = new Set(['42P07', '23505']);

/**
 * Runs `ddl` (CREATE TABLE IF NOT EXISTS ... built from quoted identifiers) at bootstrap when `table` is missing,
 * safely when several replicas start at once: `IF NOT EXISTS` alone races in PostgreSQL, so the creators queue on an
 * advisory lock named after the table, and a concurrent "already exists" is tolerated. The catalog is read first,
 * and again under the lock: when the table exists nothing else is sent, since PostgreSQL checks the right to create
 * (and read-only mode) before it sees that the table exists, so a role with DML rights only, or a read-only
 * database, would fail even on `IF NOT EXISTS`.
 */
export async function ensureTable(dataSource: DataSource, table: string, ddl: string[]): Promise<void> {
  const runner = createOwnQueryRunner(dataSource);
  try {
    const exists = async () => (await tablesExist(runner, [table]))[0];
    if (await exists()) return;
    await runner.query('BEGIN');
    await runner.query('SELECT pg_advisory_xact_lock($1)', [advisoryKey(`nestjs-txlock:create-table:${table}`)]);
    if (!(await exists())) for (const statement of ddl) await runner.query(statement);
    await runner.query('COMMIT');
  } catch (error) {
    await runner.query('ROLLBACK').catch(() => undefined);
    if (!ALREADY_EXISTS.has(sqlState(error) ?? '')) throw error;
  } finally {
    await runner.release();
  }
}
