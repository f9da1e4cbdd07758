import { describe, expect, it } from '@jest/globals';
import request from 'supertest';
import { useOutboxCapture, useRollbackPerTest } from 'nestjs-txlock/testing';
import { raceOk } from '../support/concurrency.js';
import { eventually } from '../support/gate.js';
import { useSample } from './support/sample-app.js';

describe('sample: a like notifies the post\'s author through the outbox', () => {
  const sample = useSample();
  const createPost = async (): Promise<number> => (await request(sample.url).post('/posts').send({ title: 'p' }).expect(201)).body.id;
  const notifications = async (id: number): Promise<number> => (await request(sample.url).get(`/posts/${id}/notifications`).expect(200)).body.count;

  describe('one request at a time (each test rolled back, the outbox captured)', () => {
    useRollbackPerTest(() => sample.app);
    const outbox = useOutboxCapture(() => sample.app);

    it('a new like publishes "post liked"; delivering it makes one notification; a repeated like publishes nothing', async () => {
      const id = await createPost();
      await request(sample.url).put(`/posts/${id}/likes/alice`).expect(200);
      await request(sample.url).put(`/posts/${id}/likes/alice`).expect(200);
      expect(outbox.events).toEqual([{ id: expect.any(String), topic: 'post.liked', key: `post:${id}`, payload: { postId: id, userId: 'alice' } }]);
      expect(await notifications(id)).toBe(0);
      expect(await outbox.deliver()).toBe(1);
      expect(await notifications(id)).toBe(1);
    });
  });

  describe('races (committed, delivered by the relay)', () => {
    it('50 users liking at once: exactly 50 notifications', async () => {
      const id = await createPost();
      await raceOk(50, (i) => request(sample.url).put(`/posts/${id}/likes/user-${i}`).expect(200));
      await eventually(async () => (await notifications(id)) === 50, 30_000);
      await new Promise((resolve) => setTimeout(resolve, 200)); // and none more
      expect(await notifications(id)).toBe(50);
    });
  });
});
