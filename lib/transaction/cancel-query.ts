import type { Pool, PoolClient } from 'pg';

// How long a cancel request may take before we stop waiting for the server to close its socket.
const CANCEL_WAIT_MS = 2_000;

interface CancelSocket {
  once(event: 'connect' | 'end' | 'error', listener: () => void): void;
  connect(port: number | string, host?: string): void;
  cancel(processID: number, secretKey: number): void;
  stream?: { destroy(): void };
}

/**
 * Asks PostgreSQL to cancel the statement `client` is running (a lock wait), the way psql's Ctrl-C does: a
 * CancelRequest with the backend's pid and secret key, on a connection of its own (so it works with every pooled
 * connection busy, and behind PgBouncer, which forwards it). Resolves once the server has closed that connection,
 * by when the backend has been signalled: a cancel that arrives after the statement ended finds it idle and is
 * ignored, so the next statement on `client` is not hit by it.
 */
export function cancelRunningQuery(pool: Pool, client: PoolClient): Promise<void> {
  const native = (client as { native?: { cancel(callback: () => void): void } }).native;
  if (native) return new Promise((resolve) => native.cancel(() => resolve()));
  const { processID, secretKey } = client as unknown as { processID?: number; secretKey?: number };
  if (processID === undefined || secretKey === undefined) return Promise.resolve();
  const ClientClass = (pool as unknown as { Client: new (options: unknown) => { connection: CancelSocket; host: string; port: number } }).Client;
  const canceller = new ClientClass((pool as unknown as { options: unknown }).options);
  const socket = canceller.connection;
  return new Promise((resolve) => {
    const timer = setTimeout(done, CANCEL_WAIT_MS);
    timer.unref();
    function done(): void {
      clearTimeout(timer);
      socket.stream?.destroy();
      resolve();
    }
    socket.once('end', done);
    socket.once('error', done);
    socket.once('connect', () => socket.cancel(processID, secretKey));
    const { host, port } = canceller;
    if (host && host.startsWith('/')) socket.connect(`${host}/.s.PGSQL.${port}`);
    else socket.connect(port, host);
  });
}
