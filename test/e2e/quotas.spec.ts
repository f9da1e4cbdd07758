import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { useRollbackPerTest } from 'nestjs-txlock/testing';
import { raceOk } from '../support/concurrency.js';
import { useSample } from './support/sample-app.js';

describe('sample: daily quotas', () => {
  const sample = useSample({ quotaPerDay: 100 });

  describe('one request at a time (each test rolled back: nestjs-txlock/testing)', () => {
    useRollbackPerTest(() => sample.app);

    it('counts each request and shows the usage', async () => {
      await request(sample.url).get('/quotas/fresh').expect(200, { used: 0, limit: 100 });
      const first = await request(sample.url).post('/quotas/fresh/requests').expect(200);
      expect(first.body).toMatchObject({ used: 1, limit: 100 });
      await request(sample.url).get('/quotas/fresh').expect(200, { used: 1, limit: 100 });
    });
  });

  describe('races (real concurrency on this file\'s own database, committed)', () => {
    it('300 concurrent requests on a quota of 100: exactly 100 accepted, 200 refused with 429 and a JSON body', async () => {
      const results = await raceOk(300, () => request(sample.url).post('/quotas/busy/requests'));
      expect(results.filter((r) => r.status === 200)).toHaveLength(100);
      const refused = results.filter((r) => r.status === 429);
      expect(refused).toHaveLength(200);
      expect(refused[0]!.body).toMatchObject({ statusCode: 429, error: 'QuotaExceeded', limit: 100 });
      expect(new Set(results.filter((r) => r.status === 200).map((r) => r.body.used))).toEqual(new Set(Array.from({ length: 100 }, (_, i) => i + 1)));
      await request(sample.url).get('/quotas/busy').expect(200, { used: 100, limit: 100 });
    });

    it('a user id the counter key cannot hold is a 400 with a JSON body', async () => {
      const response = await request(sample.url).post(`/quotas/${'x'.repeat(600)}/requests`).expect(400);
      expect(response.body).toMatchObject({ statusCode: 400, error: 'InvalidCounterKeyError' });
    });

    it('control: the read-compare-write quota lets more than 100 through', async () => {
      const results = await raceOk(300, () => request(sample.url).post('/quotas/leaky/requests/unsafe'));
      expect(results.filter((r) => r.status === 200).length).toBeGreaterThan(100);
    });
  });
});
