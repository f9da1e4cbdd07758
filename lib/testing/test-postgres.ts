import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from './embedded-postgres.js';

/** A PostgreSQL server to run tests on: its admin URL, and how to let go of it. */
export interface TestPostgres {
  /** A URL with the right to create databases (createTestDatabase() makes one per test file or worker). */
  url: string;
  /** True when this process started the server (embedded); false when it is DATABASE_URL's. */
  embedded: boolean;
  /** Stops an embedded server and deletes its data; does nothing for DATABASE_URL's. */
  stop(): Promise<void>;
}

/**
 * The PostgreSQL server for a test run: DATABASE_URL when it is set, otherwise one started here from the
 * `embedded-postgres` package (an optional peer dependency) on a free port, in a temporary directory, with
 * durability off for speed. No service to install, no docker. Call it once per run (jest's globalSetup).
 *
 * @example
 * // jest.global-setup.ts
 * export default async () => { const server = await startTestPostgres(); process.env.DATABASE_URL = server.url; (globalThis as any).pg = server; };
 */
export async function startTestPostgres(options: { url?: string } = {}): Promise<TestPostgres> {
  const given = options.url ?? process.env.DATABASE_URL;
  if (given) return { url: given, embedded: false, stop: async () => undefined };
  const server = await startEmbeddedPostgres(await mkdtemp(join(tmpdir(), 'txlock-test-pg-')));
  return { url: server.url, embedded: true, stop: () => server.stop() };
}

/** A database of its own, for one test file or jest worker. */
export interface TestDatabase {
  /** The database's name (`txlock_test_` and random hex). */
  name: string;
  /** Its URL: the server's, with this database. */
  url: string;
  /** Drops it (terminating any connection left on it). */
  drop(): Promise<void>;
}

/**
 * Creates a fresh, empty database on the server of `adminUrl` (default DATABASE_URL) and returns its URL, so
 * test files and parallel jest workers never see each other's rows. Drop it after (afterAll).
 */
export async function createTestDatabase(adminUrl: string | undefined = process.env.DATABASE_URL): Promise<TestDatabase> {
  if (!adminUrl) throw new Error('createTestDatabase() needs a server: pass its URL or set DATABASE_URL (startTestPostgres() gives one).');
  const name = `txlock_test_${randomBytes(5).toString('hex')}`;
  await admin(adminUrl, `CREATE DATABASE "${name}"`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { name, url: url.toString(), drop: () => dropDatabase(adminUrl, name) };
}

// pg's Pool.end() resolves once each client was told to end, not once its session has gone: FORCE would terminate such
// a session, whose client then emits the error with no listener left, which crashes the test process. So the drop
// first gives the database's sessions a moment to go (what a pool or a pooler keeps open longer is terminated).
const SESSIONS_GONE_MS = 250;

async function dropDatabase(url: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const startedAt = Date.now(); Date.now() - startedAt < SESSIONS_GONE_MS; ) {
      const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1', [name]);
      if (rows[0]!.n === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await client.end();
  }
}

async function admin(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
