import { beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { CqrsModule, EventBus, EventsHandler, type IEventHandler } from '@nestjs/cqrs';
import { EventEmitter2, EventEmitterModule, OnEvent } from '@nestjs/event-emitter';
import { DataSource } from 'typeorm';
import { OutboxCqrsModule, OutboxEventEmitterModule, OutboxPayloadError, OutboxService, TransactionHost } from '../../lib/index.js';
import { eventually } from '../support/gate.js';
import { useTestApp } from '../support/test-app.js';

class PostLiked {
  constructor(
    readonly postId: number,
    readonly userId: string,
  ) {}

  describe(): string {
    return `${this.userId} liked post ${this.postId}`;
  }
}

/** Every handler call, in this process, as it happened (before or after the commit, inside a transaction or not). */
const calls: string[] = [];

@EventsHandler(PostLiked)
class NotifyAuthor implements IEventHandler<PostLiked> {
  constructor(
    private readonly dataSource: DataSource,
    private readonly tx: TransactionHost,
  ) {}

  async handle(event: PostLiked): Promise<void> {
    calls.push(`cqrs: ${event instanceof PostLiked ? event.describe() : 'not a PostLiked'}${this.tx.isActive ? ' (in a transaction)' : ''}`);
    await this.dataSource.query('INSERT INTO notes (text) VALUES ($1)', [event.describe()]);
  }
}

@Injectable()
class OrderListener {
  constructor(private readonly dataSource: DataSource) {}

  @OnEvent('order.placed')
  async placed(order: { id: number }, channel: string): Promise<void> {
    calls.push(`emitter: order ${order.id} via ${channel}`);
    await this.dataSource.query('INSERT INTO notes (text) VALUES ($1)', [`order ${order.id}`]);
  }
}

describe('bridges: @nestjs/cqrs EventBus and @nestjs/event-emitter through the outbox', () => {
  const t = useTestApp({
    imports: [CqrsModule.forRoot(), EventEmitterModule.forRoot(), OutboxCqrsModule.forRoot(), OutboxEventEmitterModule.forRoot()],
    providers: [NotifyAuthor, OrderListener],
    txlock: { autoCreate: true },
  });
  const notes = async () => ((await t.dataSource.query('SELECT text FROM notes ORDER BY id')) as { text: string }[]).map((row) => row.text);

  beforeAll(async () => {
    await t.dataSource.query('CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)');
  });
  beforeEach(async () => {
    await t.dataSource.query('TRUNCATE notes, txlock_outbox');
    calls.length = 0;
  });

  it('EventBus.publish() in a transaction reaches the handler only after the commit, once, as an instance of its class', async () => {
    const tx = t.get(TransactionHost);
    await tx.run(async () => {
      t.get(EventBus).publish(new PostLiked(1, 'alice'));
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(calls).toEqual([]);
    });
    await eventually(async () => (await notes()).length === 1);
    expect(calls).toEqual(['cqrs: alice liked post 1 (in a transaction)']); // the relay's delivery transaction
    expect(await t.get(OutboxService).counts()).toEqual({ pending: 0, delivered: 1, failed: 0 });
  });

  it('an event published in a transaction that rolls back reaches no handler; outside a transaction the bus is as before', async () => {
    const tx = t.get(TransactionHost);
    await expect(
      tx.run(async () => {
        t.get(EventBus).publishAll([new PostLiked(2, 'bob'), new PostLiked(3, 'bob')]);
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    t.get(EventBus).publish(new PostLiked(4, 'carol'));
    await eventually(async () => (await notes()).length === 1);
    expect(await notes()).toEqual(['carol liked post 4']);
    expect(calls).toEqual(['cqrs: carol liked post 4']);
    expect(await t.get(OutboxService).counts()).toEqual({ pending: 0, delivered: 0, failed: 0 });
  });

  it("emit() in a transaction calls the listeners after the commit, awaited, with the emitted arguments; a rollback calls none", async () => {
    const tx = t.get(TransactionHost);
    const emitter = t.get(EventEmitter2);
    await tx.run(async () => {
      expect(emitter.emit('order.placed', { id: 7 }, 'web')).toBe(true);
      expect(calls).toEqual([]);
    });
    await expect(
      tx.run(async () => {
        emitter.emit('order.placed', { id: 8 }, 'web');
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    await eventually(async () => (await notes()).length === 1);
    expect(await notes()).toEqual(['order 7']);
    expect(calls).toEqual(['emitter: order 7 via web']);
  });

  it('emit() of arguments JSON cannot carry throws OutboxPayloadError at once, in the transaction', async () => {
    await expect(t.get(TransactionHost).run(async () => t.get(EventEmitter2).emit('order.placed', { id: 9n }))).rejects.toBeInstanceOf(OutboxPayloadError);
    expect(await t.get(OutboxService).counts()).toEqual({ pending: 0, delivered: 0, failed: 0 });
  });
});
