import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { race, useRollbackPerTest } from 'nestjs-txlock/testing';
import { raceOk } from '../support/concurrency.js';
import { useSample } from './support/sample-app.js';

describe('sample: sessions get-or-create', () => {
  const sample = useSample();
  const rows = async (table: string, key: string): Promise<number> =>
    (await sample.app.get(DataSource).query(`SELECT count(*)::int AS n FROM ${table} WHERE client_key = $1`, [key]))[0].n;

  describe('one request at a time (each test rolled back: nestjs-txlock/testing)', () => {
    useRollbackPerTest(() => sample.app);

    it('creates once, then returns the same session', async () => {
      const first = await request(sample.url).post('/sessions/k1').expect(200);
      const second = await request(sample.url).post('/sessions/k1').expect(200);
      expect(first.body.created).toBe(true);
      expect(second.body).toEqual({ id: first.body.id, created: false });
    });
  });

  describe('races (real concurrency on this file\'s own database, committed)', () => {
    it('100 concurrent get-or-create of one key: one row, one created, one id for all', async () => {
      const results = await raceOk(100, () => request(sample.url).post('/sessions/hot'));
      expect(results.every((r) => r.status === 200)).toBe(true);
      expect(new Set(results.map((r) => r.body.id)).size).toBe(1);
      expect(results.filter((r) => r.body.created)).toHaveLength(1);
      expect(await rows('sessions', 'hot')).toBe(1);
    });

    it('control: findOne-then-save creates duplicates under the same load', async () => {
      await race(100, () => request(sample.url).post('/sessions/hot/unsafe'));
      expect(await rows('sessions_without_unique', 'hot')).toBeGreaterThan(1);
    });
  });
});
