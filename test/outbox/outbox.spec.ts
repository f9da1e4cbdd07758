import { beforeEach, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import {
  InvalidOptionError,
  OnOutboxEvent,
  OutboxPayloadError,
  OutboxPayloadTooLargeError,
  OutboxRelay,
  OutboxService,
  TransactionHost,
  type OutboxEvent,
} from '../../lib/index.js';
import { eventually } from '../support/gate.js';
import { useTestApp } from '../support/test-app.js';

/** What the handlers saw, in the order they ran. */
const seen: OutboxEvent[] = [];
/** Topic 'flaky': how many attempts fail before one succeeds. */
let failuresLeft = 0;

@Injectable()
class Handlers {
  constructor(private readonly dataSource: DataSource) {}

  @OnOutboxEvent('note.added')
  async noteAdded(payload: { text: string }, event: OutboxEvent): Promise<void> {
    seen.push(event);
    // A write to the same database: it commits with the "delivered" mark, or not at all.
    await this.dataSource.query('INSERT INTO effects (event_id, text) VALUES ($1, $2)', [event.id, payload.text]);
  }

  @OnOutboxEvent('flaky')
  async flaky(payload: { n: number }, event: OutboxEvent): Promise<void> {
    await this.dataSource.query('INSERT INTO effects (event_id, text) VALUES ($1, $2)', [event.id, `flaky ${payload.n}`]);
    if (failuresLeft-- > 0) throw new Error(`flaky failure before attempt ${event.attempt} succeeds`);
    seen.push(event);
  }

  @OnOutboxEvent('ordered')
  async ordered(_payload: unknown, event: OutboxEvent): Promise<void> {
    seen.push(event);
  }
}

describe('OutboxService and the relay', () => {
  const t = useTestApp({
    providers: [Handlers],
    // A short backoff, so retries happen within the test.
    txlock: { outbox: { autoCreate: true, backoff: { minMs: 1, maxMs: 5 }, maxAttempts: 3, concurrency: 2 } },
  });
  const effects = async (): Promise<string[]> =>
    ((await t.dataSource.query('SELECT text FROM effects ORDER BY id')) as { text: string }[]).map((row) => row.text);

  beforeEach(async () => {
    await t.dataSource.query('CREATE TABLE IF NOT EXISTS effects (id serial PRIMARY KEY, event_id bigint NOT NULL, text text NOT NULL)');
    await t.dataSource.query('TRUNCATE effects');
    await t.dataSource.query('TRUNCATE txlock_outbox');
    seen.length = 0;
    failuresLeft = 0;
  });

  it('delivers an event published in a transaction once it commits, with its payload, key and id', async () => {
    const tx = t.get(TransactionHost);
    const outbox = t.get(OutboxService);
    let id = '';
    await tx.run(async () => {
      id = await outbox.publish('note.added', { text: 'hello' }, { key: 'note:1' });
      expect(seen).toEqual([]); // not before COMMIT
    });
    await eventually(async () => (await effects()).length === 1);
    expect(await effects()).toEqual(['hello']);
    expect(seen).toEqual([{ id, topic: 'note.added', key: 'note:1', payload: { text: 'hello' }, attempt: 1, publishedAt: expect.any(Date) }]);
    expect(await outbox.counts()).toEqual({ pending: 0, delivered: 1, failed: 0 });
  });

  it('a rolled-back transaction publishes nothing', async () => {
    const tx = t.get(TransactionHost);
    const outbox = t.get(OutboxService);
    await expect(
      tx.run(async () => {
        await outbox.publish('note.added', { text: 'phantom' });
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    await outbox.publish('note.added', { text: 'after' }); // outside a transaction: its own
    await eventually(async () => (await effects()).length === 1);
    expect(await effects()).toEqual(['after']);
    expect(await outbox.counts()).toEqual({ pending: 0, delivered: 1, failed: 0 });
  });

  it("a failing handler's writes are rolled back with its attempt: retried with backoff, the effect is there exactly once", async () => {
    failuresLeft = 2;
    await t.get(OutboxService).publish('flaky', { n: 1 });
    await eventually(async () => (await t.get(OutboxService).counts()).delivered === 1);
    expect(seen[0]!.attempt).toBe(3);
    expect(await effects()).toEqual(['flaky 1']);
    const [row] = (await t.dataSource.query('SELECT status, attempts, last_error FROM txlock_outbox')) as { status: string; attempts: number; last_error: string }[];
    expect(row).toEqual({ status: 'delivered', attempts: 3, last_error: 'Error: flaky failure before attempt 2 succeeds' });
  });

  it('after maxAttempts the event is parked as failed, listed by failed(), and replay() delivers it again', async () => {
    failuresLeft = 3;
    const outbox = t.get(OutboxService);
    const id = await outbox.publish('flaky', { n: 2 });
    await eventually(async () => (await outbox.counts()).failed === 1);
    expect(await effects()).toEqual([]);
    const [failed] = await outbox.failed();
    expect(failed).toMatchObject({ id, topic: 'flaky', payload: { n: 2 }, attempt: 4, lastError: 'Error: flaky failure before attempt 3 succeeds' });
    expect(await outbox.replay(['999999'])).toEqual([]);
    expect(await outbox.replay([id])).toEqual([id]);
    await eventually(async () => (await outbox.counts()).delivered === 1);
    expect(seen[0]).toMatchObject({ id, attempt: 1 });
    expect(await effects()).toEqual(['flaky 2']);
  });

  it('refuses payloads JSON cannot carry and oversized ones with named errors, and bad topics, keys and options, sending nothing', async () => {
    const outbox = t.get(OutboxService);
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    for (const payload of [undefined, () => 1, 10n, cycle, { text: 'nul \u0000' }, { text: 'half \uD800' }]) {
      await expect(outbox.publish('note.added', payload)).rejects.toBeInstanceOf(OutboxPayloadError);
    }
    const error = await outbox.publish('note.added', { text: 'x'.repeat(300_000) }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OutboxPayloadTooLargeError);
    expect(error).toMatchObject({ bytes: 300_011, maxBytes: 262_144 });
    await expect(outbox.publish('', {})).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(outbox.publish('note.added', {}, { key: '' })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(outbox.publish('note.added', {}, { delayMs: -1 })).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(outbox.publish('note.added', {}, { kye: 'a' } as never)).rejects.toThrow('did you mean "key"?');
    // A string that only looks like an escape is fine.
    await outbox.publish('note.added', { text: 'a backslash and u0000: \\u0000' });
    await eventually(async () => (await effects()).length === 1);
    expect(await outbox.counts()).toEqual({ pending: 0, delivered: 1, failed: 0 });
  });

  it('delayMs: not delivered before the delay has passed on the database clock', async () => {
    const outbox = t.get(OutboxService);
    await outbox.publish('note.added', { text: 'later' }, { delayMs: 400 });
    const [{ due }] = (await t.dataSource.query(`SELECT available_at - created_at = interval '400 ms' AS due FROM txlock_outbox`)) as { due: boolean }[];
    expect(due).toBe(true);
    expect((await t.get(OutboxService).delivery.deliver()).claimed).toBe(0);
    await eventually(async () => (await effects()).length === 1);
  });

  it("events of one key are delivered in the order their transactions committed, whatever order they were published in", async () => {
    const tx = t.get(TransactionHost);
    const outbox = t.get(OutboxService);
    // Transactions that publish on the same key at once: the later ones wait at publish() for the earlier ones to end.
    const committed: number[] = [];
    await Promise.all(
      Array.from({ length: 30 }, (_, n) =>
        tx.run(async () => {
          await outbox.publish('ordered', { n }, { key: `key:${n % 3}` });
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
          committed.push(n); // in the order the transactions get past publish(): one at a time per key
        }),
      ),
    );
    await eventually(async () => (await outbox.counts()).delivered === 30);
    for (const key of ['key:0', 'key:1', 'key:2']) {
      const delivered = seen.filter((e) => e.key === key).map((e) => (e.payload as { n: number }).n);
      expect(delivered).toEqual(committed.filter((n) => `key:${n % 3}` === key));
    }
  });

  // Last: it stops the relay.
  it('one failing event in a round does not hold back the others: they are delivered, only it counts an attempt', async () => {
    failuresLeft = 2; // in the round, then alone
    const tx = t.get(TransactionHost);
    const outbox = t.get(OutboxService);
    await t.get(OutboxRelay).stop(); // so that all of them are due in one round
    await tx.run(async () => {
      for (let n = 0; n < 5; n++) await outbox.publish('note.added', { text: `note ${n}` });
      await outbox.publish('flaky', { n: 3 });
    });
    const round = await outbox.delivery.deliver();
    expect(round).toMatchObject({ claimed: 6, delivered: 5, retryInMs: expect.any(Number) });
    expect((await effects()).sort()).toEqual(['note 0', 'note 1', 'note 2', 'note 3', 'note 4']);
    const rows = (await t.dataSource.query(`SELECT topic, attempts, status FROM txlock_outbox WHERE topic = 'flaky'`)) as unknown[];
    expect(rows).toEqual([{ topic: 'flaky', attempts: 1, status: 'pending' }]);
  });
});
