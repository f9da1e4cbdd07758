import type { PoolClient } from 'pg';
import type { DataSource } from 'typeorm';
import { processWide } from '../common/process-state.js';

// What a session ended by idle_in_transaction_session_timeout looks like on pg's JavaScript client: the server's own
// error (SQLSTATE 25P03). pg's native client (libpq) hands that error to its notice processor, which prints it to
// stderr, and then reports only that the server closed the connection: the reason has to be inferred.
const IDLE_IN_TRANSACTION_TIMEOUT = '25P03';
const CLOSED_BY_SERVER = /server closed the connection unexpectedly/i;
// How much sooner than the setting a session may look idle from here: the server's idle clock starts when it sent
// its last answer, ours when the answer's callback ran.
const SLACK_MS = 50;

const timeouts = processWide('idle-in-transaction-timeouts', () => new WeakMap<DataSource, number>());

/**
 * Records the idle_in_transaction_session_timeout (ms) that `dataSource`'s transactions run under: the lower of the
 * server's setting for the app's database and role (read at bootstrap) and the vanished-client bound each transaction
 * sets LOCAL; undefined or 0 when neither applies.
 */
export function setIdleInTransactionTimeout(dataSource: DataSource, ms: number | undefined): void {
  if (ms) timeouts.set(dataSource, ms);
  else timeouts.delete(dataSource);
}

/**
 * The server's 25P03 error, as pg's JavaScript client would have delivered it, when `error` (a client's error event)
 * is pg's native client saying the server closed the connection of a transaction that had sat idle (`idleForMs`, no
 * statement in flight) for at least the idle_in_transaction_session_timeout its DataSource's transactions run under;
 * else undefined. The inference cannot tell that timeout from an administrator's pg_terminate_backend() of the same
 * idle session at that very moment; both rolled the transaction back.
 */
export function inferredIdleTimeout(error: unknown, client: PoolClient, dataSource: DataSource, idleForMs: number | undefined): Error | undefined {
  if (idleForMs === undefined || !(client as { native?: unknown }).native) return undefined;
  const timeoutMs = timeouts.get(dataSource);
  const message = error instanceof Error ? error.message : '';
  if (timeoutMs === undefined || idleForMs + SLACK_MS < timeoutMs || !CLOSED_BY_SERVER.test(message)) return undefined;
  return Object.assign(
    new Error(
      `terminating connection due to idle-in-transaction timeout (inferred: pg's native client reported that the server ` +
        `closed the connection after the transaction sat idle ${Math.round(idleForMs)} ms, and its ` +
        `idle_in_transaction_session_timeout is ${timeoutMs} ms)`,
      { cause: error },
    ),
    { code: IDLE_IN_TRANSACTION_TIMEOUT },
  );
}
