/**
 * Every statement of the postgres single-flight store. `table` is a quoted identifier; values are bound.
 * The value column is `json`, not `jsonb`: it keeps the text byte for byte, so every process gets exactly
 * the value the computing one produced (jsonb would reorder object keys).
 */
export const singleFlightSql = {
  createTable: (table: string) => `CREATE TABLE IF NOT EXISTS ${table} (
    key text PRIMARY KEY,
    value json NOT NULL,
    expires_at timestamptz NOT NULL
  )`,

  // Reads a live value and deletes the key's expired row in the same statement. $1 key
  get: (table: string) => `WITH expired AS (
      DELETE FROM ${table} WHERE key = $1 AND expires_at <= clock_timestamp()
    )
    SELECT value::text AS value FROM ${table} WHERE key = $1 AND expires_at > clock_timestamp()`,

  // $1 key, $2 JSON text, $3 ttl ms
  set: (table: string) => `INSERT INTO ${table} (key, value, expires_at)
    VALUES ($1, $2::json, clock_timestamp() + $3 * interval '1 millisecond')
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,

  // A bounded sweep of other expired keys, so the table never grows without limit. $1 batch size
  sweep: (table: string) => `DELETE FROM ${table} WHERE key IN (
    SELECT key FROM ${table} WHERE expires_at <= clock_timestamp() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
};
