import type { Logger } from '@nestjs/common';
import type { Client, Pool } from 'pg';
import type { DataSource } from 'typeorm';
import { isDirectConnection } from '../server/connection-path.js';
import type { PoolerMode } from '../server/pooler.js';
import { outboxSql } from './outbox.sql.js';

const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 10_000;

/**
 * LISTEN on a dedicated connection (opened like the DataSource's pooled ones, but outside its pool: a pooled
 * connection that LISTENs would hear nothing once returned, and would be taken from the app), calling `onNotify`
 * for each notification. When the connection drops it is opened again with backoff, and `onNotify` is called once
 * it is back (notifications sent meanwhile were missed). Behind a pooler the connection may reach a server
 * connection other than the publishers' commits notify on, or a different one for each statement; `start()` checks
 * the path first and answers false when LISTEN cannot be trusted there, and the relay polls instead.
 */
export class OutboxListener {
  private client?: Client;
  private stopped = false;
  private reconnectTimer?: NodeJS.Timeout;
  private failures = 0;

  constructor(
    private readonly dataSource: DataSource,
    private readonly channel: string,
    private readonly pooler: PoolerMode,
    private readonly onNotify: () => void,
    private readonly logger: Logger,
  ) {}

  /** Connects and LISTENs. False (and nothing left open) when a pooler sits on the path: then poll. */
  async start(): Promise<boolean> {
    const client = await this.connect();
    // A session pooler keeps one server connection per client: LISTEN works there. Otherwise it must be PostgreSQL itself.
    if (this.pooler !== 'session' && !(await isDirectConnection(client, () => backendPid(client)))) {
      await client.end().catch(() => undefined);
      return false;
    }
    await this.listenOn(client);
    return true;
  }

  /** Closes the connection; no reconnection after this. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<Client> {
    // pg's Pool makes its clients as `new this.Client(this.options)`: the same class (pg-native's, if TypeORM chose
    // it) and the same connection options, ssl and all.
    const pool = (this.dataSource.driver as unknown as { master: Pool & { Client: new (options: unknown) => Client; options: unknown } }).master;
    const client = new pool.Client(pool.options);
    await client.connect();
    return client;
  }

  private async listenOn(client: Client): Promise<void> {
    client.on('notification', (message) => {
      if (message.channel === this.channel) this.onNotify();
    });
    // A dropped connection (server restart, terminated backend, network) emits 'error' and/or 'end'.
    const lost = (error?: Error) => {
      if (this.client !== client) return;
      this.client = undefined;
      client.end().catch(() => undefined);
      if (!this.stopped) this.reconnectLater(error);
    };
    client.on('error', lost);
    client.on('end', () => lost());
    try {
      await client.query(outboxSql.listen(this.channel));
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    this.client = client;
    this.failures = 0;
  }

  private reconnectLater(error?: Error): void {
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** this.failures++);
    if (this.failures === 1) this.logger.warn(`Outbox relay: its LISTEN connection was lost${error ? ` (${error.message})` : ''}; polling until it is back.`);
    this.reconnectTimer = setTimeout(() => {
      if (this.stopped) return;
      this.connect()
        .then(async (client) => {
          if (this.stopped) return void (await client.end().catch(() => undefined));
          await this.listenOn(client);
          this.onNotify(); // whatever was published while it was away
        })
        .catch((reason: unknown) => this.reconnectLater(reason instanceof Error ? reason : new Error(String(reason))));
    }, delay);
    this.reconnectTimer.unref();
  }
}

async function backendPid(client: Client): Promise<number> {
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  return rows[0]!.pid;
}
