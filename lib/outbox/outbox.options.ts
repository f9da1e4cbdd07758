import { assertDurationMs, MAX_DURATION_MS, MAX_TIMER_MS } from '../common/durations.js';
import { allowedKeys, checkOptionKeys, type KeyList } from '../common/option-keys.js';
import { qualifiedTableName } from '../common/sql.js';
import { isWellFormed, WELL_FORMED_TEXT } from '../common/text.js';
import { InvalidOptionError } from '../errors.js';
import type { PoolerMode } from '../server/pooler.js';

/** The `outbox` option of TxLockModule: where events are kept and how this replica's relay delivers them. */
export interface OutboxModuleOptions {
  /** The outbox table, `name` or `schema.name`. Default `'txlock_outbox'` (what OutboxEventEntity and TxLockOutboxMigration create). */
  table?: string;
  /** Create the table at bootstrap when it is missing (under an advisory lock, safe with replicas starting together). Default: the module's `autoCreate`. */
  autoCreate?: boolean;
  /**
   * Run a relay in this process, delivering committed events to the `@OnOutboxEvent()` handlers it has. Default `true`
   * (it starts only when the app has handlers). `false` for processes that publish only.
   */
  relay?: boolean;
  /** Events one delivery transaction takes at most. Default 100. */
  batchSize?: number;
  /**
   * Delivery loops in this process, each with its own transaction (and pooled connection) while events flow. Default 2:
   * one loop's handlers run while the other waits for the database.
   */
  concurrency?: number;
  /**
   * How new events wake the relay: `'notify'` (LISTEN/NOTIFY on a dedicated connection, polling as a fallback) or
   * `'poll'`. Default: `'notify'`, except behind a transaction-mode pooler (`pooler: 'transaction'`, or a pooler found on
   * the relay's connection), where LISTEN does not work and the relay polls.
   */
  wakeup?: OutboxWakeup;
  /** How often the relay looks for due events without being woken, ms. Default 1000 with NOTIFY, 200 when polling. */
  pollIntervalMs?: number;
  /** Attempts before an event is parked as `failed` (visible with `failed()`, replayable with `replay()`). Default 10. */
  maxAttempts?: number;
  /** Backoff between attempts, ms: `minMs * 2^attempts`, at most `maxMs`, jittered down to half. Default `{ minMs: 1000, maxMs: 300000 }`. */
  backoff?: { minMs: number; maxMs: number };
  /** How long delivered events are kept before the relay deletes them, ms; 0 deletes them at delivery. Default 7 days. */
  retentionMs?: number;
  /** The largest payload `publish()` accepts, in bytes of its JSON text. Default 262144 (256 KiB). */
  maxPayloadBytes?: number;
  /** On shutdown, how long the relay waits for the deliveries in hand before it leaves them to be rolled back, ms. Default 10000. */
  drainTimeoutMs?: number;
}

/** How the relay learns of new events. */
export type OutboxWakeup = 'notify' | 'poll';

/** Options of `OutboxService.publish()`. */
export interface PublishOptions {
  /**
   * Events with the same key are delivered one after the other, in the order their transactions committed; events
   * without a key may be delivered in parallel. A non-empty string. Default: none.
   */
  key?: string;
  /** Deliver no earlier than this many ms after the publishing transaction (database clock). Default 0. */
  delayMs?: number;
}

/** The outbox settings a TxLockModule registration runs with, defaults applied. */
export interface OutboxSettings {
  table: string;
  autoCreate: boolean;
  relay: boolean;
  batchSize: number;
  concurrency: number;
  wakeup: OutboxWakeup;
  pollIntervalMs: number | undefined;
  maxAttempts: number;
  backoff: { minMs: number; maxMs: number };
  retentionMs: number;
  maxPayloadBytes: number;
  drainTimeoutMs: number;
}

/** The default name of the outbox table. */
export const DEFAULT_OUTBOX_TABLE = 'txlock_outbox';
const WAKEUPS: readonly OutboxWakeup[] = ['notify', 'poll'];
const MAX_BATCH = 10_000;
const MAX_CONCURRENCY = 64;
// A jsonb value holds up to 255 MiB; well below it, so one event never makes a delivery transaction huge.
const MAX_PAYLOAD_LIMIT = 64 * 1024 * 1024;

/** The keys of OutboxModuleOptions, for the module options' check. */
export const OUTBOX_MODULE_KEYS = allowedKeys<OutboxModuleOptions>('TxLockModule', {
  table: true,
  autoCreate: true,
  relay: true,
  batchSize: true,
  concurrency: true,
  wakeup: true,
  pollIntervalMs: true,
  maxAttempts: true,
  backoff: true,
  retentionMs: true,
  maxPayloadBytes: true,
  drainTimeoutMs: true,
});

const PUBLISH_KEYS: KeyList<PublishOptions> = { key: true, delayMs: true };
const PUBLISH_CALL = allowedKeys<PublishOptions>('OutboxService.publish()', PUBLISH_KEYS);

