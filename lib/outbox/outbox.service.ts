import { Inject, Injectable, Logger, Optional, type OnApplicationBootstrap, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { ensureTable } from '../common/ensure-table.js';
import { advisoryKey } from '../common/sql.js';
import { OutboxPayloadError, OutboxPayloadTooLargeError } from '../errors.js';
import { tokensTheAppInjects } from '../tables/injected-tokens.js';
import { explainMissingTable, type LibraryTable } from '../tables/library-table.js';
import { activeTraceParent } from '../telemetry/outbox-telemetry.js';
import { explainConnectionLoss } from '../transaction/connection-errors.js';
import { DEFAULT_DATA_SOURCE_NAME } from '../transaction/resolve-data-source.js';
import { TransactionHost } from '../transaction/transaction.host.js';
import { TXLOCK_DATA_SOURCE_NAME, TXLOCK_MODULE_OPTIONS } from '../txlock.module-definition.js';
import type { TxLockModuleOptions } from '../txlock-options.interface.js';
import { getTxLockToken } from '../txlock-tokens.js';
import { OutboxDelivery } from './outbox-delivery.js';
import { toOutboxEvent, type FailedOutboxEvent, type OutboxRow } from './outbox-event.js';
import { OutboxHandlers } from './outbox-handlers.js';
import { outboxSettings, validatePublish, type OutboxSettings, type PublishOptions } from './outbox.options.js';
import { outboxChannel, outboxSql } from './outbox.sql.js';

/** An event as publish() wrote it, for those who watch publishing (the testing kit's capture). */
export interface PublishedOutboxEvent {
  id: string;
  topic: string;
  key: string | null;
  payload: unknown;
}

/** What watches this outbox in the process: the relay (woken after commits), the testing kit (what a test published). */
export interface OutboxWatcher {
  /** An event was written (not committed yet inside a transaction). */
  published?(event: PublishedOutboxEvent): void;
  /** A transaction that published committed (or a publish outside one returned). */
  committed?(): void;
}

/** How many events the outbox holds, by status. */
export interface OutboxCounts {
  pending: number;
  delivered: number;
  failed: number;
}

// A JSON escape PostgreSQL's jsonb refuses: \u0000 (text cannot hold NUL), or a surrogate half JSON.stringify
// escaped because it was alone. Preceded by an even number of backslashes, so it is an escape and not text.
const JSONB_REFUSES = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/i;

/**
 * The transactional outbox: `publish()` writes an event in the caller's transaction (so it exists exactly when that
 * transaction commits), and the relay of every replica delivers it after the commit to the `@OnOutboxEvent()`
 * handlers of its topic, at least once, in order per key; a handler's writes to the same database commit together
 * with the event's "delivered" mark, exactly once. Failed deliveries are retried with backoff, then parked as
 * failed (failed(), replay()). See docs/outbox.md.
 *
 * @example
 * @Transactional()
 * async like(postId: number, userId: string) {
 *   await this.likes.insert({ postId, userId });
 *   await this.outbox.publish('post.liked', { postId, userId }, { key: `post:${postId}` });
 * }
 */
@Injectable()
export class OutboxService implements OnModuleInit, OnApplicationBootstrap {
  /** The settings this registration's outbox runs with. @internal */
  readonly settings: OutboxSettings;
  /** The handlers of this registration's outbox, by topic. @internal */
  readonly handlers = new OutboxHandlers();
  /** Delivers due events (the relay's rounds, the testing kit's deliver()). @internal */
  readonly delivery: OutboxDelivery;
  /** The NOTIFY channel of this outbox's table. @internal */
  readonly channel: string;
  private readonly watchers = new Set<OutboxWatcher>();
  // Transactions that have the hook telling the watchers of their commit already (one per transaction).
  private readonly hooked = new WeakSet<object>();
  private notify = true;
  private usedByApp?: boolean;

  constructor(
    private readonly txHost: TransactionHost,
    @Inject(TXLOCK_MODULE_OPTIONS) private readonly options: TxLockModuleOptions,
    private readonly discovery: DiscoveryService,
    @Optional() @Inject(TXLOCK_DATA_SOURCE_NAME) private readonly dataSourceName: string = DEFAULT_DATA_SOURCE_NAME,
  ) {
    this.settings = outboxSettings(options.outbox, options.autoCreate, options.pooler);
    this.channel = outboxChannel(this.settings.table);
    this.notify = this.settings.wakeup === 'notify';
    this.delivery = new OutboxDelivery(txHost, this.settings, this.handlers, new Logger('TxLock'));
  }

  /** With `autoCreate`, creates the table if the app uses the outbox (an app that does not is left as it was). */
  async onModuleInit(): Promise<void> {
    if (this.settings.autoCreate && this.inUse()) await ensureTable(this.txHost.dataSource, this.settings.table, outboxSql.createTable(this.settings.table));
  }

  /** Finds the app's `@OnOutboxEvent()` handlers, once every provider exists. */
  onApplicationBootstrap(): void {
    this.handlers.discover(this.discovery, this.dataSourceName);
  }

  /**
   * True when the app uses this outbox: it has `@OnOutboxEvent()` handlers, or one of its providers (a bridge's
   * included) injects OutboxService. For the bootstrap's table creation and check. @internal
   */
  inUse(): boolean {
    this.usedByApp ??= this.findUse();
    return this.usedByApp;
  }

  // Read once: the app's providers do not change after they exist.
  private findUse(): boolean {
    this.onApplicationBootstrap();
    if (this.handlers.topics().length > 0) return true;
    // Providers of TxLockModule's registrations (this one's, and those of other DataSources) are the library's own:
    // the relay, the tables check, which inject OutboxService too.
    const library = this.discovery.getProviders().find((wrapper) => wrapper.instance === this)?.host?.metatype;
    return tokensTheAppInjects(this.discovery, (wrapper) => wrapper.host?.metatype === library).has(getTxLockToken(OutboxService, this.dataSourceName));
  }

  /**
   * Writes an event on `topic` in the caller's transaction (outside one, in a statement that commits on its own), and
   * returns its id. It is delivered once that transaction commits, and never if it rolls back. The payload goes as
   * JSON: OutboxPayloadError when JSON cannot carry it, OutboxPayloadTooLargeError past `outbox.maxPayloadBytes`.
   * With `key`, a transaction waits at this call for an earlier open transaction that published on the same key, so a
   * key's events are delivered in the order their transactions committed.
   */
  async publish(topic: string, payload: unknown, options?: PublishOptions): Promise<string> {
    return this.enqueue(topic, payload, options);
  }

  /**
   * publish(), whose refusals (bad topic, key or payload) are thrown at once rather than as a rejection, and whose
   * statement is queued on the caller's transaction before it returns: for the bridges, whose callers (`emit()`,
   * `EventBus.publish()`) do not await. @internal
   */
  enqueue(topic: string, payload: unknown, options?: PublishOptions): Promise<string> {
    validatePublish(topic, options);
    const json = this.serialise(topic, payload);
    const key = options?.key ?? null;
    const params: unknown[] = [topic, key, json, options?.delayMs ?? 0, activeTraceParent()];
    if (key !== null) params.push(advisoryKey(`nestjs-txlock:outbox:${this.settings.table}:${key}`));
    if (this.notify) params.push(this.channel);
    return this.query<{ id: string }>(outboxSql.publish(this.settings.table, key !== null, this.notify), params).then(([row]) => {
      const id = row!.id;
      for (const watcher of this.watchers) watcher.published?.({ id, topic, key, payload: JSON.parse(json) as unknown });
      this.afterCommit();
      return id;
    });
  }

  /** Events parked after their last attempt, oldest first (at most `limit`, default 100), with their last error. */
  async failed(limit = 100): Promise<FailedOutboxEvent[]> {
    const rows = await this.query<OutboxRow>(outboxSql.failed(this.settings.table), [limit]);
    return rows.map((row) => ({ ...toOutboxEvent(row), lastError: row.last_error ?? null }));
  }

  /**
   * Puts parked events back to be delivered now, their attempts counted from zero: those of `ids`, or every parked
   * event. Returns the ids put back (ids that were not parked are left alone).
   */
  async replay(ids?: readonly string[]): Promise<string[]> {
    const rows = await this.query<{ id: string }>(outboxSql.replay(this.settings.table), [ids ?? null]);
    if (rows.length > 0) this.afterCommit();
    return rows.map((row) => row.id);
  }

  /** How many events are pending, delivered (kept for `retentionMs`) and parked as failed. */
  async counts(): Promise<OutboxCounts> {
    const counts: OutboxCounts = { pending: 0, delivered: 0, failed: 0 };
    for (const row of await this.query<{ status: keyof OutboxCounts; count: number }>(outboxSql.counts(this.settings.table), [])) counts[row.status] = row.count;
    return counts;
  }

  /** Registers `watcher` until the returned function is called. @internal */
  watch(watcher: OutboxWatcher): () => void {
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  }

  /** Stops sending NOTIFY from publish() (the relay found it cannot LISTEN: nobody would hear). @internal */
  stopNotifying(): void {
    this.notify = false;
  }

  /**
   * The table this service keeps its data in, for the bootstrap check of the library's tables. Not part of the
   * public API.
   * @internal
   */
  libraryTable(): LibraryTable {
    return { table: this.settings.table, service: 'OutboxService', option: 'outbox' };
  }

  // Tells the watchers once the caller's transaction committed (at once outside one). One hook per transaction.
  private afterCommit(): void {
    if (this.watchers.size === 0) return;
    const scope = this.txHost.scope();
    if (!scope) return this.tellCommitted();
    if (this.hooked.has(scope)) return;
    this.hooked.add(scope);
    void this.txHost.afterCommit(() => this.tellCommitted());
  }

  private tellCommitted(): void {
    for (const watcher of this.watchers) watcher.committed?.();
  }

  private serialise(topic: string, payload: unknown): string {
    let json: string | undefined;
    try {
      json = JSON.stringify(payload);
    } catch (error) {
      throw new OutboxPayloadError(topic, error);
    }
    if (json === undefined || JSONB_REFUSES.test(json)) throw new OutboxPayloadError(topic);
    const bytes = Buffer.byteLength(json);
    if (bytes > this.settings.maxPayloadBytes) throw new OutboxPayloadTooLargeError(topic, bytes, this.settings.maxPayloadBytes);
    return json;
  }

  private async query<Row>(sql: string, params: unknown[]): Promise<Row[]> {
    try {
      return await this.txHost.query<Row>(sql, params);
    } catch (error) {
      throw explainConnectionLoss(explainMissingTable(error, this.libraryTable()));
    }
  }
}
