import type { ObjectLiteral } from 'typeorm';
import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';
import type { EntityTable } from '../common/entity-table.js';
import { InvalidOptionError } from '../errors.js';
import { toJsonInput } from './json-input.js';
import type { NullValue } from './null-key-rule.js';

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
  /** Each conflict column some row gives a NULL, with the first such row (for NullKeyRule and NULL-safe matching). */
  nulls: NullValue[];
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
  const nulls = new Map<ColumnMetadata, NullValue>();
  const keys = rows.map((row, index) => {
    table.checkInsertProperties(row, `rows[${index}]`);
    const insert = table.insertColumns(row);
    const json = Object.fromEntries(insert.map(({ column, value }) => [column.databaseName, toJsonInput(value, column)]));
    const keyValues = key.map((column) => json[column.databaseName] as unknown);
    for (const [i, column] of key.entries()) {
      const option = `rows[${index}].${column.propertyPath}`;
      if (keyValues[i] === undefined) throw new InvalidOptionError(option, undefined, 'a value for every conflict column');
      if (keyValues[i] === null && !nulls.has(column)) nulls.set(column, { column, option });
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
  return { keys, chunks, nulls: [...nulls.values()] };
}
