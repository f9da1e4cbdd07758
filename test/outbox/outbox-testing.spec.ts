import { beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { OnOutboxEvent, OutboxService, Transactional, type OutboxEvent } from '../../lib/index.js';
import { useOutboxCapture, useRollbackPerTest } from '../../lib/testing/index.js';
import { useTestApp } from '../support/test-app.js';

@Injectable()
class Orders {
  constructor(
    private readonly outbox: OutboxService,
    private readonly dataSource: DataSource,
  ) {}

  @Transactional()
  async place(id: number, fail = false): Promise<void> {
    await this.dataSource.query('INSERT INTO orders (id) VALUES ($1)', [id]);
    await this.outbox.publish('order.placed', { id });
    if (fail) throw new Error('payment refused');
  }

  @OnOutboxEvent('order.placed')
  async onPlaced({ id }: { id: number }): Promise<void> {
    await this.dataSource.query('INSERT INTO mails (text) VALUES ($1)', [`order ${id} placed`]);
    await this.outbox.publish('mail.queued', { id }); // a handler's own event is delivered by the same deliver()
  }

  @OnOutboxEvent('mail.queued')
  async onQueued({ id }: { id: number }, event: OutboxEvent): Promise<void> {
    await this.dataSource.query('INSERT INTO mails (text) VALUES ($1)', [`mail ${id} queued (attempt ${event.attempt})`]);
  }
}

describe('nestjs-txlock/testing: captureOutbox / useOutboxCapture', () => {
  const t = useTestApp({ providers: [Orders], txlock: { autoCreate: true } });
  const mails = async () => ((await t.dataSource.query('SELECT text FROM mails ORDER BY id')) as { text: string }[]).map((row) => row.text);

  beforeAll(async () => {
    await t.dataSource.query('CREATE TABLE orders (id int PRIMARY KEY)');
    await t.dataSource.query('CREATE TABLE mails (id serial PRIMARY KEY, text text NOT NULL)');
  });

  describe('each test rolled back', () => {
    useRollbackPerTest(() => t.app);
    const outbox = useOutboxCapture(() => t.app);

    it('captures what the test published; deliver() runs the handlers, and those of the events they publish', async () => {
      await t.get(Orders).place(1);
      expect(outbox.events).toEqual([{ id: expect.any(String), topic: 'order.placed', key: null, payload: { id: 1 } }]);
      // The relay does not run under a test transaction: nothing is delivered until the test says so.
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await mails()).toEqual([]);
      expect(await outbox.deliver()).toBe(2);
      expect(await mails()).toEqual(['order 1 placed', 'mail 1 queued (attempt 1)']);
      expect(outbox.events.map((event) => event.topic)).toEqual(['order.placed', 'mail.queued']);
      expect(await outbox.deliver()).toBe(0); // each once
      expect(await t.get(OutboxService).counts()).toEqual({ pending: 0, delivered: 2, failed: 0 });
    });

    it("an event of a transaction that rolled back was captured as published, and is never delivered", async () => {
      await expect(t.get(Orders).place(2, true)).rejects.toThrow('payment refused');
      expect(outbox.events).toHaveLength(1);
      expect(await outbox.deliver()).toBe(0);
      expect(await mails()).toEqual([]);
    });

    it('starts from what the database was: the previous tests left nothing', async () => {
      expect(await mails()).toEqual([]);
      expect(await t.get(OutboxService).counts()).toEqual({ pending: 0, delivered: 0, failed: 0 });
      expect(outbox.events).toEqual([]);
    });
  });

  it('outside a test transaction the relay delivers for real', async () => {
    await t.get(Orders).place(3);
    for (let i = 0; i < 200 && (await mails()).length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await mails()).toEqual(['order 3 placed', 'mail 3 queued (attempt 1)']);
  });
});
