import { Logger } from '@nestjs/common';
import { serverSql } from './server.sql.js';

// One answer per physical connection: neither side of the comparison changes while it lives.
const answers = new WeakMap<object, boolean>();
// pg's native client cannot show its BackendKeyData: one answer per place it connects to, from a check connection.
const nativeTargets = new Map<string, Promise<boolean>>();

const logger = new Logger('TxLock');

/**
 * True when `client` talks straight to the PostgreSQL backend it was opened on. Every new connection is told its
 * backend's process id (BackendKeyData, pg's `client.processID`); a pooler that hands statements to server
 * connections of its own (PgBouncer in any pool mode, pgcat, Odyssey, Supavisor) gives the client a key of its own
 * instead, which is not the pid `pg_backend_pid()` reports. So the two agree on a direct connection (and through
 * TCP-level proxies, which pass the key on untouched) and, barring a one-in-four-billion coincidence, never behind
 * such a pooler, whichever server connection it happens to pick. `backendPid` asks the server, once per client.
 *
 * pg's native client (TypeORM uses it whenever the `pg-native` package can be loaded) keeps BackendKeyData inside
 * libpq, whose Node binding does not expose it (no PQbackendPID). For such a client the same comparison is made on a
 * short-lived connection of pg's JavaScript client opened with the same parameters (host, port, database, user,
 * password, ssl), once per target and process: it goes the same way to the same server, so it meets the same
 * pooler, if any. A check connection that fails answers false (logged, not remembered: the next call tries again).
 */
export async function isDirectConnection(client: object, backendPid: () => Promise<number>): Promise<boolean> {
  const known = answers.get(client);
  if (known !== undefined) return known;
  // pg keeps BackendKeyData's process id as `processID` (not in @types/pg).
  const { processID } = client as { processID?: unknown };
  let direct: boolean | undefined;
  if (typeof processID === 'number') direct = processID === (await backendPid());
  else if (isNativeClient(client)) direct = await nativeTargetIsDirect(client.connectionParameters);
  else direct = false;
  if (direct === undefined) return false;
  answers.set(client, direct);
  return direct;
}

/** What pg's native client keeps of its configuration (pg's ConnectionParameters); the password is not enumerable. */
interface NativeConnectionParameters {
  host?: string;
  port?: number;
  database?: string;
  user?: string;
  password?: unknown;
  ssl?: unknown;
  options?: string;
  connect_timeout?: number | string;
  nativeConnectionString?: string;
}

// pg's native client: its libpq handle sits on `native` (pg-native), its parameters on `connectionParameters`.
function isNativeClient(client: object): client is { native: object; connectionParameters: NativeConnectionParameters } {
  const candidate = client as { native?: unknown; connectionParameters?: unknown };
  return typeof candidate.native === 'object' && candidate.native !== null && typeof candidate.connectionParameters === 'object';
}

// Undefined when the check connection failed.
function nativeTargetIsDirect(parameters: NativeConnectionParameters): Promise<boolean | undefined> {
  // A libpq connection string given as is (pg's `nativeConnectionString`) decides the target: it is the key.
  const target = parameters.nativeConnectionString ?? JSON.stringify([parameters.host, parameters.port, parameters.database, parameters.user]);
  let answer = nativeTargets.get(target);
  if (!answer) {
    answer = checkWithJavaScriptClient(parameters);
    nativeTargets.set(target, answer);
    answer.catch((error: unknown) => {
      nativeTargets.delete(target);
      logger.warn(
        `pg's native client (pg-native) does not show a connection's BackendKeyData, and the check connection of pg's ` +
          `JavaScript client to ${parameters.host ?? 'the default host'}:${parameters.port ?? ''} failed (${error instanceof Error ? error.message : String(error)}), ` +
          `so the path to PostgreSQL is treated as going through a pooler: session-scope locks are refused.`,
      );
    });
  }
  return answer.catch(() => undefined);
}

async function checkWithJavaScriptClient(parameters: NativeConnectionParameters): Promise<boolean> {
  if (parameters.nativeConnectionString !== undefined) {
    throw new Error('the connection is configured with a libpq connection string (nativeConnectionString), which pg\'s JavaScript client cannot read');
  }
  // Loaded only here: pg is a peer dependency, and an app on pg's JavaScript client never needs this.
  const { default: pg } = await import('pg');
  const timeoutSeconds = Number(parameters.connect_timeout);
  const client = new pg.Client({
    host: parameters.host,
    port: parameters.port,
    database: parameters.database,
    user: parameters.user,
    password: parameters.password as string | undefined,
    ssl: parameters.ssl as boolean | undefined,
    options: parameters.options,
    connectionTimeoutMillis: timeoutSeconds > 0 ? timeoutSeconds * 1000 : 10_000,
    application_name: 'nestjs-txlock connection path check',
  });
  client.on('error', () => undefined); // a server gone while we ask: the query below rejects
  try {
    await client.connect();
    const { rows } = await client.query<{ pid: number }>(serverSql.backendPid);
    const { processID } = client as unknown as { processID?: unknown };
    return typeof processID === 'number' && processID === Number(rows[0]?.pid);
  } finally {
    await client.end().catch(() => undefined);
  }
}
