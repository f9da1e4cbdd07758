import type { ObjectLiteral } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import type { BoundColumn, EntityTable } from '../common/entity-table.js';
import { quoteValues } from '../common/quoted-values.js';
import { describeValue, InvalidOptionError } from '../errors.js';

/**
 * The columns updateOrCreate sets on an existing row: its `values`, minus the unique key. A `values` entry for
 * a `where` column outside the key is applied (the row is found by the old value and gets the new one), never
 * dropped. One that changes a column of the key is refused with InvalidOptionError: the key is how the row is
 * found and how concurrent creators are told apart, so a new key is another row, not an update. Repeating the
 * `where` value of a key column is fine.
 */
export function updateColumns(
  table: EntityTable<ObjectLiteral>,
  where: readonly BoundColumn[],
  values: readonly BoundColumn[],
  unique: readonly ColumnMetadata[],
): BoundColumn[] {
  return values.filter(({ column, value }) => {
    if (!unique.includes(column)) return true;
    const current = where.find((bound) => bound.column === column)!;
    if (!samePersistedValue(current.value, value)) throw keyChangeError(table, unique, column, current.value, value);
    return false;
  });
}

/** Whether two values prepared by the driver would store the same thing (a number and its digits count as one). */
function samePersistedValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a instanceof Date && b instanceof Date) return a.getTime() === b.getTime();
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  const scalar = (v: unknown) => ['string', 'number', 'bigint', 'boolean'].includes(typeof v);
  if (scalar(a) && scalar(b)) return String(a) === String(b);
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  try {
    return JSON.stringify(a) === JSON.stringify(b);
  } catch {
    return false;
  }
}

function keyChangeError(
  table: EntityTable<ObjectLiteral>,
  unique: readonly ColumnMetadata[],
  column: ColumnMetadata,
  current: unknown,
  next: unknown,
): InvalidOptionError {
  const property = column.propertyPath;
  const key = unique.map((c) => c.propertyPath).join(', ');
  const error = new InvalidOptionError(
    `values.${property}`,
    next,
    `the where value ${describeValue(current)}`,
    `Invalid values.${property} ${describeValue(next)}: ${property} is part of the unique key (${key}) by which ` +
      `updateOrCreate finds the ${table.entityName} row (where.${property} is ${describeValue(current)}), so it cannot change ` +
      `it. To change the key, update the row by its key in a separate call (for example repository.update(where, ` +
      `{ ${property}: newValue })), then use the new key in updateOrCreate.`,
  );
  return quoteValues(error, describeValue(current));
}
