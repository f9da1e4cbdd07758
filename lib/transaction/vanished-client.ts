import type { Pool, PoolClient, QueryResult } from 'pg';
import type { DataSource } from 'typeorm';
import { processWide } from '../common/process-state.js';
import { ConnectionLostError } from '../errors.js';
import { isConnectionLoss } from './connection-errors.js';
import { StatementWatch, StatementWatches } from './statement-watches.js';
import { boundStatement, setLocalBound } from './transaction.sql.js';
import type { SettingEntry } from './transaction-settings.js';

/** The default of the module option `vanishedClientTimeoutMs`: 60 s. */
export const DEFAULT_VANISHED_CLIENT_TIMEOUT_MS = 60_000;
/** The smallest `vanishedClientTimeoutMs`: TCP keepalive settings count in whole seconds. */
export const MIN_VANISHED_CLIENT_TIMEOUT_MS = 1_000;

/**
 * How this process bounds the time a vanished client (a partition, a dead node: no FIN, no RST) keeps its locks and
 * transactions, and the time it takes the holder to learn of it. See docs/production.md.
 */
export interface VanishedClientBound {
  /** The bound, in ms (module option `vanishedClientTimeoutMs`). */
  ms: number;
  /**
   * Set LOCAL in every transaction's opening statements (no round trip of their own): behind a pooler all of them; on
   * a direct connection `idle_in_transaction_session_timeout` only, the rest being set once for the connection's session.
   */
  transaction: SettingEntry[];
  /**
   * Set once for the session of each pooled connection, by the opening statements of its first transaction (direct
   * connections only; behind a pooler a session setting would stay on a server connection other clients get next).
   */
  connection: SettingEntry[];
  /** Set for the session of a connection pinned by a session-scope lock, and reset before it goes back to the pool. */
  session: SettingEntry[];
  /** True on a direct connection: a statement without an answer is judged by its backend's row in pg_stat_activity. */
  byBackend: boolean;
  /** The opening statement of a transaction on a connection whose session has no bound yet (boundStatement()). */
  firstOpening: string;
  /** The statements in flight under this bound (watchStatement()). */
  watches: StatementWatches<InFlightStatement>;
}

const IDLE_IN_TRANSACTION = 'idle_in_transaction_session_timeout';
const bounds = processWide('vanished-client-bounds', () => new WeakMap<DataSource, VanishedClientBound>());
// Direct connections whose session carries the bound's connection settings, with the SET LOCAL of
// idle_in_transaction_session_timeout their transactions send: the lower of the bound and the session's own value,
// as read when the settings were made.
const boundConnections = processWide('vanished-client-connections', () => new WeakMap<PoolClient, string>());

/** The bound of `dataSource`'s registration, if it has one (undefined with `vanishedClientTimeoutMs: false`). */
export function vanishedClientBound(dataSource: DataSource): VanishedClientBound | undefined {
  return bounds.get(dataSource);
}

/** Records (or with `undefined` removes) the bound of `dataSource`. */
export function setVanishedClientBound(dataSource: DataSource, bound: VanishedClientBound | undefined): void {
  if (bound) bounds.set(dataSource, bound);
  else bounds.delete(dataSource);
}

/**
 * The server settings that make PostgreSQL let go of a vanished client within `ms`, for a server of major version
 * `major` (each is sent as the lower of this and the session's own value: boundStatement()):
 * - `idle_in_transaction_session_timeout = ms`: the backend of a transaction whose client stopped sending is ended,
 *   which rolls the transaction back and frees its locks (all versions; the case the client cannot help with).
 * - `tcp_keepalives_idle/interval/count` (ms/3, ms/9 and 3, in whole seconds): on a real broken path the kernel
 *   reports the peer dead within about 2/3 of the bound, for a backend busy in a long statement or lock wait too.
 * - `client_connection_check_interval` (PostgreSQL 14+, ms/3): a backend running a long statement checks that
 *   its client is still there, and stops when keepalives found it gone.
 * - for a session pinned by a session-scope lock, `idle_session_timeout = ms` (PostgreSQL 14+): a session lock is
 *   held outside any transaction, where idle_in_transaction_session_timeout does not apply; the holder's
 *   heartbeat (every ms/4) keeps a live session from going idle that long.
 *
 * `byBackend` (a direct connection): the keepalives and the connection check are made once per pooled connection, for
 * its session, and each transaction sets only its idle timeout LOCAL, as a plain `SET LOCAL`. Setting the keepalives
 * LOCAL in every transaction cost the server about 125 µs per transaction (a socket option set at BEGIN and again
 * at the end), more than a transaction's own statements.
 */
