import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase, startEmbeddedPostgres } from 'nestjs-txlock/testing';

/** The database `npm start` or `npm run demo` runs on, and how to let go of it. */
export interface DevDatabase {
  url: string;
  /** Where it is, for the start-up message. */
  description: string;
  close(): Promise<void>;
}

/** Options of openDevDatabase(). */
export interface DevDatabaseOptions {
  /**
   * Where the embedded PostgreSQL keeps its data, kept between runs (npm start). Default: a new temp
   * directory, deleted on close (the demo).
   */
  dataDir?: string;
  /**
   * On DATABASE_URL, work in a new empty database that is dropped on close, so existing tables are
   * never touched (the demo). Default false: use DATABASE_URL as given.
   */
  scratch?: boolean;
}

/** DATABASE_URL when set; otherwise an embedded PostgreSQL, so nothing needs to be installed. */
export async function openDevDatabase(options: DevDatabaseOptions = {}): Promise<DevDatabase> {
  const url = process.env.DATABASE_URL;
  if (url) return options.scratch ? createScratchDatabase(url) : { url, description: 'DATABASE_URL', close: async () => undefined };
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'txlock-sample-')));
  const server = await startEmbeddedPostgres(dataDir, { persistent: options.dataDir !== undefined });
  return { url: server.url, description: `embedded PostgreSQL on port ${server.port}, data in ${dataDir}`, close: () => server.stop() };
}

// The testing kit's database per test file does exactly this: a fresh database on the server, dropped on close.
async function createScratchDatabase(serverUrl: string): Promise<DevDatabase> {
  const database = await createTestDatabase(serverUrl);
  return { url: database.url, description: `scratch database ${database.name} on DATABASE_URL`, close: database.drop };
}