/**
 * The outbox settings of one registration, from the module options: InvalidOptionError (naming the option and its
 * valid values) for anything out of range. `moduleAutoCreate` and `pooler` are the module-wide options.
 */
export function outboxSettings(options: OutboxModuleOptions | undefined, moduleAutoCreate: boolean | undefined, pooler: PoolerMode | undefined): OutboxSettings {
  const o = options ?? {};
  const where = (name: string) => `TxLockModule option "outbox.${name}"`;
  for (const name of ['autoCreate', 'relay'] as const) {
    if (o[name] !== undefined && typeof o[name] !== 'boolean') throw new InvalidOptionError(where(name), o[name], [true, false]);
  }
  if (o.wakeup !== undefined && !WAKEUPS.includes(o.wakeup)) throw new InvalidOptionError(where('wakeup'), o.wakeup, WAKEUPS);
  assertCount(o.batchSize, where('batchSize'), MAX_BATCH);
  assertCount(o.concurrency, where('concurrency'), MAX_CONCURRENCY);
  assertCount(o.maxAttempts, where('maxAttempts'), 1_000_000);
  assertCount(o.maxPayloadBytes, where('maxPayloadBytes'), MAX_PAYLOAD_LIMIT);
  assertDurationMs(o.pollIntervalMs, where('pollIntervalMs'), 1, MAX_TIMER_MS, 'MAX_TIMER_MS');
  assertDurationMs(o.drainTimeoutMs, where('drainTimeoutMs'), 0, MAX_TIMER_MS, 'MAX_TIMER_MS');
  assertDurationMs(o.retentionMs, where('retentionMs'), 0, MAX_DURATION_MS, 'MAX_DURATION_MS');
  if (o.backoff !== undefined) {
    if (typeof o.backoff !== 'object' || o.backoff === null) throw new InvalidOptionError(where('backoff'), o.backoff, 'an object { minMs, maxMs }');
    checkOptionKeys(o.backoff, allowedKeys<{ minMs: number; maxMs: number }>('TxLockModule', { minMs: true, maxMs: true }), 'outbox.backoff');
    assertDurationMs(o.backoff.minMs, where('backoff.minMs'), 0, MAX_DURATION_MS, 'MAX_DURATION_MS');
    assertDurationMs(o.backoff.maxMs, where('backoff.maxMs'), o.backoff.minMs ?? 0, MAX_DURATION_MS, 'MAX_DURATION_MS');
    if (o.backoff.minMs === undefined || o.backoff.maxMs === undefined) throw new InvalidOptionError(where('backoff'), o.backoff, 'an object with both minMs and maxMs');
  }
  return {
    table: qualifiedTableName(o.table ?? DEFAULT_OUTBOX_TABLE, 'outbox.table'),
    autoCreate: o.autoCreate ?? moduleAutoCreate ?? false,
    relay: o.relay ?? true,
    batchSize: o.batchSize ?? 100,
    concurrency: o.concurrency ?? 2,
    // Behind a transaction pooler LISTEN would be registered on whichever server connection the pooler picked.
    wakeup: o.wakeup ?? (pooler === 'transaction' ? 'poll' : 'notify'),
    pollIntervalMs: o.pollIntervalMs,
    maxAttempts: o.maxAttempts ?? 10,
    backoff: o.backoff ?? { minMs: 1_000, maxMs: 300_000 },
    retentionMs: o.retentionMs ?? 7 * 24 * 3_600_000,
    maxPayloadBytes: o.maxPayloadBytes ?? 256 * 1024,
    drainTimeoutMs: o.drainTimeoutMs ?? 10_000,
  };
}

/**
 * Throws InvalidOptionError for a bad topic or key (a non-empty string without NUL, well-formed UTF-16), unknown
 * publish options, or a delay out of range; before anything is sent.
 */
export function validatePublish(topic: unknown, options: PublishOptions | undefined): void {
  validateOutboxText(topic, 'OutboxService.publish() topic');
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('OutboxService.publish() options', options, 'an object { key?, delayMs? }');
  checkOptionKeys(options, PUBLISH_CALL);
  if (options.key !== undefined) validateOutboxText(options.key, 'OutboxService.publish() "key"');
  assertDurationMs(options.delayMs, 'OutboxService.publish() "delayMs"', 0, MAX_DURATION_MS, 'MAX_DURATION_MS');
}

/** Throws InvalidOptionError unless `text` is a non-empty string PostgreSQL text can hold exactly (topics, keys). */
export function validateOutboxText(text: unknown, option: string): asserts text is string {
  if (typeof text !== 'string' || text.length === 0) throw new InvalidOptionError(option, text, 'a non-empty string');
  if (text.includes('\u0000')) throw new InvalidOptionError(option, text, 'a string without the NUL character (PostgreSQL text cannot hold it)');
  if (!isWellFormed(text)) throw new InvalidOptionError(option, text, `a string that is ${WELL_FORMED_TEXT}`);
}

function assertCount(value: unknown, option: string, max: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new InvalidOptionError(option, value, `a whole number from 1 to ${max}`);
  }
}