export function computeBound(ms: number, major: number, byBackend: boolean): VanishedClientBound {
  const seconds = (fraction: number) => String(Math.max(1, Math.floor(ms / 1000 / fraction)));
  const wanted: SettingEntry[] = [
    ['tcp_keepalives_idle', seconds(3)],
    ['tcp_keepalives_interval', seconds(9)],
    ['tcp_keepalives_count', '3'],
  ];
  if (major >= 14) wanted.push(['client_connection_check_interval', String(Math.max(1000, Math.floor(ms / 3)))]);
  const idleSession: SettingEntry[] = major >= 14 ? [['idle_session_timeout', String(ms)]] : [];
  const idle: SettingEntry = [IDLE_IN_TRANSACTION, String(ms)];
  const transaction = byBackend ? [idle] : [idle, ...wanted];
  const connection = byBackend ? wanted : [];
  const half = Math.max(1, Math.floor(ms / 2));
  const watches = new StatementWatches<InFlightStatement>(half, (statement) => void checkOverdue(statement, byBackend, half, ms));
  return { ms, transaction, connection, session: [...idleSession, ...wanted], byBackend, firstOpening: boundStatement(transaction, connection), watches };
}

/**
 * The bound's statement in the opening batch of a transaction on `client`: on a direct connection whose session has
 * the bound already, a plain `SET LOCAL` of its idle timeout; else the full boundStatement(), which on a direct
 * connection also makes the connection settings for the session (connectionBounded() records it once sent).
 */
export function openingBound(bound: VanishedClientBound, client: PoolClient): string {
  const idle = bound.byBackend ? boundConnections.get(client) : undefined;
  return idle === undefined ? bound.firstOpening : idle;
}

/**
 * Records that `client`'s session now has `bound`'s connection settings, from `result`, the answer to the bound's
 * opening statement (openingBound()): its idle timeout column, the value now in force as PostgreSQL shows it ('1min'),
 * is what its transactions set from now on. False when there was nothing to record.
 */
export function connectionBounded(bound: VanishedClientBound, client: PoolClient, result: QueryResult | undefined): boolean {
  const idle = (result?.rows[0] as Record<string, unknown> | undefined)?.[IDLE_IN_TRANSACTION];
  if (!bound.byBackend || typeof idle !== 'string') return false;
  boundConnections.set(client, setLocalBound([IDLE_IN_TRANSACTION, idle]));
  return true;
}

/**
 * Forgets that `client`'s session has the connection settings: the transaction that made them rolled back (which
 * undoes a session setting made in it), or a session-scope lock reset them. Its next transaction makes them again.
 */
export function forgetConnectionBound(client: PoolClient): void {
  boundConnections.delete(client);
}

/**
 * Turns on TCP keepalive for the connections `pool` opens from now on (pg's `keepAlive`, first probe after a third of
 * the bound; Node then probes every second, ten times), unless the DataSource's `extra` set `keepAlive` itself: on a
 * path that really broke, the kernel then fails the socket (idle in the pool, or waiting for a long statement) before
 * the bound, with no statement of ours. pg-pool reads its options for every new client, so this needs no new pool.
 */
export function keepPoolAlive(pool: Pool, bound: VanishedClientBound): void {
  const options = (pool as unknown as { options?: { keepAlive?: boolean; keepAliveInitialDelayMillis?: number } } | undefined)?.options;
  if (!options || options.keepAlive !== undefined) return;
  options.keepAlive = true;
  options.keepAliveInitialDelayMillis ??= Math.max(1000, Math.floor(bound.ms / 3));
}

/**
 * `work` (a statement in flight on `client`), watched: when it has had no answer for about half the bound (3/8 to 1/2
 * of it: the bound's StatementWatches sweeps every eighth), a check on a new connection asks whether the server still
 * runs it (on a direct connection: its backend is active in pg_stat_activity; behind a pooler: the server answers at
 * all). A live, busy statement is checked again every half bound, so long
 * statements and lock waits go on. When the check fails or gets no answer within the other half, `lost` is told, and
 * the socket is destroyed: pg fails the statement at once, the pool discards the client, and nothing this connection
 * was to send can reach the server any more. pg-native clients (no socket of ours) are not watched. `failed` turns a
 * failure into what the caller throws, in the same reaction.
 */
export function watchStatement<T>(
  work: Promise<T>,
  client: PoolClient,
  pool: Pool,
  bound: VanishedClientBound,
  lost: (error: ConnectionLostError) => void,
  failed?: (error: unknown) => never,
): Promise<T> {
  const statement = watchCallback(client, pool, bound, lost);
  if (!statement) return failed ? work.catch(failed) : work;
  const { watches } = bound;
  // then() rather than finally(): one promise per statement instead of three, on every statement of every transaction.
  return work.then(
    (value) => {
      watches.remove(statement);
      return value;
    },
    (error: unknown) => {
      watches.remove(statement);
      if (failed) failed(error);
      throw error;
    },
  );
}

