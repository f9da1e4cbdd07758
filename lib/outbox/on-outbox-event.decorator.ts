import { allowedKeys, checkOptionKeys } from '../common/option-keys.js';
import { processWide } from '../common/process-state.js';
import { validateDataSourceName } from '../common/wrap-method.js';
import { InvalidOptionError, TxLockConfigurationError } from '../errors.js';
import { DEFAULT_DATA_SOURCE_NAME } from '../transaction/resolve-data-source.js';
import { validateOutboxText } from './outbox.options.js';

/** Options of `@OnOutboxEvent()`. */
export interface OnOutboxEventOptions {
  /** The name of the DataSource (its TxLockModule registration) whose outbox the handler reads. Default: the default one. */
  dataSource?: string;
}

/** One decorated method, as recorded on its class. */
export interface OutboxHandlerMark {
  topic: string;
  method: string | symbol;
  dataSource: string;
}

// One key for both builds: a handler marked through one copy's decorator is found by the other copy's relay.
const HANDLER_MARKS = processWide('outbox-handlers-key', () => Symbol('nestjs-txlock:outbox-handlers'));
const DECORATOR_KEYS = allowedKeys<OnOutboxEventOptions>('@OnOutboxEvent()', { dataSource: true });

/**
 * Makes a provider method a handler of the outbox topic `topic`: after a transaction that published on it commits,
 * the relay calls `method(payload, event)` in a transaction of its own that also marks the event delivered, so the
 * handler's writes to the same database happen exactly once (a failed or killed delivery rolls both back, and it is
 * tried again). Discovered at bootstrap on singleton providers. Several handlers of one topic run in one
 * transaction, one after the other; if one throws, the event is retried for all of them.
 *
 * @example
 * @OnOutboxEvent('post.liked')
 * async notify({ postId, userId }: PostLiked): Promise<void> {
 *   await this.notifications.insert({ postId, text: `${userId} liked your post` }); // same transaction as the delivery
 * }
 */
export function OnOutboxEvent(topic: string, options: OnOutboxEventOptions = {}): MethodDecorator {
  validateOutboxText(topic, '@OnOutboxEvent() topic');
  if (typeof options !== 'object' || options === null) throw new InvalidOptionError('@OnOutboxEvent() options', options, 'an object { dataSource? }');
  checkOptionKeys(options, DECORATOR_KEYS);
  const dataSource = validateDataSourceName(options.dataSource, '@OnOutboxEvent()') ?? DEFAULT_DATA_SOURCE_NAME;
  return (target, method, descriptor) => {
    if (typeof descriptor.value !== 'function') {
      throw new TxLockConfigurationError(`@OnOutboxEvent() can only decorate methods, but ${String(method)} is not one.`);
    }
    const type = target.constructor;
    // A subclass starts from its base class's handlers (inherited methods are handlers of its instances too).
    const marks = (Reflect.getOwnMetadata(HANDLER_MARKS, type) ?? Reflect.getMetadata(HANDLER_MARKS, type) ?? []) as OutboxHandlerMark[];
    Reflect.defineMetadata(HANDLER_MARKS, [...marks, { topic, method, dataSource }], type);
  };
}

/** The `@OnOutboxEvent()` methods of `type` (its own and its base classes'). */
export function outboxHandlerMarks(type: Function): OutboxHandlerMark[] {
  return (Reflect.getMetadata(HANDLER_MARKS, type) ?? []) as OutboxHandlerMark[];
}
