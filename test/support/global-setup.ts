import { execFile } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';

/**
 * Once per `npm test`: compiles the scripts that tests run as separate OS processes (test/**\/*.worker.ts,
 * with lib/ and test/support/, into .build/), then picks the server: DATABASE_URL, or an embedded
 * PostgreSQL started here on a free port in a temp directory. Test files read the server from
 * TXLOCK_TEST_ADMIN_URL and each creates its own database on it.
 * (Jest loads this file without its module mapper, so it uses the compiled helpers in .build/.)
 */
export default async function globalSetup(): Promise<void> {
  // Type errors do not stop the emit and are `npm run typecheck`'s to report; a worker that cannot run fails its test.
  await promisify(execFile)('npx', ['tsc', '-p', 'test/tsconfig.workers.json'], { cwd: process.cwd() }).catch(() => undefined);
  let adminUrl = process.env.DATABASE_URL;
  if (adminUrl) {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    await client.end();
    console.log(`\n[txlock tests] using the DATABASE_URL server`);
  } else {
    const helper = pathToFileURL(join(process.cwd(), '.build/test/support/embedded-postgres.js')).href;
    const { startEmbeddedPostgres } = (await import(helper)) as typeof import('./embedded-postgres.js');
    const server = await startEmbeddedPostgres(await mkdtemp(join(tmpdir(), 'txlock-pg-')));
    (globalThis as { txlockEmbedded?: unknown }).txlockEmbedded = server;
    adminUrl = server.url;
    console.log(`\n[txlock tests] embedded PostgreSQL on port ${server.port}`);
  }
  process.env.TXLOCK_TEST_ADMIN_URL = adminUrl;
}
