import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { race, useRollbackPerTest } from 'nestjs-txlock/testing';
import { raceOk } from '../support/concurrency.js';
import { useSample } from './support/sample-app.js';

describe('sample: posts and likes', () => {
  const sample = useSample();
  const createPost = async (title = 'p'): Promise<number> => (await request(sample.url).post('/posts').send({ title }).expect(201)).body.id;
  const view = async (id: number) => (await request(sample.url).get(`/posts/${id}`).expect(200)).body as { likesCount: number; likeRows: number };

  describe('one request at a time (each test rolled back: nestjs-txlock/testing)', () => {
    useRollbackPerTest(() => sample.app);

    it('creates and shows a post; 400 without a title, 404 for a missing post', async () => {
      const id = await createPost('hello');
      expect(await view(id)).toEqual({ id, title: 'hello', likesCount: 0, likeRows: 0 });
      await request(sample.url).post('/posts').send({}).expect(400);
      await request(sample.url).get('/posts/999999').expect(404);
      await request(sample.url).put('/posts/999999/likes/u').expect(404);
    });
    it('the naive twin is fine without concurrency (the bug is the race, not the code path)', async () => {
      const id = await createPost();
      for (const user of ['a', 'b', 'c']) await request(sample.url).put(`/posts/${id}/likes/${user}/unsafe`).expect(200);
      expect(await view(id)).toMatchObject({ likesCount: 3, likeRows: 3 });
      expect(sample.app.get(DataSource).isInitialized).toBe(true);
    });
  });

  describe('races (real concurrency on this file\'s own database, committed)', () => {
    it('200 users liking at once: likes_count is exactly 200', async () => {
      const id = await createPost();
      // 200 requests share the sample's pool: on a slow enough machine the last of them wait longer than its
      // acquireTimeoutMs and get 503 (PoolExhaustedError), having changed nothing (CI met one). A client retries those,
      // as the response says; the claim is about the count once every like went through.
      let retried = 0;
      const like = async (i: number) => {
        for (;;) {
          const response = await request(sample.url).put(`/posts/${id}/likes/user-${i}`);
          if (response.status !== 503) return response;
          expect(response.body).toMatchObject({ error: 'PoolExhaustedError' });
          retried++;
        }
      };
      const results = await raceOk(200, like);
      console.log(`[sample] 200 users liking at once: ${retried} request(s) answered 503 (pool busy) and sent again`);
      expect(results.map((r) => r.status)).toEqual(Array(200).fill(200));
      expect(await view(id)).toMatchObject({ likesCount: 200, likeRows: 200 });
    });

    it('one user liking 50 times at once: one like, one created, count 1', async () => {
      const id = await createPost();
      const results = await raceOk(50, () => request(sample.url).put(`/posts/${id}/likes/alice`));
      expect(results.every((r) => r.status === 200)).toBe(true);
      expect(results.filter((r) => r.body.changed)).toHaveLength(1);
      expect(await view(id)).toMatchObject({ likesCount: 1, likeRows: 1 });
    });

    it('unlike is idempotent too and never takes the count below the rows', async () => {
      const id = await createPost();
      await request(sample.url).put(`/posts/${id}/likes/bob`).expect(200);
      const results = await raceOk(20, () => request(sample.url).delete(`/posts/${id}/likes/bob`));
      expect(results.filter((r) => r.body.changed)).toHaveLength(1);
      expect(await view(id)).toMatchObject({ likesCount: 0, likeRows: 0 });
    });

    it('control: the naive twin loses likes under the same load', async () => {
      const id = await createPost();
      await race(200, (i) => request(sample.url).put(`/posts/${id}/likes/user-${i}/unsafe`));
      const { likesCount, likeRows } = await view(id);
      expect(likeRows).toBe(200);
      expect(likesCount).toBeLessThan(200);
    });
  });
});
