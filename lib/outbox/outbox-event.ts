/**
 * One event as its handlers receive it (after the transaction that published it committed).
 *
 * @example
 * @OnOutboxEvent('post.liked')
 * async notify(payload: { postId: number; userId: string }, event: OutboxEvent) {
 *   await this.mailer.send({ idempotencyKey: `outbox:${event.id}`, ... }); // at-least-once: let the receiver drop repeats
 * }
 */
export interface OutboxEvent<Payload = unknown> {
  /** Unique within its outbox table, and the same on every attempt: the idempotency key for handlers outside the database. */
  id: string;
  topic: string;
  /** The ordering key it was published with, or null. */
  key: string | null;
  /** The payload as JSON carried it (`JSON.parse(JSON.stringify(payload))` of what was published). */
  payload: Payload;
  /** This delivery's attempt, from 1. Attempts that a killed replica rolled back are not counted. */
  attempt: number;
  /** When its row was written (database clock). */
  publishedAt: Date;
}

/** An event parked after its last attempt, as `OutboxService.failed()` lists it. */
export interface FailedOutboxEvent extends OutboxEvent {
  /** The last attempt's error: its class and message. */
  lastError: string | null;
}

/** A row as the delivery statements read it. */
export interface OutboxRow {
  id: string;
  topic: string;
  key: string | null;
  payload: unknown;
  attempts: number;
  created_at: Date;
  trace_parent: string | null;
  lag_seconds: number;
  last_error?: string | null;
}

/** The event a handler receives for `row`, on its next attempt. */
export function toOutboxEvent(row: OutboxRow): OutboxEvent {
  return { id: row.id, topic: row.topic, key: row.key, payload: row.payload, attempt: row.attempts + 1, publishedAt: row.created_at };
}
