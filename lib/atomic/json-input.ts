import type { ColumnMetadata } from 'typeorm/metadata/ColumnMetadata.js';

const JSON_TYPES = new Set<unknown>(['json', 'jsonb']);

/**
 * A persisted value (as TypeORM's driver prepared it) in the form PostgreSQL's text input reads back exactly
 * through json_populate_recordset: dates with the local offset (as pg sends them, so `timestamp` columns
 * keep TypeORM's local wall time), bytea as `\x` hex, bigint as text. A json/jsonb column's value is already
 * JSON text; it goes in as the JSON value itself, since json_populate_recordset copies a JSON string into
 * such a column as a string scalar.
 */
export function toJsonInput(value: unknown, column: ColumnMetadata): unknown {
  if (typeof value === 'string' && JSON_TYPES.has(column.type)) return JSON.parse(value) as unknown;
  if (value instanceof Date) return localTimestamp(value);
  if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
  if (typeof value === 'bigint') return value.toString();
  return value;
}

function localTimestamp(date: Date): string {
  const pad = (n: number, width = 2) => String(Math.abs(n)).padStart(width, '0');
  const offset = -date.getTimezoneOffset();
  return (
    `${pad(date.getFullYear(), 4)}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}` +
    `${offset >= 0 ? '+' : '-'}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`
  );
}
