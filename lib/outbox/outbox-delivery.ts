import type { Logger } from '@nestjs/common';
import { RollbackOnlyError } from '../errors.js';
import { recordDelivered, recordDeliveryFailure, traceDelivery } from '../telemetry/outbox-telemetry.js';
import { telemetry } from '../telemetry/telemetry.js';
import type { TransactionHost } from '../transaction/transaction.host.js';
import { IsolationLevel, Propagation } from '../transaction/transaction.options.js';
import { toOutboxEvent, type OutboxRow } from './outbox-event.js';
import type { OutboxHandlers } from './outbox-handlers.js';
import type { OutboxSettings } from './outbox.options.js';
import { outboxSql } from './outbox.sql.js';

/** What one delivery round did. */
export interface DeliveryRound {
  /** Events it locked. */
  claimed: number;
  /** Events whose handlers ran and whose delivery committed. */
  delivered: number;
  /** When an event whose handler failed in this round is due again, ms from now (the relay sleeps no longer). */
  retryInMs?: number;
}

// A handler threw: the event's failure, told apart from the database's (a lost connection is nobody's attempt).
class HandlerFailure extends Error {
  constructor(
    readonly row: OutboxRow,
    readonly handler: string,
    readonly error: unknown,
  ) {
    super(`outbox handler ${handler} failed`, { cause: error });
  }
}

const MAX_ERROR_TEXT = 2_000;

/**
 * Delivers due events to their handlers, for the relay and for the testing kit. One round is one transaction (READ
 * COMMITTED, on a connection of its own): it locks up to `batchSize` due events of the topics it has handlers for
 * (SKIP LOCKED: what another replica holds is its), keeps those whose key's earlier events are all in hand, runs
 * each event's handlers in it, and marks them delivered in it. So a handler's writes to the same database and the
 * "delivered" mark commit together or not at all. When a handler throws, the round is rolled back and its events are
 * delivered again one per transaction, so that only the failing one counts an attempt (recorded in the transaction
 * that holds its row, after its handlers' writes were rolled back to a savepoint).
 */
export class OutboxDelivery {
  constructor(
    private readonly txHost: TransactionHost,
    private readonly settings: OutboxSettings,
    private readonly handlers: OutboxHandlers,
    private readonly logger: Logger,
  ) {}

  /** One round over every due event, or only over `ids` (the testing kit's). */
  async deliver(ids?: readonly string[]): Promise<DeliveryRound> {
    const topics = this.handlers.topics();
    if (topics.length === 0) return { claimed: 0, delivered: 0 };
    const claimed: OutboxRow[] = [];
    const retries: number[] = [];
    const result = (delivered: number): DeliveryRound => ({ claimed: claimed.length, delivered, ...(retries.length ? { retryInMs: Math.min(...retries) } : {}) });
    try {
      return result(await this.round(topics, this.settings.batchSize, ids, claimed, retries));
    } catch (error) {
      if (!isEventFailure(error)) throw error;
      // One event (at least) failed: each on its own, so the others are delivered and only it counts an attempt.
      let delivered = 0;
      for (const row of claimed) delivered += await this.round(topics, 1, [row.id], [], retries);
      return result(delivered);
    }
  }

  // The transaction of one round; `claimed` receives what it locked, for the caller to retry one by one.
  private round(topics: string[], limit: number, ids: readonly string[] | undefined, claimed: OutboxRow[], retries: number[]): Promise<number> {
    return this.txHost.run({ isolation: IsolationLevel.READ_COMMITTED }, async () => {
      const rows = await this.txHost.query<OutboxRow>(
        ids ? outboxSql.claimIds(this.settings.table) : outboxSql.claim(this.settings.table),
        ids ? [topics, limit, ids] : [topics, limit],
      );
      const deliverable = await this.inKeyOrder(rows);
      claimed.push(...deliverable);
      if (deliverable.length === 0) return 0;
      if (deliverable.length === 1) return this.deliverOne(deliverable[0]!, retries);
      // Many: no savepoint per event (a round trip each); a failure rolls the round back and they go one by one.
      for (const row of deliverable) await this.handle(row);
      await this.markDelivered(deliverable);
      return deliverable.length;
    });
  }

