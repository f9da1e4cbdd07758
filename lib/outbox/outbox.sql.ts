import { createHash } from 'node:crypto';
import { quoteIdentifier } from '../common/sql.js';

/**
 * Every statement of the outbox. `table` is a quoted (possibly schema-qualified) identifier; everything else is
 * bound. Times come from the database clock.
 *
 * How replicas share the work without delivering an event twice: a delivery transaction locks the rows it takes
 * `FOR UPDATE SKIP LOCKED` (another replica skips them instead of waiting) and marks them delivered in the same
 * transaction as the handlers' writes; a row whose delivery committed is no longer pending, and one whose delivery
 * rolled back (a failed handler, a killed replica) is pending and unlocked again.
 *
 * How events of one key keep their order: publish() takes a transaction-scope advisory lock on the key before the
 * row gets its id, so a key's ids are handed out in the order its publishing transactions commit (a later one
 * waits for the earlier one to end); and an event of a key is delivered only when every pending event of that key
 * with a smaller id is in the same delivery (keyHeads), so no replica overtakes another on a key.
 */
export const outboxSql = {
  createTable: (table: string): string[] => [
    `CREATE TABLE IF NOT EXISTS ${table} (
      id bigserial PRIMARY KEY,
      topic text NOT NULL,
      key text,
      payload jsonb NOT NULL,
      status text NOT NULL DEFAULT 'pending',
      attempts integer NOT NULL DEFAULT 0,
      created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      available_at timestamptz NOT NULL DEFAULT clock_timestamp(),
      delivered_at timestamptz,
      last_error text,
      trace_parent text
    )`,
    // The relay's claim: pending rows in id order.
    `CREATE INDEX IF NOT EXISTS ${indexName(table, 'pending')} ON ${table} (id) WHERE status = 'pending'`,
    // The order check: a key's pending rows.
    `CREATE INDEX IF NOT EXISTS ${indexName(table, 'key')} ON ${table} (key, id) WHERE status = 'pending' AND key IS NOT NULL`,
    // Retention: delivered rows by age.
    `CREATE INDEX IF NOT EXISTS ${indexName(table, 'delivered')} ON ${table} (delivered_at) WHERE status = 'delivered'`,
  ],

  /**
   * One statement: (the key's lock), the row, (the NOTIFY that goes out at COMMIT; identical ones within a transaction
   * are sent once). $1 topic, $2 key, $3 payload (JSON text), $4 delay ms, $5 trace parent, then $6 the key's lock
   * (keyed) and the channel (notify).
   */
  publish: (table: string, keyed: boolean, notify: boolean): string => {
    // The clock is read once the lock is held (the select list is evaluated in order), for both times.
    const now = keyed ? 'SELECT pg_advisory_xact_lock($6::bigint) AS locked, clock_timestamp() AS at' : 'SELECT clock_timestamp() AS at';
    const channel = keyed ? '$7' : '$6';
    return `WITH now AS (${now}), inserted AS (
      INSERT INTO ${table} (topic, key, payload, created_at, available_at, trace_parent)
      SELECT $1::text, $2::text, $3::jsonb, now.at, now.at + $4::float8 * interval '1 millisecond', $5::text FROM now
      RETURNING id
    ) SELECT id::text AS id${notify ? `, pg_notify(${channel}::text, '') AS notified` : ''} FROM inserted`;
  },

  /**
   * The due pending events of `topics`, oldest first, locked for this delivery and marked delivered in the same
   * statement (one round trip; the mark commits with the handlers' writes, and a failure rolls it back with them).
   * `attempts` comes back as it was before this attempt. $1 topics, $2 limit.
   */
  claim: (table: string): string => claimAndMark(table, ''),

  /** claim(), of these events only (the testing kit's delivery, one event's retry). $1 topics, $2 limit, $3 ids. */
  claimIds: (table: string): string => claimAndMark(table, 'AND o.id = ANY($3::bigint[])'),

  /**
   * For each key of a delivery, the smallest id of its events still pending (whoever holds them; the delivery's own
   * are marked delivered by now): the delivery may deliver a key's events only below it. $1 keys.
   */
  keyHeads: (table: string): string => `SELECT key, min(id)::text AS head FROM ${table} WHERE key = ANY($1::text[]) AND status = 'pending' GROUP BY key`,

  /** Gives back events claimed but not deliverable in this round (a key's earlier event is elsewhere). $1 ids. */
  unclaim: (table: string): string => `UPDATE ${table} SET status = 'pending', delivered_at = NULL, attempts = attempts - 1 WHERE id = ANY($1::bigint[])`,

  /** For `retentionMs: 0`: nothing is kept of delivered events. $1 ids. */
  deleteDelivered: (table: string): string => `DELETE FROM ${table} WHERE id = ANY($1::bigint[])`,

  /**
   * In the delivery transaction that holds the row (claimed: its attempt counted), after its handlers' writes were
   * rolled back: the error, the next try after a jittered exponential backoff, or `failed` after the last attempt.
   * $1 id, $2 error, $3 maxAttempts, $4 backoff min ms, $5 backoff max ms. Returns the row's status and when it is due.
   */
  recordFailure: (table: string): string => `UPDATE ${table} SET last_error = $2::text, delivered_at = NULL,
      status = CASE WHEN attempts >= $3::int THEN 'failed' ELSE 'pending' END,
      available_at = clock_timestamp() + LEAST($5::float8, $4::float8 * power(2::float8, attempts - 1)) * (0.5 + random() * 0.5) * interval '1 millisecond'
    WHERE id = $1::bigint
    RETURNING status, extract(epoch FROM available_at - clock_timestamp())::float8 * 1000 AS retry_in_ms`,

  /** Parked events, oldest first. $1 limit. */
  failed: (table: string): string => `SELECT ${EVENT_COLUMNS}, o.last_error FROM ${table} o WHERE o.status = 'failed' ORDER BY o.id LIMIT $1`,

  /** Parked events back to pending, attempts from zero, due now. $1 ids (null: every parked event). */
  replay: (table: string): string => `UPDATE ${table} SET status = 'pending', attempts = 0, last_error = NULL, available_at = clock_timestamp()
    WHERE status = 'failed' AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))
    RETURNING id::text AS id`,

  /** Events per status. */
  counts: (table: string): string => `SELECT status, count(*)::int AS count FROM ${table} GROUP BY status`,

  /** Deletes up to $2 delivered events older than $1 ms, skipping rows another replica is deleting. */
  cleanup: (table: string): string => `DELETE FROM ${table} WHERE id IN (
      SELECT id FROM ${table} WHERE status = 'delivered' AND delivered_at < clock_timestamp() - $1::float8 * interval '1 millisecond'
      ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING id`,

  listen: (channel: string): string => `LISTEN ${quoteIdentifier(channel)}`,
};

