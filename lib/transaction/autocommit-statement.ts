import type { Pool, PoolClient, QueryResult } from 'pg';
import { asQueryFailed, isConnectionLoss } from './connection-errors.js';
import { explainAutocommit } from './library-statement-errors.js';
import type { NamedStatement, PreparedStatements } from './prepared-statements.js';
import { sqlState } from './sql-state.js';
import { setConfigStatement } from './transaction.sql.js';
import type { SettingEntry } from './transaction-settings.js';
import { watchCallback, type VanishedClientBound } from './vanished-client.js';

// serialization_failure, deadlock_detected: the server's (database's, role's) default isolation is REPEATABLE READ or
// SERIALIZABLE, or two statements locked rows in opposite orders.
const SERIALIZATION = new Set(['40001', '40P01']);
// lock_not_available: a row lock waited longer than the server's, database's or role's lock_timeout.
const LOCK_NOT_AVAILABLE = '55P03';
// feature_not_supported, which is what "cached plan must not change result type" is: a prepared statement's result
// columns changed under it (ALTER TABLE ... ADD COLUMN, a column type, a table dropped and created again, another
// search_path). Raised while the statement is planned again, before it runs.
const FEATURE_NOT_SUPPORTED = '0A000';
// How many times a statement is sent in all before its last failure is the answer (each failed attempt had no effect).
const ATTEMPTS = 5;
const BACKOFF_MS = { min: 5, max: 100 };

/**
 * Sends one of the library's own statements (counters, get-or-create, leases, single flight) outside any
 * transaction: PostgreSQL runs it in a transaction of its own (autocommit), at the isolation the server, database
 * or role makes the default.
 *
 * Whatever failed in autocommit had no effect (its implicit transaction was rolled back; only a lost connection
 * leaves the outcome open, and that is never sent again). So the call keeps the contract it has on a server with
 * default settings, at no cost while nothing fails:
 * - a serialization failure or deadlock (40001/40P01: under a REPEATABLE READ or SERIALIZABLE default, concurrent
 *   writers of one counter, lease or key conflict) sends the statement again, on the same connection, in an
 *   explicit READ COMMITTED transaction, where it works as written: a concurrent update makes it wait and re-read
 *   the row, never fail (a deadlock is sent again, at most ATTEMPTS times in all);
 * - a prepared statement whose plan no longer fits the table (0A000 after a migration) is sent again unnamed once,
 *   and the connection holding the stale plan is closed (fresh connections prepare the statement again);
 * - a row lock that waited past `lock_timeout` is sent again after a short backoff, at most ATTEMPTS times in all;
 * - a statement a pooler lost (PreparedStatements.failedOnPooler) is sent again unnamed.
 * What is left is explained (a read-only database, statement_timeout, lock_timeout: named errors) and has
 * TypeORM's QueryFailedError shape.
 *
 * With `settings` (the module option `settings`: a tenant's id for row-level security), the statement runs in a READ
 * COMMITTED transaction of its own that sets them LOCAL in its BEGIN's round trip, so they never outlive it on the
 * pooled connection (or a pooler's server connection): two round trips more than autocommit. With `bound`, a
 * statement without an answer is watched as in a transaction (watchCallback()).
 */
export function sendAutocommit(
  pool: Pool,
  statements: PreparedStatements,
  sql: string,
  params: unknown[],
  settings: readonly SettingEntry[] = [],
  bound?: VanishedClientBound,
): Promise<QueryResult> {
  if (settings.length > 0) return withSettings(pool, sql, params, settings, bound);
  const query = statements.statement(sql);
  // The first attempt, the one nearly every call ends with, on pg's callbacks: no promise but the caller's, as
  // pool.query() does it (an async frame per step made this the library's costliest path: 23 promises against 3).
  return new Promise((resolve, reject) => {
    pool.connect((error, client) => {
      if (error) return reject(error);
      const connection = new CheckedOut(client!, pool, bound);
      connection.sendThen(query, params, (failure, result) => {
        if (failure === undefined) {
          connection.release();
          resolve(result!);
        } else {
          resolve(sendAgain(pool, statements, sql, params, bound, connection, query, failure));
        }
      });
    });
  });
}

// What follows a failed attempt: `failure` answered `query` on `connection`, which is released here.
async function sendAgain(
  pool: Pool,
  statements: PreparedStatements,
  sql: string,
  params: unknown[],
  bound: VanishedClientBound | undefined,
  connection: CheckedOut,
  query: string | NamedStatement,
  failure: unknown,
): Promise<QueryResult> {
  for (let attempt = 1; ; attempt++) {
    let wait = false;
    try {
      const state = sqlState(failure);
      if (statements.failedOnPooler(query, failure) || (typeof query !== 'string' && state === FEATURE_NOT_SUPPORTED)) {
        // The server connection keeps the stale plan (or lacks the statement) under that name: not for the next user.
        connection.discard(failure);
        query = sql;
      } else {
        if (state !== undefined && SERIALIZATION.has(state)) return await inReadCommitted(connection, sql, params);
        connection.failed(failure);
        if (state !== LOCK_NOT_AVAILABLE || attempt >= ATTEMPTS) throw explainAutocommit(asQueryFailed(failure, sql));
        wait = true;
      }
    } finally {
      connection.release();
    }
    if (wait) await backoff(attempt);
    connection = new CheckedOut(await pool.connect(), pool, bound);
    try {
      const result = await connection.send(query, params);
      connection.release();
      return result;
    } catch (error) {
      failure = error;
    }
  }
}

