import 'reflect-metadata';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedPostgres, type EmbeddedServer } from '../sample/support/embedded-postgres.js';
import { createTestDatabase } from '../test/support/database.js';
import { FULL, QUICK, formatTable, withRatios, type BenchResult } from './harness.js';
import { RAW_LOCKED, advisoryLockScenario } from './scenarios/advisory-lock.js';
import { RAW_UPSERT, counterScenario } from './scenarios/counters.js';
import { NAIVE_GET_OR_CREATE, getOrCreateScenario } from './scenarios/get-or-create.js';
import { HAND_WRITTEN, transactionScenario } from './scenarios/transactions.js';

/**
 * `npm run bench [-- --quick]`: every scenario against its baselines, measured side by side in this one run,
 * on an embedded PostgreSQL (or DATABASE_URL). Prints a table and writes bench/results/latest.json.
 */
async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  // --only=1,3 runs those scenarios (numbered as in the table).
  const only = process.argv.find((arg) => arg.startsWith('--only='))?.slice('--only='.length).split(',');
  const settings = quick ? QUICK : FULL;
  let server: EmbeddedServer | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    server = await startEmbeddedPostgres(await mkdtemp(join(tmpdir(), 'txlock-bench-')));
    adminUrl = server.url;
  }
  process.env.TXLOCK_TEST_ADMIN_URL = adminUrl;
  const database = await createTestDatabase();
  try {
    const results: BenchResult[] = [];
    const scenarios = [transactionScenario, advisoryLockScenario, counterScenario, getOrCreateScenario];
    for (const [index, scenario] of scenarios.entries()) {
      if (!only || only.includes(String(index + 1))) results.push(...(await scenario(database.url, settings)));
    }
    const baselines: Record<string, string> = { '1': HAND_WRITTEN, '2': RAW_LOCKED, '3': RAW_UPSERT, '4': NAIVE_GET_OR_CREATE };
    const table = withRatios(results, (r) => baselines[r.scenario.charAt(0)]);
    const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${server ? 'embedded PostgreSQL 18' : 'DATABASE_URL server'}`;
    console.log(`\nnestjs-txlock bench${quick ? ' (--quick: smoke run, figures not meaningful)' : ''} — ${machine}\n`);
    console.log(formatTable(table));
    const resultsDir = join(process.cwd(), 'bench', 'results');
    await mkdir(resultsDir, { recursive: true });
    await writeFile(join(resultsDir, 'latest.json'), `${JSON.stringify({ date: new Date().toISOString(), quick, machine, results: table }, null, 2)}\n`);
  } finally {
    await database.drop();
    await server?.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
