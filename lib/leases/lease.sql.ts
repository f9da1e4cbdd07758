/**
 * Every statement of LeaseService. `table` is a quoted identifier; everything else is bound. Times come
 * from the database clock (clock_timestamp()), never from the application's clock.
 *
 * Fencing is enforced by row-lock strength on the lease row (PostgreSQL's four tuple lock modes):
 * - a fenced statement (fence(), assertToken() inside a transaction) takes FOR KEY SHARE on the row, held
 *   until the writer's transaction ends;
 * - a takeover (acquire() of an expired lease) takes FOR UPDATE SKIP LOCKED, which conflicts with FOR KEY SHARE:
 *   while a fenced transaction under the old token is open, the takeover finds the row locked and answers null
 *   (the lease is still in use), never waiting; once they have all ended it issues the new token. A fenced
 *   statement that comes after the takeover (or waits behind it) re-reads the row and matches nothing; under
 *   REPEATABLE READ, one whose snapshot predates the takeover fails with 40001 (FOR UPDATE marks the old row
 *   version as key-updated, so FOR KEY SHARE cannot lock it quietly);
 * - extend() and release() are plain UPDATEs of non-key columns (FOR NO KEY UPDATE), which do not conflict
 *   with FOR KEY SHARE: the holder can renew while its own fenced transaction is open.
 */
export const leaseSql = {
  createTable: (table: string) => `CREATE TABLE IF NOT EXISTS ${table} (
    name text PRIMARY KEY,
    holder text NOT NULL,
    token bigint NOT NULL,
    locked_at timestamptz NOT NULL,
    lock_until timestamptz NOT NULL
  )`,

  // One statement that never waits: take over the expired row (locked FOR UPDATE SKIP LOCKED: a row another
  // acquirer is taking, or an old holder's open fenced transaction still covers, is skipped), or insert the
  // first row of this name (a concurrent creator wins, ON CONFLICT DO NOTHING). No row back: someone holds it.
  // previous_holder: who had the row before a takeover (null for a new row), for telemetry's takeover count.
  // $1 name, $2 holder, $3 atMostForMs
  acquire: (table: string) => `WITH expired AS (
      SELECT name, holder FROM ${table} WHERE name = $1::text AND lock_until <= clock_timestamp() FOR UPDATE SKIP LOCKED
    ), taken AS (
      UPDATE ${table} AS l
      SET holder = $2::text, token = l.token + 1, locked_at = clock_timestamp(), lock_until = clock_timestamp() + $3 * interval '1 millisecond'
      FROM expired WHERE l.name = expired.name
      RETURNING l.name, l.holder, l.token::text AS token, l.locked_at, l.lock_until, expired.holder AS previous_holder
    ), created AS (
      INSERT INTO ${table} (name, holder, token, locked_at, lock_until)
      SELECT $1::text, $2::text, 1, clock_timestamp(), clock_timestamp() + $3 * interval '1 millisecond'
      WHERE NOT EXISTS (SELECT 1 FROM ${table} WHERE name = $1::text)
      ON CONFLICT (name) DO NOTHING
      RETURNING name, holder, token::text AS token, locked_at, lock_until, NULL::text AS previous_holder
    )
    SELECT * FROM taken UNION ALL SELECT * FROM created`,

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

  // assertToken() outside a transaction: a plain read (a row lock would end with the statement anyway).
  // $1 name, $2 token
  isCurrent: (table: string) => `SELECT ${current(table, '$1', '$2', false)} AS current`,

  // assertToken() inside a transaction: the fence's check and lock, held until that transaction ends.
  // $1 name, $2 token
  isCurrentFenced: (table: string) => `SELECT ${current(table, '$1', '$2', true)} AS current`,

  // The condition a fenced write adds to its WHERE; placeholders are chosen by the caller's statement.
  fence: (table: string, name: string, token: string) => current(table, name, token, true),

  holders: (table: string) => `SELECT name, holder, token::text AS token, locked_at, lock_until
    FROM ${table} WHERE lock_until > clock_timestamp() ORDER BY name`,
};

// True while `token` is the current, unexpired token of lease `name`; with `lock`, the row stays FOR KEY SHARE
// locked until the transaction ends.
function current(table: string, name: string, token: string, lock: boolean): string {
  const condition = `name = ${name} AND token = ${token} AND lock_until > clock_timestamp()`;
  return `EXISTS (SELECT 1 FROM ${table} WHERE ${condition}${lock ? ' FOR KEY SHARE' : ''})`;
}