// The statement with `settings` set LOCAL: in a READ COMMITTED transaction of its own.
async function withSettings(pool: Pool, sql: string, params: unknown[], settings: readonly SettingEntry[], bound: VanishedClientBound | undefined): Promise<QueryResult> {
  const connection = new CheckedOut(await pool.connect(), pool, bound);
  try {
    return await inReadCommitted(connection, sql, params, settings);
  } finally {
    connection.release();
  }
}

/** A pooled connection checked out for one statement, with what decides its fate when it goes back. */
class CheckedOut {
  // Why the connection must be closed instead of reused, once known.
  private broken?: Error;

  constructor(
    private readonly client: PoolClient,
    private readonly pool: Pool,
    private readonly bound: VanishedClientBound | undefined,
  ) {
    // A checked-out client has no listener of pg-pool's: one that breaks between two statements must not crash the process.
    client.on('error', this.discard);
  }

  /**
   * Sends one statement with `values` (or, without, a simple-protocol batch), watched for a server that stopped
   * answering when bounded.
   */
  send(query: string | NamedStatement, values?: unknown[]): Promise<QueryResult> {
    return new Promise((resolve, reject) => this.sendThen(query, values, (error, result) => (error === undefined ? resolve(result!) : reject(error))));
  }

  /** send() with a callback: `done` gets the error, or undefined and the result. */
  sendThen(query: string | NamedStatement, values: unknown[] | undefined, done: (error: unknown, result?: QueryResult) => void): void {
    const watch = this.bound && watchCallback(this.client, this.pool, this.bound, this.discard);
    try {
      // pg takes a config (a NamedStatement) with values and a callback too; its types only name text there.
      this.client.query(query as string, values as unknown[], (error: Error | undefined, result: QueryResult) => {
        if (watch) this.bound!.watches.remove(watch);
        done(error ?? undefined, result);
      });
    } catch (error) {
      if (watch) this.bound!.watches.remove(watch);
      done(error);
    }
  }

  /** Marks the connection to be closed instead of reused. */
  readonly discard = (reason: unknown): void => {
    this.broken ??= reason instanceof Error ? reason : new Error(String(reason));
  };

  /** Records a failure: a lost connection is closed, one that only refused a statement goes back to the pool. */
  failed(error: unknown): void {
    if (isConnectionLoss(error)) this.discard(error);
  }

  release(): void {
    this.client.removeListener('error', this.discard);
    this.client.release(this.broken);
  }
}

// The statement in a READ COMMITTED transaction of its own: BEGIN, the statement, COMMIT, three round trips paid only
// after a serialization failure. Unnamed, as statements in transactions always are. COMMIT is queued behind the
// statement, so pg sends it as soon as the statement's answer is in, without waiting for a turn of the event loop
// while the statement's row locks are held; after a failed statement it answers ROLLBACK (the transaction was aborted).
async function inReadCommitted(connection: CheckedOut, sql: string, params: unknown[], settings: readonly SettingEntry[] = []): Promise<QueryResult> {
  const begin = ['BEGIN ISOLATION LEVEL READ COMMITTED', ...(settings.length > 0 ? [setConfigStatement(settings, true)] : [])].join(';\n');
  for (let attempt = 1; ; attempt++) {
    let failure: unknown;
    try {
      await connection.send(begin);
      const [statement, commit] = await Promise.allSettled([connection.send(sql, params), connection.send('COMMIT')]);
      if (statement.status === 'fulfilled' && commit.status === 'fulfilled') return statement.value;
      failure = statement.status === 'rejected' ? statement.reason : (commit as PromiseRejectedResult).reason;
    } catch (error) {
      failure = error;
    }
    connection.failed(failure);
    const state = sqlState(failure);
    const again = state !== undefined && (SERIALIZATION.has(state) || state === LOCK_NOT_AVAILABLE);
    if (!again || isConnectionLoss(failure) || attempt >= ATTEMPTS) throw explainAutocommit(asQueryFailed(failure, sql));
    await backoff(attempt);
  }
}

// Jittered exponential backoff, so that callers that failed together do not come back together.
function backoff(attempt: number): Promise<void> {
  const ceiling = Math.min(BACKOFF_MS.max, BACKOFF_MS.min * 2 ** attempt);
  return new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
}
