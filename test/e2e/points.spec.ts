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
      // Awards to one user take turns, each waiting at most POINTS_LOCK_TIMEOUT_MS for the lock (and the pool's
      // acquireTimeoutMs for a connection): on a slow enough machine the last of 100 wait longer and get 423 Locked
      // (or 503, PoolExhaustedError), having changed nothing. A client retries those, as both say to; the claim is
      // about what the awards add up to once every one went through, however many retries that took.
      const award = async () => {
        for (;;) {
          const response = await request(sample.url).post(`/users/${id}/points`);
          if (response.status === 423) expect(response.body).toMatchObject({ statusCode: 423, reason: 'timeout' });
          else if (response.status === 503) expect(response.body).toMatchObject({ error: 'PoolExhaustedError' });
          else return response;
        }
      };
      const results = await raceOk(AWARDS, award);
      expect(results.map((r) => r.status)).toEqual(Array(AWARDS).fill(200));
      expect(await points(id)).toBe(AWARDS * POINTS_PER_AWARD);
      // Serialised: every award saw the previous one, so the totals handed back are each step once, refusals or not.
      const totals = results.map((r) => r.body.points as number).sort((a, b) => a - b);
      expect(totals).toEqual(Array.from({ length: AWARDS }, (_, i) => (i + 1) * POINTS_PER_AWARD));
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
