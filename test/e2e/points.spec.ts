import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { LockService } from 'nestjs-txlock';
import { POINTS_PER_AWARD } from '../../sample/src/points/calculate-points.js';
import { POINTS_LOCK_TIMEOUT_MS, pointsLockKey } from '../../sample/src/points/points.service.js';
import { race, useRollbackPerTest } from 'nestjs-txlock/testing';
import { raceOk } from '../support/concurrency.js';
import { useSample } from './support/sample-app.js';

const AWARDS = 100;

describe('sample: points (seed 003)', () => {
  const sample = useSample();
  const createUser = async (): Promise<number> => (await request(sample.url).post('/users').send({ name: 'ada' }).expect(201)).body.id;
  const points = async (id: number): Promise<number> => (await request(sample.url).get(`/users/${id}`).expect(200)).body.points;
  const awardAll = (id: number, suffix: string) => race(AWARDS, () => request(sample.url).post(`/users/${id}/points${suffix}`));

  describe('one request at a time (each test rolled back: nestjs-txlock/testing)', () => {
    useRollbackPerTest(() => sample.app);

    it('creates and shows users; 400 without a name, 404 for a missing user on every route', async () => {
      const id = await createUser();
      expect(await points(id)).toBe(0);
      await request(sample.url).post('/users').send({ name: 3 }).expect(400);
      await request(sample.url).get('/users/999999').expect(404);
      await request(sample.url).post('/users/999999/points').expect(404);
      await request(sample.url).post('/users/999999/points/increment').expect(404);
    });
  });

  describe('races (real concurrency on this file\'s own database, committed)', () => {
    it(`${AWARDS} concurrent awards under @AdvisoryLock: every award counted`, async () => {
      const id = await createUser();
      const results = await raceOk(AWARDS, () => request(sample.url).post(`/users/${id}/points`));
      expect(results.map((r) => r.status)).toEqual(Array(AWARDS).fill(200));
      expect(await points(id)).toBe(AWARDS * POINTS_PER_AWARD);
      // Serialised: every award saw the previous one, so the totals handed back are all different.
      expect(new Set(results.map((r) => r.body.points)).size).toBe(AWARDS);
    });

    it(`${AWARDS} concurrent F()-style increments: every award counted, each caller gets a distinct total`, async () => {
      const id = await createUser();
      const results = await raceOk(AWARDS, () => request(sample.url).post(`/users/${id}/points/increment`));
      expect(results.map((r) => r.status)).toEqual(Array(AWARDS).fill(200));
      expect(await points(id)).toBe(AWARDS * POINTS_PER_AWARD);
      expect(new Set(results.map((r) => r.body.points)).size).toBe(AWARDS);
    });

    it('a user whose lock is held elsewhere past timeoutMs: 423 Locked with a JSON body, nothing awarded', async () => {
      const id = await createUser();
      const started = Date.now();
      // Another "replica" holds this user's lock for as long as the request takes.
      const response = await sample.app.get(LockService).withAdvisoryLock(pointsLockKey(id), () => request(sample.url).post(`/users/${id}/points`));
      expect(response.status).toBe(423);
      expect(response.body).toMatchObject({ statusCode: 423, error: 'Locked', reason: 'timeout' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(POINTS_LOCK_TIMEOUT_MS - 50);
      expect(await points(id)).toBe(0);
      // Other users' awards never waited for that lock.
      await request(sample.url).post(`/users/${await createUser()}/points`).expect(200);
    });

    it('control: read, add in code, save loses awards', async () => {
      const id = await createUser();
      await awardAll(id, '/unsafe');
      expect(await points(id)).toBeLessThan(AWARDS * POINTS_PER_AWARD);
    });
  });
});
