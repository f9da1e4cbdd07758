/**
 * Every statement of LeaseService. `table` is a quoted identifier; everything else is bound. Times come
 * from the database clock (clock_timestamp()), never from the application's clock.
 */
export const leaseSql = {
  createTable: (table: string) => `CREATE TABLE IF NOT EXISTS ${table} (
    name text PRIMARY KEY,
    holder text NOT NULL,
    token bigint NOT NULL,
    locked_at timestamptz NOT NULL,
    lock_until timestamptz NOT NULL
  )`,

  // One statement: insert a fresh lease, or take over an expired one, bumping the fencing token.
  // $1 name, $2 holder, $3 atMostForMs
  acquire: (table: string) => `INSERT INTO ${table} AS l (name, holder, token, locked_at, lock_until)
    VALUES ($1, $2, 1, clock_timestamp(), clock_timestamp() + $3 * interval '1 millisecond')
    ON CONFLICT (name) DO UPDATE
      SET holder = EXCLUDED.holder, token = l.token + 1, locked_at = EXCLUDED.locked_at, lock_until = EXCLUDED.lock_until
      WHERE l.lock_until <= clock_timestamp()
    RETURNING name, holder, token::text AS token, locked_at, lock_until`,

  // $1 name, $2 token, $3 ms from now
  extend: (table: string) => `UPDATE ${table}
    SET lock_until = clock_timestamp() + $3 * interval '1 millisecond'
    WHERE name = $1 AND token = $2 AND lock_until > clock_timestamp()
    RETURNING lock_until`,

  // Keeps the lease until locked_at + atLeastFor (never beyond its current end). $1 name, $2 token, $3 atLeastForMs
  release: (table: string) => `UPDATE ${table}
    SET lock_until = LEAST(lock_until, GREATEST(clock_timestamp(), locked_at + $3 * interval '1 millisecond'))
    WHERE name = $1 AND token = $2
    RETURNING lock_until`,

  // $1 name, $2 token
  isCurrent: (table: string) => `SELECT EXISTS (
    SELECT 1 FROM ${table} WHERE name = $1 AND token = $2 AND lock_until > clock_timestamp()) AS current`,

  // The condition a fenced write adds to its WHERE; placeholders are chosen by the caller's statement.
  fence: (table: string, name: string, token: string) =>
    `EXISTS (SELECT 1 FROM ${table} WHERE name = ${name} AND token = ${token} AND lock_until > clock_timestamp())`,

  holders: (table: string) => `SELECT name, holder, token::text AS token, locked_at, lock_until
    FROM ${table} WHERE lock_until > clock_timestamp() ORDER BY name`,
};
