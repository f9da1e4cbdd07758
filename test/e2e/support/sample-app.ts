import { afterAll, beforeAll } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { createSampleApp } from '../../../sample/src/bootstrap.js';
import type { SampleOptions } from '../../../sample/src/sample-options.js';
import { createTestDatabase, type TestDatabase } from '../../support/database.js';

/** A running sample app and its base URL (for supertest). */
export interface RunningSample {
  app: INestApplication;
  url: string;
}

type Settings = Partial<Omit<SampleOptions, 'databaseUrl' | 'replica'>>;

/**
 * For the whole describe block: a test database and one sample app on it per replica name, started one
 * after the other (the first creates the tables), closed and dropped after the block. The array fills
 * in beforeAll. Keep poolSize × replicas under ~40 connections per file (two files run at once).
 */
export function useSampleReplicas(names: readonly string[], settings: Settings = {}): RunningSample[] {
  const replicas: RunningSample[] = [];
  let db: TestDatabase | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    for (const replica of names) replicas.push(await startSample({ databaseUrl: db.url, replica, poolSize: 20, quotaPerDay: 100, ...settings }));
  });
  afterAll(async () => {
    await Promise.all(replicas.map((sample) => sample.app.close()));
    await db?.drop();
  });
  return replicas;
}

/** useSampleReplicas with one app; read `url`/`app` inside tests (they exist once beforeAll ran). */
export function useSample(settings: Settings = {}): RunningSample {
  const replicas = useSampleReplicas(['e2e'], settings);
  return {
    get app() {
      return replicas[0]!.app;
    },
    get url() {
      return replicas[0]!.url;
    },
  };
}

/** The sample app listening on a free port, built exactly as `npm start` builds it. */
async function startSample(options: SampleOptions): Promise<RunningSample> {
  // The naive twins fail on purpose (500s): their stack traces would only bury real failures.
  const app = await createSampleApp(options, ['warn']);
  await app.listen(0, '127.0.0.1');
  return { app, url: await app.getUrl() };
}
