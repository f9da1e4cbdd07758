/**
 * A persisted value (as TypeORM's driver prepared it) in the form PostgreSQL's text input reads back exactly
 * through json_populate_recordset: dates with the local offset (as pg sends them, so `timestamp` columns
 * keep TypeORM's local wall time), bytea as `\x` hex, bigint as text.
 */
export function toJsonInput(value: unknown): unknown {
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
