/**
 * Every statement of LeaseService. `table` is a quoted identifier; everything else is bound. Times come
 * from the database clock (clock_timestamp()), never from the application's clock.
 *
 * Fencing is enforced by row-lock strength on the lease row (PostgreSQL's four tuple lock modes):
 * - a fenced statement (fence(), assertToken() inside a transaction) takes FOR KEY SHARE on the row, held
 *   until the writer's transaction ends;
 * - a takeover (acquire() of an expired lease) takes FOR UPDATE, which conflicts with FOR KEY SHARE: it waits
 *   until every open fenced transaction under the old token has ended, and its new token is issued after them.
 *   A fenced statement that comes after the takeover (or waits behind it) re-reads the row and matches nothing;
 *   under REPEATABLE READ, one whose snapshot predates the takeover fails with 40001 (FOR UPDATE marks the old
 *   row version as key-updated, so FOR KEY SHARE cannot lock it quietly);
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

  // One statement: insert a fresh lease, or take over an expired one, bumping the fencing token.
  // `name = EXCLUDED.name` changes nothing, but naming a key column in SET makes ON CONFLICT lock the row
  // FOR UPDATE instead of FOR NO KEY UPDATE, so the takeover waits for open fenced transactions (see above).
  // The NOT EXISTS skips the insert, and so the row lock, while the lease is visibly held: callers that are
  // going to get null do not queue behind a holder's fenced transaction.
  // $1 name, $2 holder, $3 atMostForMs
  acquire: (table: string) => `INSERT INTO ${table} AS l (name, holder, token, locked_at, lock_until)
    SELECT $1::text, $2::text, 1, clock_timestamp(), clock_timestamp() + $3 * interval '1 millisecond'
    WHERE NOT EXISTS (SELECT 1 FROM ${table} WHERE name = $1::text AND lock_until > clock_timestamp())
    ON CONFLICT (name) DO UPDATE
      SET name = EXCLUDED.name, holder = EXCLUDED.holder, token = l.token + 1,
          locked_at = EXCLUDED.locked_at, lock_until = EXCLUDED.lock_until
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
