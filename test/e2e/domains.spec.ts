import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { useRollbackPerTest } from 'nestjs-txlock/testing';
import { raceOk } from '../support/concurrency.js';
import { useSample } from './support/sample-app.js';

const WORKERS = 8;
const NAMES = 800;
const BATCH = 200;

/** Worker w's batch: 200 names starting at w × 100, so every name is in two batches. */
const batch = (prefix: string, worker: number): string[] =>
  Array.from({ length: BATCH }, (_, i) => `${prefix}-${(worker * (NAMES / WORKERS) + i) % NAMES}.test`);

describe('sample: domains import from concurrent workers', () => {
  const sample = useSample();
  const stored = async (prefix: string): Promise<{ n: number; distinct: number }> =>
    (await sample.app.get(DataSource).query('SELECT count(*)::int AS n, count(DISTINCT name)::int AS distinct FROM domains WHERE name LIKE $1', [`${prefix}-%`]))[0];

  describe('one request at a time (each test rolled back: nestjs-txlock/testing)', () => {
    useRollbackPerTest(() => sample.app);

    it('imports a batch and reports created vs existing; 400 for a bad body', async () => {
      await request(sample.url).post('/domains/import').send({ names: ['a.test', 'b.test'] }).expect(200, { created: 2, existing: 0 });
      await request(sample.url).post('/domains/import').send({ names: ['b.test', 'c.test', 'c.test'] }).expect(200, { created: 1, existing: 1 });
      await request(sample.url).post('/domains/import').send({ names: 'a.test' }).expect(400);
      await request(sample.url).post('/domains/import').send({ names: [''] }).expect(400);
      expect((await request(sample.url).get('/domains/count').expect(200)).body.count).toBe(3);
    });
  });

  describe('races (real concurrency on this file\'s own database, committed)', () => {
    for (const [route, prefix] of [['import', 'bulk'], ['import/table-lock', 'locked']] as const) {
      it(`${WORKERS} workers with overlapping batches on /domains/${route}: no worker fails, every name once`, async () => {
        const results = await raceOk(WORKERS, (w) => request(sample.url).post(`/domains/${route}`).send({ names: batch(prefix, w) }));
        expect(results.map((r) => r.status)).toEqual(Array(WORKERS).fill(200));
        expect(results.reduce((sum, r) => sum + r.body.created, 0)).toBe(NAMES);
        expect(await stored(prefix)).toEqual({ n: NAMES, distinct: NAMES });
      });
    }

    it('control: the naive workers die on duplicate keys', async () => {
      // A race is likely, not certain, on a busy machine: a few rounds make the control deterministic enough.
      let died = 0;
      for (let round = 0; round < 5 && died === 0; round++) {
        const results = await raceOk(WORKERS, (w) => request(sample.url).post('/domains/import/unsafe').send({ names: batch(`naive${round}`, w) }));
        died = results.filter((r) => r.status === 500).length;
      }
      expect(died).toBeGreaterThan(0);
    });
  });
});
