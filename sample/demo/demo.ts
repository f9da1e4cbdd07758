import pg from 'pg';
import { openDevDatabase } from '../support/dev-database.js';
import type { DemoContext } from './context.js';
import { DemoClient } from './http.js';
import { startReplicas, type Replica } from './replicas.js';
import { SAFE, type Row } from './row.js';
import { cronScenario } from './scenarios/cron.js';
import { domainsScenario } from './scenarios/domains.js';
import { likesScenario } from './scenarios/likes.js';
import { notificationsScenario } from './scenarios/notifications.js';
import { pointsScenario } from './scenarios/points.js';
import { quotasScenario } from './scenarios/quotas.js';
import { sessionsScenario } from './scenarios/sessions.js';
import { summaryScenario } from './scenarios/summary.js';
import { renderTable } from './table.js';

const REPLICAS = 2;
const SCENARIOS = [likesScenario, notificationsScenario, sessionsScenario, pointsScenario, quotasScenario, domainsScenario, summaryScenario, cronScenario];

/**
 * `npm run demo`: two replicas of the sample on one database (embedded, or a scratch database on
 * DATABASE_URL), each race fired at the naive twin and at the nestjs-txlock endpoint, one table.
 * Exits 1 when any nestjs-txlock row is not exact; the naive rows are expected to be wrong.
 */
async function main(): Promise<number> {
  const started = performance.now();
  const database = await openDevDatabase({ scratch: true });
  const pool = new pg.Pool({ connectionString: database.url, max: 2 });
  let replicas: Replica[] = [];
  try {
    console.log(`nestjs-txlock demo on ${database.description}`);
    replicas = await startReplicas(database.url, REPLICAS);
    console.log(`${REPLICAS} replicas of sample/ (separate OS processes, one database); requests alternate between them.\n`);
    const context: DemoContext = { http: new DemoClient(replicas.map((replica) => replica.url)), db: pool, databaseUrl: database.url };
    const rows: Row[] = [];
    for (const scenario of SCENARIOS) rows.push(...(await scenario(context)));
    console.log(renderTable(rows));
    const wrong = rows.filter((row) => row.path.startsWith(SAFE) && !row.ok);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    if (wrong.length > 0) {
      console.log(`\nFAILED: ${wrong.length} nestjs-txlock row(s) above are wrong (${seconds} s).`);
      return 1;
    }
    console.log(`\nEvery nestjs-txlock row is exact; the naive rows show what the same code does without it (${seconds} s).`);
    return 0;
  } finally {
    await pool.end();
    await Promise.all(replicas.map((replica) => replica.stop()));
    await database.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