  // One event, its handlers in a savepoint: when they fail, their writes are undone and the failure is recorded in
  // the transaction that still holds the event's row, so no other delivery can take it before its attempt counts.
  private async deliverOne(row: OutboxRow, retries: number[]): Promise<number> {
    try {
      await this.txHost.run({ propagation: Propagation.NESTED }, () => this.handle(row));
    } catch (error) {
      if (!isEventFailure(error)) throw error;
      const retryInMs = await this.recordFailure(row, error);
      if (retryInMs !== undefined) retries.push(retryInMs);
      return 0;
    }
    await this.markDelivered([row]);
    return 1;
  }

  private async markDelivered(rows: OutboxRow[]): Promise<void> {
    const sql = this.settings.retentionMs === 0 ? outboxSql.deleteDelivered(this.settings.table) : outboxSql.markDelivered(this.settings.table);
    await this.txHost.query(sql, [rows.map((row) => row.id)]);
    if (telemetry) for (const [topic, count] of countByTopic(rows)) recordDelivered(telemetry, topic, count);
  }

  // The rows this round may deliver: unkeyed ones, and a key's rows as far as every pending row of that key before
  // them is in this round too (another replica may hold the key's earlier ones, or a failed one may wait to retry).
  private async inKeyOrder(rows: OutboxRow[]): Promise<OutboxRow[]> {
    const lastOfKey = new Map<string, string>();
    for (const row of rows) if (row.key !== null) lastOfKey.set(row.key, row.id);
    if (lastOfKey.size === 0) return rows;
    const heads = await this.txHost.query<{ key: string; ids: string[] }>(outboxSql.keyHeads(this.settings.table), [[...lastOfKey.keys()], [...lastOfKey.values()]]);
    const mine = new Set(rows.map((row) => row.id));
    const inOrder = new Set<string>();
    for (const { ids } of heads) {
      for (const id of ids) {
        if (!mine.has(id)) break;
        inOrder.add(id);
      }
    }
    return rows.filter((row) => row.key === null || inOrder.has(row.id));
  }

  private async handle(row: OutboxRow): Promise<void> {
    const event = toOutboxEvent(row);
    const run = async () => {
      for (const handler of this.handlers.of(row.topic)) {
        try {
          await handler.handle(event.payload, event);
        } catch (error) {
          throw new HandlerFailure(row, handler.name, error);
        }
      }
    };
    if (!telemetry) return run();
    return traceDelivery(telemetry, { topic: row.topic, attempt: event.attempt, traceParent: row.trace_parent, lagSeconds: row.lag_seconds }, run);
  }

  // Returns when the event is due again, unless it was parked.
  private async recordFailure(row: OutboxRow, failure: unknown): Promise<number | undefined> {
    const { handler, error } = failure instanceof HandlerFailure ? failure : { handler: 'a handler', error: failure };
    const text = describeError(error);
    const { maxAttempts, backoff } = this.settings;
    const [after] = await this.txHost.query<{ status: string; retry_in_ms: number }>(outboxSql.recordFailure(this.settings.table), [row.id, text, maxAttempts, backoff.minMs, backoff.maxMs]);
    const attempt = row.attempts + 1;
    const parked = after!.status === 'failed';
    if (telemetry) recordDeliveryFailure(telemetry, row.topic, parked ? 'parked' : 'retry');
    const what = `Outbox event ${row.id} (topic ${row.topic}): ${handler} failed on attempt ${attempt} of ${maxAttempts}: ${text}`;
    if (parked) {
      this.logger.error(`${what}. Parked as failed: see OutboxService.failed(), retry it with replay().`);
      return undefined;
    }
    this.logger.warn(`${what}. It will be tried again after a backoff.`);
    return Math.max(0, after!.retry_in_ms);
  }
}

// A handler's error, or a commit refused because a handler swallowed a failed statement of its transaction.
function isEventFailure(error: unknown): boolean {
  return error instanceof HandlerFailure || error instanceof RollbackOnlyError;
}

function describeError(error: unknown): string {
  const text = error instanceof Error ? `${error.constructor?.name ?? error.name}: ${error.message}` : String(error);
  return text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT - 3)}...` : text;
}

function countByTopic(rows: OutboxRow[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const row of rows) counts.set(row.topic, (counts.get(row.topic) ?? 0) + 1);
  return counts;
}
