import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedServer } from '../support/embedded-postgres.js';
import { spawnWorker } from '../support/processes.js';
import type { LoadOutcome } from './counter-load.worker.js';
import { reportFaults } from './report.js';

// This test restarts its server, so it always runs on an embedded PostgreSQL of its own (even when DATABASE_URL is set).
// Calls per loader at least; each goes on until it has seen the server go and come back (counter-load.worker.ts): a
// fixed count alone, however large, was done before the restart on a fast enough machine (400 once prepared statements
// came, 1,500 once increments lost their async frames).
const CALLS = 1_500;
const LOADERS = 4;

describe('PostgreSQL stopped and restarted under counter load from 4 processes', () => {
  let server: EmbeddedServer;
  let url: string;

  beforeAll(async () => {
    server = await startEmbeddedPostgres(await mkdtemp(join(tmpdir(), 'txlock-restart-')));
    url = server.url;
  });
  afterAll(() => server?.stop());

  const count = async (): Promise<number> => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT coalesce((SELECT value FROM txlock_counters WHERE key = 'through-restart'), 0)::int AS n`);
      return rows[0].n;
    } catch {
      return 0; // the table does not exist yet
    } finally {
      await client.end();
    }
  };

  it('loses no increment that returned success, counts none twice, and fails the others with ConnectionLostError', async () => {
    const workers = Array.from({ length: LOADERS }, (_, i) => spawnWorker('test/reliability/counter-load.worker.ts', url, { calls: CALLS, callers: 8 }, i));
    // Restart only once every loader has booted and the load is well under way.
    while (!workers.every((w) => w.stdout().includes('ready')) || (await count()) < 200) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await server.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await server.resume();
    const outcomes = (await Promise.all(workers.map((w) => w.result))) as LoadOutcome[];

    const values = outcomes.flatMap((o) => o.values);
    const failed = outcomes.reduce((sum, o) => sum + o.failed, 0);
    const tried = outcomes.reduce((sum, o) => sum + o.tried, 0);
    const final = await count();
    expect(outcomes.map((o) => o.recovered)).toEqual(outcomes.map(() => true)); // each loader saw the server go and come back
    expect(tried).toBeGreaterThanOrEqual(LOADERS * CALLS);
    expect(values.length + failed).toBe(tried);
    expect(new Set(values).size).toBe(values.length); // no value handed out twice
    expect(Math.max(...values)).toBeLessThanOrEqual(final); // every success is inside the final count
    expect(final).toBeGreaterThanOrEqual(values.length); // none lost
    // A call whose COMMIT reached the server but whose answer was lost in the shutdown counts without
    // reporting success: at most the failed calls can be such ambiguous ones.
    expect(final - values.length).toBeLessThanOrEqual(failed);
    expect(failed).toBeGreaterThan(0); // the restart really happened under load
    // One named, retryable error for "the connection was lost", whatever the driver, pool or socket said.
    const errors: Record<string, number> = {};
    for (const outcome of outcomes) for (const [name, n] of Object.entries(outcome.errors)) errors[name] = (errors[name] ?? 0) + n;
    expect(Object.keys(errors)).toEqual(['ConnectionLostError']);
    reportFaults('server restart under counter load', { tried, succeeded: values.length, failed, lost: Math.max(0, values.length - final) });
  });
});
