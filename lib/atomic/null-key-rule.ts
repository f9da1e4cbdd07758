import type { ObjectLiteral } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import type { EntityTable } from '../common/entity-table.js';
import { quoteIdentifier } from '../common/sql.js';
import { InvalidOptionError } from '../errors.js';
import { NULLS_NOT_DISTINCT, nullsNotDistinctStatement, type Statement } from './atomic.sql.js';

/** A NULL a caller gave for a column, and where it was written (`where.tenant`, `rows[3].tenant`). */
export interface NullValue {
  column: ColumnMetadata;
  option: string;
}

/**
 * The one rule of the get-or-create family for a NULL in a column of the unique key chosen as the ON CONFLICT
 * target: PostgreSQL's unique indexes treat NULLs as distinct by default, so such a row never conflicts and
 * every call would create one more. Refused with InvalidOptionError naming the column, unless the index on
 * that key is NULLS NOT DISTINCT (PostgreSQL 15+), where a NULL conflicts like any value.
 *
 * TypeORM's metadata cannot express NULLS NOT DISTINCT, so the catalog says, asked only when such a NULL is
 * present and remembered per table and key for the life of the service: calls without a NULL in the key cost
 * no extra round trip, and so do later ones with it. (A constraint changed at runtime is seen after a restart.)
 */
export class NullKeyRule {
  private readonly nullsNotDistinct = new Map<string, boolean>();

  /** Throws for the first NULL of `nulls` in a `unique` column unless that key is NULLS NOT DISTINCT; `query` runs the catalog read. */
  async check(
    table: EntityTable<ObjectLiteral>,
    unique: readonly ColumnMetadata[],
    nulls: readonly NullValue[],
    query: (statement: Statement) => Promise<ObjectLiteral[]>,
  ): Promise<void> {
    const offending = nulls.find(({ column }) => unique.includes(column));
    if (!offending) return;
    const cacheKey = JSON.stringify([table.name, unique.map((column) => column.databaseName).sort()]);
    let allowed = this.nullsNotDistinct.get(cacheKey);
    if (allowed === undefined) {
      const [row] = await query(nullsNotDistinctStatement(table, unique));
      allowed = row?.[NULLS_NOT_DISTINCT] === true;
      this.nullsNotDistinct.set(cacheKey, allowed);
    }
    if (!allowed) throw nullKeyError(table, unique, offending);
  }
}

function nullKeyError(table: EntityTable<ObjectLiteral>, unique: readonly ColumnMetadata[], { column, option }: NullValue): InvalidOptionError {
  const key = unique.map((c) => c.propertyPath).join(', ');
  const columns = unique.map((c) => quoteIdentifier(c.databaseName)).join(', ');
  const valid = `a non-null ${column.propertyPath}`;
  return new InvalidOptionError(
    option,
    null,
    valid,
    `Invalid ${option} null: ${column.propertyPath} is part of the unique key (${key}) of ${table.entityName} that decides ` +
      `who creates the row, and that key treats NULLs as distinct, so a NULL never conflicts and every call would create ` +
      `another row. Pass a non-null value, or make that constraint NULLS NOT DISTINCT (PostgreSQL 15+), in a migration ` +
      `replacing it: ALTER TABLE ${table.name} ADD CONSTRAINT ... UNIQUE NULLS NOT DISTINCT (${columns}).`,
  );
}