// A keyed event waits while an earlier pending event of its key is not due yet (a delay, a retry's backoff) or is of a
// topic this relay has no handler for: claiming it would only lock it for nothing, round after round, and keep the
// events behind it in id order from being claimed at all. $1 is the topics.
const NOT_HELD_BACK = (table: string) => `(o.key IS NULL OR NOT EXISTS (SELECT 1 FROM ${table} p
      WHERE p.key = o.key AND p.status = 'pending' AND p.id < o.id AND (p.available_at > clock_timestamp() OR p.topic <> ALL($1::text[]))))`;

// What a delivery reads of each event; the lag (commit to now) on the database clock.
const EVENT_COLUMNS = `o.id::text AS id, o.topic, o.key, o.payload, o.attempts, o.created_at, o.trace_parent,
  extract(epoch FROM clock_timestamp() - o.created_at)::float8 AS lag_seconds`;

// Locks the due events (SKIP LOCKED), then marks them delivered; `filter` narrows the events ($3 onwards).
function claimAndMark(table: string, filter: string): string {
  return `WITH claimed AS (
      SELECT o.id FROM ${table} o
      WHERE o.status = 'pending' AND o.available_at <= clock_timestamp() AND o.topic = ANY($1::text[]) ${filter} AND ${NOT_HELD_BACK(table)}
      ORDER BY o.id LIMIT $2 FOR UPDATE SKIP LOCKED
    )
    UPDATE ${table} AS o SET status = 'delivered', delivered_at = clock_timestamp(), attempts = o.attempts + 1
    FROM claimed WHERE o.id = claimed.id
    RETURNING o.id::text AS id, o.topic, o.key, o.payload, o.attempts - 1 AS attempts, o.created_at, o.trace_parent,
      extract(epoch FROM clock_timestamp() - o.created_at)::float8 AS lag_seconds`;
}

/**
 * The NOTIFY channel of an outbox table: one per table, so two outboxes in one database do not wake each other's
 * relays. A hash, since a schema-qualified name could pass the 63 bytes of an identifier.
 */
export function outboxChannel(table: string): string {
  return `txlock_outbox_${createHash('sha256').update(table).digest('hex').slice(0, 16)}`;
}

// An index of `table`, named after it (an index lives in its table's schema, so the name is unqualified).
function indexName(table: string, suffix: string): string {
  const name = table.split('.').pop()!.slice(1, -1).replace(/""/g, '"');
  return quoteIdentifier(`${name.slice(0, 63 - suffix.length - 1)}_${suffix}`);
}
