import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable, type INestApplication } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { OnOutboxEvent, OutboxRelay, OutboxService, TransactionHost, type OutboxEvent, type TxLockModuleOptions } from '../../lib/index.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/gate.js';
import { createTestApp } from '../support/nest-app.js';
import { TcpProxy } from '../support/tcp-proxy.js';

/** Deliveries seen by the handlers of every app in this process, per event id. */
const calls = new Map<string, number>();

@Injectable()
class Recorder {
  constructor(private readonly dataSource: DataSource) {}

  @OnOutboxEvent('replica.note')
  async record(note: { n: number }, event: OutboxEvent): Promise<void> {
    calls.set(event.id, (calls.get(event.id) ?? 0) + 1);
    await this.dataSource.query('INSERT INTO effects (event_id, key, n) VALUES ($1, $2, $3)', [event.id, event.key, note.n]);
  }
}

describe('outbox relays in several replicas', () => {
  let db: TestDatabase;
  const apps: INestApplication[] = [];
  const boot = async (txlock: TxLockModuleOptions = {}, url = db.url): Promise<INestApplication> => {
    const app = await createTestApp({ url, providers: [Recorder], poolSize: 4, txlock: { autoCreate: true, ...txlock } });
    apps.push(app);
    return app;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
    calls.clear();
  });
  afterAll(async () => {
    await db.drop();
  });

  it('three replicas share 600 events without delivering one twice, and keep each key in order', async () => {
    const replicas = [await boot({ outbox: { concurrency: 2, batchSize: 20 } }), await boot({ outbox: { concurrency: 2, batchSize: 20 } }), await boot({ outbox: { batchSize: 20 } })];
    const dataSource = replicas[0]!.get(DataSource);
    await dataSource.query('CREATE TABLE effects (id serial PRIMARY KEY, event_id bigint NOT NULL, key text, n int NOT NULL)');
    // Published from all three, 20 transactions of 10 events at a time each; half of them on 5 keys.
    await Promise.all(
      replicas.map((app, r) =>
        Promise.all(
          Array.from({ length: 20 }, (_, tx) =>
            app.get(TransactionHost).run(async () => {
              for (let i = 0; i < 10; i++) {
                const n = r * 1000 + tx * 10 + i;
                await app.get(OutboxService).publish('replica.note', { n }, i % 2 === 0 ? { key: `key:${i % 5}` } : undefined);
              }
            }),
          ),
        ),
      ),
    );
    const outbox = replicas[0]!.get(OutboxService);
    await eventually(async () => (await outbox.counts()).delivered === 600, 30_000);
    expect(await outbox.counts()).toEqual({ pending: 0, delivered: 600, failed: 0 });
    expect(calls.size).toBe(600);
    expect([...calls.values()].every((count) => count === 1)).toBe(true);
    const [{ effects, events }] = (await dataSource.query('SELECT count(*)::int AS effects, count(DISTINCT event_id)::int AS events FROM effects')) as { effects: number; events: number }[];
    expect({ effects, events }).toEqual({ effects: 600, events: 600 });
    // A key's effects were written in the order of its events' ids (the order their transactions committed).
    const outOfOrder = (await dataSource.query(
      `SELECT count(*)::int AS n FROM (SELECT event_id < lag(event_id) OVER (PARTITION BY key ORDER BY id) AS back FROM effects WHERE key IS NOT NULL) s WHERE back`,
    )) as { n: number }[];
    expect(outOfOrder).toEqual([{ n: 0 }]);
  });

  it("LISTEN/NOTIFY wakes another replica's relay, and it listens again after its connection is terminated", async () => {
    const publisher = await boot({ outbox: { relay: false } });
    const relay = await boot({ outbox: { pollIntervalMs: 60_000 } }); // polling alone would take a minute
    expect(relay.get(OutboxRelay).mode).toBe('notify');
    const dataSource = relay.get(DataSource);
    await dataSource.query('TRUNCATE effects');
    await publisher.get(OutboxService).publish('replica.note', { n: 1 });
    await eventually(async () => calls.size === 1);
    const listeners = async () => ((await dataSource.query(`SELECT pid FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()`)) as { pid: number }[]).map((row) => row.pid);
    const [before] = await listeners();
    await dataSource.query('SELECT pg_terminate_backend($1)', [before]);
    await eventually(async () => (await listeners()).some((pid) => pid !== before));
    await publisher.get(OutboxService).publish('replica.note', { n: 2 });
    await eventually(async () => calls.size === 2);
  });

  it("behind a transaction pooler it polls: declared with pooler: 'transaction', or found on the relay's connection", async () => {
    const declared = await boot({ pooler: 'transaction', outbox: { pollIntervalMs: 50 } });
    expect(declared.get(OutboxRelay).mode).toBe('poll');
    const proxy = await TcpProxy.start(db.url, { ownBackendKey: true });
    try {
      const found = await boot({ outbox: { pollIntervalMs: 50 } }, proxy.url);
      expect(found.get(OutboxRelay).mode).toBe('poll');
      await found.get(OutboxService).publish('replica.note', { n: 3 });
      await eventually(async () => calls.size === 1);
      await Promise.all(apps.splice(0).map((app) => app.close()));
    } finally {
      await proxy.close();
    }
  });

  it('on shutdown the relay finishes the round in hand, then takes no more', async () => {
    const app = await boot({ outbox: { batchSize: 5 } });
    const outbox = app.get(OutboxService);
    const dataSource = app.get(DataSource);
    await dataSource.query('TRUNCATE effects, txlock_outbox');
    // A slow handler: the round is in hand when the app closes.
    await dataSource.query(`CREATE OR REPLACE FUNCTION slow_effect() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$`);
    await dataSource.query('CREATE TRIGGER slow BEFORE INSERT ON effects FOR EACH ROW EXECUTE FUNCTION slow_effect()');
    await app.get(TransactionHost).run(async () => {
      for (let n = 0; n < 20; n++) await outbox.publish('replica.note', { n });
    });
    await eventually(async () => calls.size > 0);
    await app.close();
    apps.splice(0);
    const reader = await createTestApp({ url: db.url, txlock: { outbox: { relay: false } } });
    try {
      const counts = await reader.get(OutboxService).counts();
      const [{ effects }] = (await reader.get(DataSource).query('SELECT count(*)::int AS effects FROM effects')) as { effects: number }[];
      // Whole rounds only: what was delivered has its effects, and nothing was left half done.
      expect(counts.delivered).toBe(effects);
      expect(counts.delivered % 5).toBe(0);
      expect(counts.delivered + counts.pending).toBe(20);
      expect(counts.pending).toBeGreaterThan(0);
    } finally {
      await reader.get(DataSource).query('DROP TRIGGER IF EXISTS slow ON effects');
      await reader.close();
    }
  });
});
