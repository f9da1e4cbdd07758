import { join } from 'node:path';
import { openDevDatabase } from '../support/dev-database.js';
import { createSampleApp } from './bootstrap.js';
import { sampleOptionsFromEnv } from './sample-options.js';
import { startConsoleTelemetry } from './telemetry.js';

/**
 * `npm start`: the sample on DATABASE_URL, or on an embedded PostgreSQL kept in .data/postgres.
 * Environment: PORT (3000; 0 = any free port), HOST (127.0.0.1), POOL_SIZE, REPLICA, QUOTA_PER_DAY, OTEL
 * (1 = print the library's OpenTelemetry spans and metrics to the console).
 */
async function main(): Promise<void> {
  const stopTelemetry = process.env.OTEL === '1' ? startConsoleTelemetry() : undefined;
  const database = await openDevDatabase({ dataDir: join(process.cwd(), '.data', 'postgres') });
  // Warnings and errors only, so the address and the examples below stay on screen.
  const app = await createSampleApp(sampleOptionsFromEnv(database.url), ['warn', 'error']);
  await app.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? '127.0.0.1');
  const url = (await app.getUrl()).replace('[::1]', 'localhost');
  // The demo reads this line to find a replica's port: keep its shape.
  console.log(`\nnestjs-txlock sample listening on ${url} (${database.description})`);
  if (!process.env.SAMPLE_QUIET) console.log(examples(url));

  const stop = async (): Promise<void> => {
    await app.close();
    await stopTelemetry?.();
    await database.close();
    process.exit(0);
  };
  process.once('SIGINT', () => void stop());
  process.once('SIGTERM', () => void stop());
}

function examples(url: string): string {
  return `
Try:
  curl -s -X POST ${url}/posts -H 'content-type: application/json' -d '{"title":"hello"}'
  curl -s -X PUT ${url}/posts/1/likes/alice            # like, idempotent per user
  curl -s ${url}/posts/1                               # likesCount next to the rows it counts
  curl -s -X POST ${url}/sessions/browser-42           # get-or-create one session per client key
  curl -s -X POST ${url}/users -H 'content-type: application/json' -d '{"name":"ada"}'
  curl -s -X POST ${url}/users/1/points                # award points under an advisory lock
  curl -s -X POST ${url}/quotas/alice/requests         # 429 after the daily quota
Then run \`npm run demo\` to see each naive twin lose data under concurrency and these endpoints lose none.
`;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
