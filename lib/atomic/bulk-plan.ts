import type { ObjectLiteral } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import type { EntityTable } from '../common/entity-table.js';
import { InvalidOptionError } from '../errors.js';
import { toJsonInput } from './json-input.js';

/** Rows per bulk statement: large enough to amortise round trips, small enough to keep one statement's locks and JSON modest. */
export const BULK_CHUNK_SIZE = 1000;

/** One distinct row to get or create: its key (for sorting and de-duplication) and its JSON input row. */
export interface PlannedRow {
  key: string;
  columns: ColumnMetadata[];
  json: ObjectLiteral;
}

/** The statements of a bulk call: chunks of rows in key order, each chunk with one set of columns to insert. */
export interface BulkPlan {
  /** For each input row, the key of its distinct row. */
  keys: string[];
  chunks: PlannedRow[][];
}

/**
 * Plans a bulk get-or-create: converts each row as TypeORM would insert it, de-duplicates by conflict key,
 * sorts by that key (every caller then locks keys in the same order: no deadlocks between concurrent bulk
 * calls), and cuts the sorted rows into chunks of at most BULK_CHUNK_SIZE that insert the same columns (a
 * column a row leaves undefined keeps its database default, so rows with different columns cannot share
 * one INSERT column list).
 */
export function planBulk<E extends ObjectLiteral>(table: EntityTable<E>, rows: readonly ObjectLiteral[], key: readonly ColumnMetadata[]): BulkPlan {
  const distinct = new Map<string, PlannedRow>();
  const keys = rows.map((row, index) => {
    const insert = table.insertColumns(row);
    const json = Object.fromEntries(insert.map(({ column, value }) => [column.databaseName, toJsonInput(value, column)]));
    const keyValues = key.map((column) => json[column.databaseName] as unknown);
    if (keyValues.some((value) => value === undefined || value === null)) {
      // NULLs never conflict in a unique index, so such a row could be created any number of times.
      throw new InvalidOptionError(`rows[${index}] conflict column`, keyValues, 'a non-null value for every conflict column');
    }
    const rowKey = JSON.stringify(keyValues);
    if (!distinct.has(rowKey)) distinct.set(rowKey, { key: rowKey, columns: insert.map((b) => b.column), json });
    return rowKey;
  });
  const sorted = [...distinct.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const chunks: PlannedRow[][] = [];
  let shape = '';
  for (const row of sorted) {
    const rowShape = row.columns.map((column) => column.databaseName).join('\u0000');
    const last = chunks.at(-1);
    if (!last || rowShape !== shape || last.length >= BULK_CHUNK_SIZE) chunks.push([row]);
    else last.push(row);
    shape = rowShape;
  }
  return { keys, chunks };
}
