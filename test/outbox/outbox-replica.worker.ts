import 'reflect-metadata';
import { Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { OnOutboxEvent, OutboxService, TransactionHost, TxLockModule, type OutboxEvent } from '../../lib/index.js';
import { workerMain } from '../support/processes.js';

/** What one replica of the crash matrix does. */
export interface CrashInput {
  /**
   * publish: publishes `events` (each in a transaction with its source row), then a last one and is killed before
   * its COMMIT. commit-then-die: publishes one event and is killed right after its COMMIT, before its relay delivers.
   * relay: delivers until killed by a poison event, or until nothing is pending.
   */
  mode: 'publish' | 'commit-then-die' | 'relay';
  /** publish: the events, each with a poison (`kill`) or none. */
  events?: { n: number; kill?: 'mid-handler' | 'after-commit' }[];
}

interface Note {
  n: number;
  kill?: 'mid-handler' | 'after-commit';
}

// commit-then-die: its relay may take the event before the process dies (the hook that kills it runs after the
// connection went back to the pool, a few turns of the event loop after COMMIT: CI saw a delivery in between once), but
// it must never deliver it.
let holdDeliveries = false;

const die = (): never => {
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable');
};

@Injectable()
class NoteHandler {
  constructor(
    private readonly dataSource: DataSource,
    private readonly tx: TransactionHost,
  ) {}

  // The handler's effect is in the same database: exactly once, whatever happens to the process.
  @OnOutboxEvent('crash.note')
  async handle(note: Note, event: OutboxEvent): Promise<void> {
    if (holdDeliveries) await new Promise<never>(() => undefined);
    await this.dataSource.query('INSERT INTO effects (event_id, n) VALUES ($1, $2)', [event.id, note.n]);
    if (!note.kill || !(await firstKill(event.id))) return;
    // Mid-handler: its write is in, its transaction open. After the commit: the delivery committed, nothing after it ran.
    if (note.kill === 'mid-handler') die();
    else this.tx.afterCommit(() => die());
  }
}

let killsPool: pg.Pool | undefined;

// A poison event kills the first replica that delivers it, and only that one: recorded on a connection of its own.
async function firstKill(eventId: string): Promise<boolean> {
  const { rowCount } = await killsPool!.query('INSERT INTO kills (event_id) VALUES ($1) ON CONFLICT DO NOTHING', [eventId]);
  return rowCount === 1;
}

workerMain<CrashInput, unknown>(async (input, { url }) => {
  killsPool = new pg.Pool({ connectionString: url, max: 1 });
  holdDeliveries = input.mode === 'commit-then-die';
  const relay = input.mode !== 'publish';
  @Module({
    imports: [
      TypeOrmModule.forRoot({ type: 'postgres', url, extra: { max: 4 } }),
      // One event at a time per replica, so each poison event kills exactly one replica (in a round of several, or in
      // two loops at once, a replica killed by one would take another's first delivery, and its first kill, with it).
      TxLockModule.forRoot({ outbox: { relay, batchSize: 1, concurrency: 1, pollIntervalMs: 100 } }),
    ],
    providers: relay ? [NoteHandler] : [],
  })
  class ReplicaModule {}

  const app = await NestFactory.createApplicationContext(ReplicaModule, { logger: ['error'] });
  const tx = app.get(TransactionHost);
  const outbox = app.get(OutboxService);
  const dataSource = app.get(DataSource);
  const publish = (note: Note) =>
    tx.run(async () => {
      await dataSource.query('INSERT INTO sources (n) VALUES ($1)', [note.n]);
      await outbox.publish('crash.note', note, { key: `k${note.n % 4}` });
    });
  if (input.mode === 'publish') {
    for (const note of input.events!) await publish(note);
    // Killed before COMMIT: the source row and the event were written, not committed.
    await tx.run(async () => {
      await dataSource.query('INSERT INTO sources (n) VALUES ($1)', [-1]);
      await outbox.publish('crash.note', { n: -1 });
      die();
    });
  }
  if (input.mode === 'commit-then-die') {
    // The relay is running and was told of the commit; the process dies before it could deliver.
    await tx.run(async () => {
      await dataSource.query('INSERT INTO sources (n) VALUES ($1)', [1000]);
      await outbox.publish('crash.note', { n: 1000 });
      tx.afterCommit(() => die());
    });
  }
  // relay: deliver until killed, or until the test stops this replica (SIGTERM closes the app: the relay drains).
  await new Promise<void>((resolve) => process.once('SIGTERM', resolve));
  await app.close();
  await killsPool.end();
  return 'stopped';
});
