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
  /** Events it took (locked, in key order). */
  claimed: number;
  /** Events whose handlers ran and whose delivery committed. */
  delivered: number;
  /** When an event whose handler failed in this round is due again, ms from now (the relay sleeps no longer). */
  retryInMs?: number;
  /** True when it gave events back because an earlier event of their key was in another delivery's hands. */
  contended?: boolean;
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

// What the transactions of one deliver() call found, for the relay.
interface RoundState {
  claimed: OutboxRow[];
  retries: number[];
  contended: boolean;
}

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
    const round: RoundState = { claimed: [], retries: [], contended: false };
    const result = (delivered: number): DeliveryRound => ({
      claimed: round.claimed.length,
      delivered,
      ...(round.retries.length ? { retryInMs: Math.min(...round.retries) } : {}),
      ...(round.contended ? { contended: true } : {}),
    });
    try {
      return result(await this.round(topics, this.settings.batchSize, ids, round));
    } catch (error) {
      if (!isEventFailure(error)) throw error;
      // One event (at least) failed: each on its own, so the others are delivered and only it counts an attempt.
      let delivered = 0;
      for (const row of round.claimed) delivered += await this.round(topics, 1, [row.id], { ...round, claimed: [] });
      return result(delivered);
    }
  }

  // The transaction of one round; `state.claimed` receives what it took, for the caller to retry one by one.
  private round(topics: string[], limit: number, ids: readonly string[] | undefined, state: RoundState): Promise<number> {
    return this.txHost.run({ isolation: IsolationLevel.READ_COMMITTED }, async () => {
      // Locked and marked delivered in one statement: the mark commits with the handlers' writes, or not at all.
      const rows = await this.txHost.query<OutboxRow>(
        ids ? outboxSql.claimIds(this.settings.table) : outboxSql.claim(this.settings.table),
        ids ? [topics, limit, ids] : [topics, limit],
      );
      const deliverable = await this.inKeyOrder(rows.sort(byId), state);
      state.claimed.push(...deliverable);
      if (deliverable.length === 0) return 0;
      if (deliverable.length === 1) return this.deliverOne(deliverable[0]!, state.retries);
      // Many: no savepoint per event (a round trip each); a failure rolls the round back and they go one by one.
      for (const row of deliverable) await this.handle(row);
      await this.delivered(deliverable);
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
    await this.delivered([row]);
    return 1;
  }

  // The claim marked them delivered; with retentionMs 0 they are deleted instead.
  private async delivered(rows: OutboxRow[]): Promise<void> {
    if (this.settings.retentionMs === 0) await this.txHost.query(outboxSql.deleteDelivered(this.settings.table), [rows.map((row) => row.id)]);
    if (telemetry) for (const [topic, count] of countByTopic(rows)) recordDelivered(telemetry, topic, count);
  }

  // The rows this round may deliver: unkeyed ones, and a key's rows below its first event still pending elsewhere
  // (another replica holds it, or it waits to be retried); the others are given back, unmarked.
  private async inKeyOrder(rows: OutboxRow[], state: RoundState): Promise<OutboxRow[]> {
    const keys = [...new Set(rows.flatMap((row) => (row.key === null ? [] : [row.key])))];
    if (keys.length === 0) return rows;
    const heads = new Map<string, bigint>();
    for (const { key, head } of await this.txHost.query<{ key: string; head: string }>(outboxSql.keyHeads(this.settings.table), [keys])) heads.set(key, BigInt(head));
    const inOrder = (row: OutboxRow) => row.key === null || !heads.has(row.key) || BigInt(row.id) < heads.get(row.key)!;
    const later = rows.filter((row) => !inOrder(row));
    if (later.length > 0) {
      state.contended = true;
      await this.txHost.query(outboxSql.unclaim(this.settings.table), [later.map((row) => row.id)]);
    }
    return rows.filter(inOrder);
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

function byId(a: OutboxRow, b: OutboxRow): number {
  const [x, y] = [BigInt(a.id), BigInt(b.id)];
  return x < y ? -1 : x > y ? 1 : 0;
}

function countByTopic(rows: OutboxRow[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const row of rows) counts.set(row.topic, (counts.get(row.topic) ?? 0) + 1);
  return counts;
}
