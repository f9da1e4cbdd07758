import pg from 'pg';
import { DataSource, type DataSourceOptions, type MixedList, type EntitySchema, type EntitySubscriberInterface } from 'typeorm';
import { createTestDatabase as createKitTestDatabase, type TestDatabase } from '../../lib/testing/test-postgres.js';

/** The server chosen by global-setup (DATABASE_URL, or the embedded PostgreSQL). */
export function adminUrl(): string {
  const url = process.env.TXLOCK_TEST_ADMIN_URL ?? process.env.DATABASE_URL;
  if (!url) throw new Error('No test server: run the tests with `npm test` (jest global-setup starts one).');
  return url;
}

export type { TestDatabase };

/**
 * The pooler the suite runs through, when TXLOCK_TEST_POOLER_URL is set (.ci/pgbouncer.sh sets it to a PgBouncer in
 * transaction mode in front of the DATABASE_URL server): test databases are then reached through it.
 */
export function poolerUrl(): string | undefined {
  return process.env.TXLOCK_TEST_POOLER_URL || undefined;
}

/**
 * A database of its own for one test file, so files run in parallel without seeing each other's rows (the testing
 * kit's). Behind a pooler (poolerUrl()), CREATE/DROP DATABASE still go straight to the server and the returned URL
 * goes through the pooler, so the app, its workers and the test's own clients all reach the database through it.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const db = await createKitTestDatabase(adminUrl());
  const isolation = defaultIsolation();
  if (isolation) await setDatabaseDefaults(db.name, { default_transaction_isolation: isolation });
  const pooler = poolerUrl();
  if (!pooler) return db;
  const url = new URL(db.url);
  const via = new URL(pooler);
  [url.host, url.username, url.password] = [via.host, via.username, via.password];
  return { ...db, url: url.toString() };
}

const ISOLATION_LEVELS = ['read committed', 'repeatable read', 'serializable'];

/**
 * The default isolation every test database gets when TXLOCK_TEST_DEFAULT_ISOLATION is set (.ci/serializable.sh sets
 * it to `serializable`): `ALTER DATABASE ... SET default_transaction_isolation`, as a DBA would, so that every
 * statement sent without an isolation of its own, the library's included, runs at it.
 */
export function defaultIsolation(): string | undefined {
  const isolation = process.env.TXLOCK_TEST_DEFAULT_ISOLATION?.toLowerCase() || undefined;
  if (isolation !== undefined && !ISOLATION_LEVELS.includes(isolation)) {
    throw new Error(`TXLOCK_TEST_DEFAULT_ISOLATION must be one of ${ISOLATION_LEVELS.join(', ')}; got "${isolation}"`);
  }
  return isolation;
}

/**
 * Sets server settings as defaults of the database `name` (`ALTER DATABASE ... SET`), as a DBA or a platform does:
 * they apply to every connection opened after this. Names and values are the caller's constants.
 */
export async function setDatabaseDefaults(name: string, settings: Record<string, string | number>): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    for (const [setting, value] of Object.entries(settings)) {
      if (!/^[a-z_]+$/.test(setting)) throw new Error(`not a setting name: ${setting}`);
      await client.query(`ALTER DATABASE "${name}" SET ${setting} = '${String(value).replace(/'/g, "''")}'`);
    }
  } finally {
    await client.end();
  }
}

/**
 * The URL of the database `url` names, straight on the server, never through the pooler (poolerUrl()): for a
 * client whose session state must stay on its own server connection, such as a session-level lock holder.
 */
export function directUrl(url: string): string {
  const direct = new URL(url);
  const server = new URL(adminUrl());
  [direct.host, direct.username, direct.password] = [server.host, server.username, server.password];
  return direct.toString();
}

/** Options of openDataSource(). */
export interface TestDataSourceOptions {
  entities?: MixedList<Function | string | EntitySchema>;
  subscribers?: MixedList<Function | string> | EntitySubscriberInterface[];
  /** Pool size (pg `max`). Default 10. */
  poolSize?: number;
  extra?: Record<string, unknown>;
}

/** An initialised PostgreSQL DataSource on `url`, with entity tables synchronised. */
export async function openDataSource(url: string, options: TestDataSourceOptions = {}): Promise<DataSource> {
  const dataSource = new DataSource({
    type: 'postgres',
    url,
    entities: options.entities ?? [],
    subscribers: options.subscribers as DataSourceOptions['subscribers'],
    synchronize: true,
    extra: { max: options.poolSize ?? 10, ...options.extra },
  });
  return dataSource.initialize();
}

/** The pg Pool behind a DataSource (TypeORM's PostgresDriver keeps it as `master`). */
export function poolOf(dataSource: DataSource): pg.Pool {
  return (dataSource.driver as unknown as { master: pg.Pool }).master;
}

/** Resolves once every pooled connection is idle again: proof that no query runner leaked. */
export async function expectAllReleased(dataSource: DataSource, timeoutMs = 5_000): Promise<void> {
  const pool = poolOf(dataSource);
  const deadline = Date.now() + timeoutMs;
  while (pool.totalCount !== pool.idleCount || pool.waitingCount > 0) {
    if (Date.now() > deadline) {
      throw new Error(`connections still checked out: total ${pool.totalCount}, idle ${pool.idleCount}, waiting ${pool.waitingCount}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
