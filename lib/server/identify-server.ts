import { Logger } from '@nestjs/common';
import type { PoolClient } from 'pg';
import type { DataSource } from 'typeorm';
import { ConnectionLostError, UnsupportedServerError } from '../errors.js';
import { isConnectionLoss } from '../transaction/connection-errors.js';
import { createOwnQueryRunner } from '../transaction/data-source-routing.js';
import { assertAdvisoryLocksWork, classifyServer, type ServerIdentity } from './server-identity.js';
import { isDirectConnection } from './connection-path.js';
import { serverSql } from './server.sql.js';

/** ServerIdentity plus what the bootstrap connection showed of the path to the server. */
export interface IdentifiedServer extends ServerIdentity {
  /**
   * True when a pooler or proxy with server connections of its own sits between the app and PostgreSQL (PgBouncer
   * in any pool mode, pgcat, Supavisor...): the connection's BackendKeyData is not its backend's pid.
   */
  proxied: boolean;
  /** What default_transaction_isolation says for this connection's database and role ('read committed'...). */
  defaultIsolation: string;
  /** What idle_in_transaction_session_timeout says for this connection's database and role, in ms (0: off). */
  idleInTransactionMs: number;
}

interface IdentifyRow {
  version: string;
  version_num: string;
  pid: number;
  locked: unknown;
  visible: unknown;
  default_isolation: string;
  idle_in_transaction_ms: string | number;
}

const defaultLogger = new Logger('TxLock');

/**
 * Identifies the server behind `dataSource` in one query on one pooled connection (version(), server_version_num,
 * and a probe that a shared advisory lock really lands in pg_locks), at bootstrap. Throws UnsupportedServerError
 * for engines that only look like PostgreSQL (CockroachDB, YugabyteDB, Redshift, Greenplum, Materialize,
 * QuestDB, CrateDB, Spanner...), for PostgreSQL older than 13, and for any server whose advisory locks fail the
 * probe; logs a warning for PostgreSQL newer than the newest tested (18). A lost connection is ConnectionLostError.
 */
export async function identifyServer(dataSource: DataSource, logger: Pick<Logger, 'warn'> = defaultLogger): Promise<IdentifiedServer> {
  const runner = createOwnQueryRunner(dataSource);
  let row: IdentifyRow;
  let proxied: boolean;
  try {
    const client = (await runner.connect()) as PoolClient;
    row = await identifyOn(client);
    proxied = !(await isDirectConnection(client, async () => row.pid));
  } catch (error) {
    throw isConnectionLoss(error) && !(error instanceof ConnectionLostError) ? new ConnectionLostError(error) : error;
  } finally {
    await runner.release();
  }
  const identity = classifyServer(row.version, row.version_num);
  assertAdvisoryLocksWork(identity, row);
  if (identity.warning) logger.warn(identity.warning);
  return { ...identity, proxied, defaultIsolation: row.default_isolation, idleInTransactionMs: Number(row.idle_in_transaction_ms) };
}

// The identification row; when that query fails, version() alone names what answered (a look-alike or an old
// PostgreSQL is refused by classifyServer with its own reason), and otherwise the failure itself is the reason.
async function identifyOn(client: PoolClient): Promise<IdentifyRow> {
  let failure: unknown;
  try {
    const [row] = (await client.query<IdentifyRow>(serverSql.identify)).rows;
    if (row) return row;
    failure = new Error('the identification query returned no row');
  } catch (error) {
    if (isConnectionLoss(error)) throw error;
    failure = error;
  }
  const reason = failure instanceof Error ? failure.message : String(failure);
  let version: string;
  try {
    version = String((await client.query<{ version: unknown }>(serverSql.version)).rows[0]?.version ?? '');
  } catch (error) {
    if (isConnectionLoss(error)) throw error;
    throw new UnsupportedServerError('unknown', `it answers neither the identification query (${reason}) nor SELECT version()`, '', failure);
  }
  const identity = classifyServer(version);
  throw new UnsupportedServerError(`${identity.engine} look-alike`, `the identification query failed on it (${reason})`, version, failure);
}