/**
 * watchStatement() for a statement sent with a callback (no promise): watches it from now on, and returns the watch to
 * hand to `bound.watches.remove()` when its answer is in; undefined for a pg-native client, which is not watched.
 */
export function watchCallback(client: PoolClient, pool: Pool, bound: VanishedClientBound, lost: (error: ConnectionLostError) => void): StatementWatch | undefined {
  if ((client as { native?: unknown }).native) return undefined;
  const statement = new InFlightStatement(client, pool, lost);
  bound.watches.add(statement);
  return statement;
}

/** A statement watched by watchStatement(): what a check of it needs. */
class InFlightStatement extends StatementWatch {
  readonly sentAt: number;

  constructor(
    readonly client: PoolClient,
    readonly pool: Pool,
    readonly lost: (error: ConnectionLostError) => void,
  ) {
    super(Date.now());
    this.sentAt = this.since;
  }
}

// A statement without an answer for half the bound: a check on a new connection (probe()) within the other half.
async function checkOverdue(statement: InFlightStatement, byBackend: boolean, half: number, ms: number): Promise<void> {
  const problem = await probe(statement.pool, statement.client, byBackend, half);
  statement.checking = false;
  if (statement.settled) return;
  if (problem === undefined) {
    // Still served (a long statement, a lock wait): checked again after another half bound.
    statement.since = Date.now();
    return;
  }
  const error = new ConnectionLostError(
    new Error(`no answer from PostgreSQL for ${Date.now() - statement.sentAt} ms, and ${problem} (vanishedClientTimeoutMs: ${ms}); the connection was closed`),
  );
  statement.lost(error);
  destroySocket(statement.client);
}

/**
 * Runs `send` (a short statement of the library's own: a session lock's heartbeat) with a plain deadline of `ms`: no
 * answer by then means the path is gone; `lost` is told and the socket destroyed, as in watchStatement().
 */
export async function withDeadline<T>(send: () => Promise<T>, client: PoolClient, ms: number, lost: (error: ConnectionLostError) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const error = new ConnectionLostError(new Error(`a heartbeat had no answer from PostgreSQL within ${ms} ms; the connection was closed`));
      lost(error);
      destroySocket(client);
      reject(error);
    }, ms);
    timer.unref();
  });
  try {
    return await Promise.race([send(), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Destroys the socket of a pg client: its statement in flight fails, and pg-pool discards it when it is released. */
export function destroySocket(client: PoolClient): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

// Undefined when the statement is still being served; else what was found, for the error's message.
async function probe(pool: Pool, client: PoolClient, byBackend: boolean, budgetMs: number): Promise<string | undefined> {
  const ClientClass = (pool as unknown as { Client: new (options: unknown) => PoolClient }).Client;
  const options = (pool as unknown as { options: Record<string, unknown> }).options;
  const checker = new ClientClass({ ...options, connectionTimeoutMillis: budgetMs, keepAlive: false });
  checker.on('error', () => undefined);
  const pid = (client as unknown as { processID?: number }).processID;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`a check on a new connection had no answer within ${budgetMs} ms either`), budgetMs);
    timer.unref();
  });
  const checking = (async (): Promise<string | undefined> => {
    await checker.connect();
    if (!byBackend || pid === undefined) {
      await checker.query('SELECT 1');
      return undefined;
    }
    const { rows } = await checker.query<{ state: string | null; still_ms: number }>(
      `SELECT state, (extract(epoch FROM clock_timestamp() - state_change) * 1000)::float8 AS still_ms FROM pg_stat_activity WHERE pid = $1`,
      [pid],
    );
    const row = rows[0];
    if (!row) return `its backend (pid ${pid}) is gone`;
    // An answer may be on its way for a moment after the backend went idle; longer than that, the statement never came.
    if (row.state !== 'active' && row.still_ms > Math.min(1000, budgetMs)) return `its backend (pid ${pid}) has been "${row.state}" for ${Math.round(row.still_ms)} ms: the statement never reached it`;
    return undefined;
  })().catch((error: unknown) => (isConnectionLoss(error) ? `a new connection failed too (${error instanceof Error ? error.message : String(error)})` : undefined));
  try {
    return await Promise.race([checking, expired]);
  } finally {
    clearTimeout(timer);
    destroySocket(checker);
  }
}
