/**
 * Every statement on the counters table, in one place. `table` is already validated and quoted.
 * Parameters: $1 key, $2 delta or value (bigint as text), $3 window ms (or NULL), $4 min, $5 max (or NULL); `add`
 * has no window parameter ($3 is its limit).
 * A sharded key's count is spread over several rows (counter-shards.ts): the whole-key statements take the
 * array of every row that can hold part of it, and `add` takes the one row it changes as $1.
 *
 * Time is always the database's `statement_timestamp()`, never the app clock. A statement that waited for
 * the row lock judges the window by its own start time, so it can only count into the window it saw
 * (never reset a window a later statement already started): no double counting across a boundary.
 */
const EXPIRED = `COALESCE(c.expires_at <= statement_timestamp(), false)`;
const NEW_EXPIRES = `statement_timestamp() + $3::bigint * interval '1 millisecond'`;
const NEW_VALUE = `CASE WHEN ${EXPIRED} THEN $2::bigint ELSE c."value" + $2::bigint END`;
const NEXT_EXPIRES = `CASE WHEN ${EXPIRED} THEN ${NEW_EXPIRES} ELSE COALESCE(c.expires_at, ${NEW_EXPIRES}) END`;
const WITHIN_BOUNDS = `($4::bigint IS NULL OR ${NEW_VALUE} >= $4::bigint) AND ($5::bigint IS NULL OR ${NEW_VALUE} <= $5::bigint)`;
const LIVE = `(expires_at IS NULL OR expires_at > statement_timestamp())`;

/** A row of an add statement: the new value as text and the window end. */
export interface CounterRow {
  value: string;
  expires_at: Date | null;
}

/** A row of a bounded add: whether it applied, and the value. */
export interface BoundedRow extends CounterRow {
  applied: boolean;
}

/** The SQL of the counters table named `table`. */
export class CounterSql {
  /**
   * Adds $2 in one statement (creating the row at $2), resetting an ended window. Params $1..$3: with $3 (the
   * largest magnitude the caller can take, Number.MAX_SAFE_INTEGER for number values) an existing row that would
   * pass it is left unchanged and no row is returned; a new row starts at $2, which the caller checked. The
   * common case, kept lean (PostgreSQL parses it in half the time of addInWindow, when it is not prepared).
   */
  readonly add: string;
  /** Like add, for a call with a window: $3 is its length in ms (a new window starts when none is live), $4 the limit. */
  readonly addInWindow: string;
  /** Adds $2 only if the result stays within [$4, $5]; may create the row. Params $1..$5. */
  readonly addWithinBoundsOrCreate: string;
  /** Like addWithinBoundsOrCreate for a delta that is out of bounds by itself: never creates the row. */
  readonly addWithinBounds: string;
  /** Sets the row $1 to $2 and deletes the rows $3 (the key's shards). */
  readonly set: string;
  /** The live total of the rows $1 (a key and its shards), NULL when there is none. */
  readonly get: string;
  /** The live rows among $1. */
  readonly getMany: string;
  /** Deletes the rows $1; `n` is how many existed. */
  readonly delete: string;
  readonly deleteExpired: string;
  readonly createTable: string;

  constructor(readonly table: string) {
    const upsert = `INSERT INTO ${table} AS c ("key", "value", expires_at) VALUES ($1, $2::bigint, ${NEW_EXPIRES})
      ON CONFLICT ("key") DO UPDATE SET "value" = ${NEW_VALUE}, expires_at = ${NEXT_EXPIRES}`;
    this.addInWindow = `${upsert} WHERE $4::bigint IS NULL OR ${NEW_VALUE} BETWEEN -$4::bigint AND $4::bigint
      RETURNING c."value"::text AS "value", c.expires_at`;
    // Without a window of its own, an ended one (another call's) still resets the count, and a live one is kept.
    this.add = `INSERT INTO ${table} AS c ("key", "value") VALUES ($1, $2::bigint)
      ON CONFLICT ("key") DO UPDATE SET "value" = ${NEW_VALUE}, expires_at = CASE WHEN ${EXPIRED} THEN NULL ELSE c.expires_at END
      WHERE $3::bigint IS NULL OR ${NEW_VALUE} BETWEEN -$3::bigint AND $3::bigint
      RETURNING c."value"::text AS "value", c.expires_at`;
    this.addWithinBoundsOrCreate = bounded(table, `${upsert} WHERE ${WITHIN_BOUNDS} RETURNING c."value", c.expires_at`);
    this.addWithinBounds = bounded(
      table,
      `UPDATE ${table} AS c SET "value" = ${NEW_VALUE}, expires_at = ${NEXT_EXPIRES}
       WHERE c."key" = $1 AND ${WITHIN_BOUNDS} RETURNING c."value", c.expires_at`,
    );
    this.set = `WITH shards AS (DELETE FROM ${table} WHERE "key" = ANY($3::text[]))
      INSERT INTO ${table} AS c ("key", "value", expires_at) VALUES ($1, $2::bigint, NULL)
      ON CONFLICT ("key") DO UPDATE SET "value" = EXCLUDED."value", expires_at = NULL`;
    this.get = `SELECT sum("value")::text AS "value" FROM ${table} WHERE "key" = ANY($1::text[]) AND ${LIVE}`;
    this.getMany = `SELECT "key", "value"::text AS "value" FROM ${table} WHERE "key" = ANY($1::text[]) AND ${LIVE}`;
    this.delete = `WITH gone AS (DELETE FROM ${table} WHERE "key" = ANY($1::text[]) RETURNING 1) SELECT count(*)::int AS n FROM gone`;
    this.deleteExpired = `WITH gone AS (DELETE FROM ${table} WHERE expires_at <= statement_timestamp() RETURNING 1) SELECT count(*)::int AS n FROM gone`;
    this.createTable = `CREATE TABLE IF NOT EXISTS ${table} ("key" text PRIMARY KEY, "value" bigint NOT NULL DEFAULT 0, expires_at timestamptz)`;
  }
}

// One statement: the guarded change, or (when the guard refused it) the value the statement could see.
function bounded(table: string, attempt: string): string {
  return `WITH attempt AS (${attempt})
    SELECT true AS applied, "value"::text AS "value", expires_at FROM attempt
    UNION ALL
    SELECT false, (CASE WHEN ${LIVE} THEN "value" ELSE 0 END)::text, CASE WHEN ${LIVE} THEN expires_at END
    FROM ${table} WHERE "key" = $1 AND NOT EXISTS (SELECT 1 FROM attempt)`;
}
