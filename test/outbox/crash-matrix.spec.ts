import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { OutboxService } from '../../lib/index.js';
import { eventually } from '../support/gate.js';
import { spawnWorker, type WorkerProcess } from '../support/processes.js';
import { useTestApp } from '../support/test-app.js';
import type { CrashInput } from './outbox-replica.worker.js';

@Injectable()
class UsesOutbox {
  constructor(readonly outbox: OutboxService) {}
}

const WORKER = 'test/outbox/outbox-replica.worker.ts';
const PLAIN = 20;

// Resolves with how the worker ended: 'SIGKILL' when it was killed, else its result.
const ending = (worker: WorkerProcess): Promise<string> =>
  new Promise((resolve) => worker.child.once('exit', (code, signal) => resolve(signal ?? `exit ${code}`)));

// The crash matrix of the transactional outbox, with replicas as real OS processes killed with SIGKILL (kill -9): before
// COMMIT, between COMMIT and delivery, in the middle of a handler, and after the handler's transaction committed (its
// commit is the delivery's "ack": they are one transaction). Afterwards every committed event's handler effect (a row
// in the same database) is there exactly once, and the event killed before its COMMIT was never delivered.
describe('outbox crash matrix (SIGKILLed replicas)', () => {
  // This app only reads the outcome (and creates the outbox table: it injects OutboxService).
  const t = useTestApp({ txlock: { autoCreate: true, outbox: { relay: false } }, providers: [UsesOutbox] });

  beforeAll(async () => {
    await t.dataSource.query('CREATE TABLE sources (id serial PRIMARY KEY, n int NOT NULL)');
    await t.dataSource.query('CREATE TABLE effects (id serial PRIMARY KEY, event_id bigint NOT NULL, n int NOT NULL)');
    await t.dataSource.query('CREATE TABLE kills (event_id bigint PRIMARY KEY)');
  });
  const workers: WorkerProcess[] = [];
  afterAll(() => {
    for (const worker of workers) worker.child.kill('SIGKILL');
  });
  const spawn = (input: CrashInput): WorkerProcess => {
    const worker = spawnWorker(WORKER, t.db.url, input, workers.length);
    worker.result.catch(() => undefined); // killed on purpose: how it ended is read from its exit
    workers.push(worker);
    return worker;
  };

  it('every committed event has its effect exactly once; the one killed before COMMIT is never delivered', async () => {
    const notes: CrashInput['events'] = Array.from({ length: PLAIN }, (_, n) => ({ n }));
    for (let i = 0; i < 3; i++) notes.push({ n: 100 + i, kill: 'mid-handler' }, { n: 200 + i, kill: 'after-commit' });

    // 1. Killed between COMMIT and delivery: its relay was woken by the commit but had not delivered (first, while
    // nothing else is pending for its relay to take).
    expect(await ending(spawn({ mode: 'commit-then-die' }))).toBe('SIGKILL');
    // 2. Killed before COMMIT (after 26 committed transactions): its source row and its event vanish together.
    expect(await ending(spawn({ mode: 'publish', events: notes }))).toBe('SIGKILL');
    const outbox = t.get(OutboxService);
    expect(await outbox.counts()).toEqual({ pending: notes.length + 1, delivered: 0, failed: 0 });

    // 3 and 4. Relays, two at a time; each poison event kills the first replica that delivers it, mid-handler or
    // right after its delivery committed. Killed replicas are replaced until nothing is pending.
    let killed = 0;
    for (let wave = 0; wave < 10 && (await outbox.counts()).pending > 0; wave++) {
      const relays = [spawn({ mode: 'relay' }), spawn({ mode: 'relay' })];
      const ends = relays.map(ending);
      // Until both died, or until everything is delivered.
      await Promise.race([Promise.all(ends), eventually(async () => (await outbox.counts()).pending === 0, 30_000)]);
      for (const relay of relays) if (relay.child.exitCode === null && relay.child.signalCode === null) relay.child.kill('SIGTERM');
      killed += (await Promise.all(ends)).filter((end) => end === 'SIGKILL').length;
    }

    const query = async <T>(sql: string) => (await t.dataSource.query(sql)) as T[];
    expect(killed).toBe(6);
    expect(await query('SELECT count(*)::int AS n FROM kills')).toEqual([{ n: 6 }]);
    expect(await outbox.counts()).toEqual({ pending: 0, delivered: notes.length + 1, failed: 0 });
    // Committed: the 26 sources and the one committed just before its process died; never the one killed before COMMIT.
    const sources = (await query<{ n: number }>('SELECT n FROM sources ORDER BY n')).map((row) => row.n);
    expect(sources).toEqual([...notes.map((note) => note.n), 1000].sort((a, b) => a - b));
    // Each committed event's effect exactly once.
    const effects = await query<{ n: number; copies: number }>('SELECT n, count(*)::int AS copies FROM effects GROUP BY n ORDER BY n');
    expect(effects).toEqual(sources.map((n) => ({ n, copies: 1 })));
    expect(await query(`SELECT id FROM txlock_outbox WHERE payload->>'n' = '-1'`)).toEqual([]);
    // A delivery killed mid-handler was rolled back and does not count as an attempt; one killed after its commit is not delivered again.
    const attempts = await query<{ n: number; attempts: number }>(`SELECT (payload->>'n')::int AS n, attempts FROM txlock_outbox WHERE (payload->>'n')::int >= 100 AND (payload->>'n')::int < 1000 ORDER BY 1`);
    expect(attempts).toEqual([100, 101, 102, 200, 201, 202].map((n) => ({ n, attempts: 1 })));
  });
});
