import type { DataSource, EntityTarget, ObjectLiteral } from 'typeorm';
import { EntityTable } from '../common/entity-table.js';
import { quoteIdentifier } from '../common/sql.js';
import { InvalidOptionError, InvalidTableNameError } from '../errors.js';
import { validateLockPropagation, validateTableLockMode, validateWait, type TableLockMode, type TableLockOptions } from './lock.options.js';

/** What a table lock names: an entity class (its table from TypeORM metadata) or a table name (`'posts'`, `'audit.posts'`). */
export type TableTarget = string | EntityTarget<ObjectLiteral>;

// Plain identifiers only. Everything is quoted anyway; the pattern makes quotes, semicolons and spaces in a
// name a clear error at decoration time instead of a confusing "does not exist" later.
const PLAIN_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]*$/;
const MAX_IDENTIFIER_BYTES = 63;

/** Validates a table lock's mode, targets and options (naming what is valid) and returns the targets as a list. */
export function validateTableLock(mode: TableLockMode, targets: TableTarget | readonly TableTarget[], options: TableLockOptions, where: string): TableTarget[] {
  const list = Array.isArray(targets) ? [...(targets as readonly TableTarget[])] : [targets as TableTarget];
  validateTableLockMode(mode, where);
  validateTableTargets(list, where);
  validateWait(options, where);
  validateLockPropagation(options.propagation, where);
  return list;
}

/** Throws InvalidTableNameError unless every string target is `table` or `schema.table` made of plain identifiers. */
function validateTableTargets(targets: readonly TableTarget[], where: string): void {
  if (!Array.isArray(targets) || targets.length === 0) {
    throw new InvalidOptionError(`${where} targets`, targets, 'a non-empty array of entity classes or table names');
  }
  for (const target of targets) {
    if (typeof target === 'string') quotedTableName(target);
    else if (typeof target !== 'function' && (typeof target !== 'object' || target === null)) {
      throw new InvalidOptionError(`${where} target`, String(target), 'an entity class or a table name');
    }
  }
}

/** The quoted names of the targets, de-duplicated and sorted, so two callers always lock tables in the same order. */
export function resolveTables(dataSource: DataSource, targets: readonly TableTarget[]): string[] {
  const names = targets.map((target) => (typeof target === 'string' ? quotedTableName(target) : entityTableName(dataSource, target)));
  return [...new Set(names)].sort();
}

function quotedTableName(name: string): string {
  const parts = name.split('.');
  if (parts.length > 2) throw new InvalidTableNameError(name, 'it has more than one dot');
  for (const part of parts) {
    if (!PLAIN_IDENTIFIER.test(part)) throw new InvalidTableNameError(name, `"${part}" is not a plain identifier`);
    if (Buffer.byteLength(part) > MAX_IDENTIFIER_BYTES) throw new InvalidTableNameError(name, `"${part}" is longer than PostgreSQL's 63 bytes`);
  }
  return parts.map(quoteIdentifier).join('.');
}

function entityTableName(dataSource: DataSource, target: EntityTarget<ObjectLiteral>): string {
  if (!dataSource.hasMetadata(target)) {
    const name = typeof target === 'function' ? target.name : String(target);
    throw new InvalidOptionError('table lock target', name, 'an entity registered with the DataSource (entities: [...]), or a table name');
  }
  // EntityTable quotes the schema (the entity's, else the DataSource's) and the table name from metadata.
  return EntityTable.of(dataSource, target).name;
}
