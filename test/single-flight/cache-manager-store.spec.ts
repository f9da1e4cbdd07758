import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CACHE_MANAGER, CacheModule } from '@nestjs/cache-manager';
import type { INestApplication } from '@nestjs/common';
import type { Cache } from 'cache-manager';
import { SingleFlightService } from '../../lib/index.js';
import { concurrently } from '../support/concurrency.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { createTestApp } from '../support/nest-app.js';

describe("SingleFlightService with store: 'cache-manager'", () => {
  let db: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    db = await createTestDatabase();
    app = await createTestApp({
      url: db.url,
      imports: [CacheModule.register({ isGlobal: true })],
      txlock: { singleFlight: { store: 'cache-manager' } },
      poolSize: 4,
    });
  });
  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it("keeps values in the app's CACHE_MANAGER, computes once, and shares the value until it expires", async () => {
    const flights = app.get(SingleFlightService);
    let runs = 0;
    const compute = async () => ({ run: ++runs });
    const outcomes = await concurrently(20, () => flights.run('cached', compute, { ttlMs: 60_000 }));
    expect(outcomes.every((o) => o.ok && (o.value as { run: number }).run === 1)).toBe(true);
    expect(await flights.run('cached', compute, { ttlMs: 60_000 })).toEqual({ run: 1 });
    const cache = app.get<Cache>(CACHE_MANAGER);
    expect(await cache.get('txlock:single-flight:["","cached"]')).toBe('{"run":1}');
    // No table is needed: the postgres store was never used.
    expect(runs).toBe(1);
  });
});
