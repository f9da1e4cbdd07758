import { Logger, Module, type DynamicModule } from '@nestjs/common';
import type { DiscoveryService } from '@nestjs/core';
import { TxLockConfigurationError } from '../../errors.js';
import type { OutboxService } from '../outbox.service.js';
import { bridgeModule, inOpenTransaction, loadPeer, publishFromBridge, type BridgeContext } from './bridge-context.js';

/** Options of `OutboxCqrsModule.forRoot()`. */
export interface OutboxCqrsOptions {
  /** The name of the DataSource (its TxLockModule registration) whose transactions and outbox to use. Default: the default one. */
  dataSource?: string;
}

/** The topic an event class travels on: `cqrs:<class name>`. */
export const CQRS_TOPIC_PREFIX = 'cqrs:';

// @EventsHandler()'s metadata key on a handler class: the event classes it handles (@nestjs/cqrs does not export it).
const EVENTS_HANDLER_METADATA = '__eventsHandler__';

/** What the bridge needs of @nestjs/cqrs (structural: the package is an optional peer). */
interface EventPublisher {
  publish(event: object, ...rest: unknown[]): unknown;
  publishAll?(events: object[], ...rest: unknown[]): unknown;
}
interface EventBus {
  publisher: EventPublisher;
}
interface EventHandler {
  handle(event: object): unknown;
}
type EventClass = new (...args: never[]) => object;

const logger = new Logger('TxLock');
// A name in a variable: the compiler resolves nothing of the optional peer, which apps without it need not have.
const CQRS_PACKAGE: string = '@nestjs/cqrs';

/**
 * The bridge's work: the EventBus's publisher (the hook @nestjs/cqrs offers for it) is wrapped so that an event
 * published inside a transaction of the DataSource (`eventBus.publish()`, `publishAll()`, an AggregateRoot's
 * `commit()`) is written to the outbox (topic `cqrs:<class name>`, its own enumerable properties as the JSON payload)
 * instead of reaching the handlers before the commit; after the commit the relay rebuilds an instance of the class and
 * calls each `@EventsHandler()` of it, awaited, in its delivery transaction. Outside a transaction the bus is untouched.
 */
async function installCqrsBridge({ moduleRef, discovery, txHost, outbox }: BridgeContext<OutboxCqrsOptions>): Promise<void> {
  const { EventBus } = await loadPeer<{ EventBus: unknown }>(CQRS_PACKAGE, () => import(CQRS_PACKAGE), 'OutboxCqrsModule');
  const bus = moduleRef.get<EventBus>(EventBus as string, { strict: false });
  const classes = registerHandlers(discovery, outbox);
  const original = bus.publisher;
  const toOutbox = (event: object): boolean => {
    const type = event?.constructor as EventClass | undefined;
    if (!type || classes.get(type.name) !== type || !inOpenTransaction(txHost)) return false;
    publishFromBridge(outbox, `${CQRS_TOPIC_PREFIX}${type.name}`, { ...event }, logger);
    return true;
  };
  bus.publisher = {
    publish: (event, ...rest) => (toOutbox(event) ? undefined : original.publish(event, ...rest)),
    publishAll: (events, ...rest) => {
      const others = events.filter((event) => !toOutbox(event));
      if (others.length === 0) return undefined;
      return original.publishAll ? original.publishAll(others, ...rest) : others.map((event) => original.publish(event, ...rest));
    },
  };
}

// Every event class that has an @EventsHandler(), by name, with an outbox handler per topic that calls them all.
function registerHandlers(discovery: DiscoveryService, outbox: OutboxService): Map<string, EventClass> {
  const classes = new Map<string, EventClass>();
  const handlers = new Map<EventClass, { name: string; instance: EventHandler }[]>();
  for (const wrapper of discovery.getProviders()) {
    const type = wrapper.metatype as (new () => EventHandler) | undefined;
    const events = typeof type === 'function' ? (Reflect.getMetadata(EVENTS_HANDLER_METADATA, type) as EventClass[] | undefined) : undefined;
    if (!events || !wrapper.isDependencyTreeStatic() || !wrapper.instance) continue;
    for (const event of events) {
      const other = classes.get(event.name);
      if (other && other !== event) {
        throw new TxLockConfigurationError(`OutboxCqrsModule: two event classes are named ${event.name}; events travel on the outbox by class name. Rename one of them.`);
      }
      classes.set(event.name, event);
      handlers.set(event, [...(handlers.get(event) ?? []), { name: type!.name, instance: wrapper.instance as EventHandler }]);
    }
  }
  for (const [event, list] of handlers) {
    for (const { name, instance } of list) {
      outbox.handlers.add(`${CQRS_TOPIC_PREFIX}${event.name}`, {
        name: `${name}.handle`,
        handle: (payload) => instance.handle(Object.assign(Object.create(event.prototype) as object, payload)),
      });
    }
  }
  return classes;
}

/**
 * Opt-in bridge from @nestjs/cqrs to the outbox (import it next to `CqrsModule.forRoot()`): events published on the
 * EventBus inside a transaction reach their `@EventsHandler()` handlers only after the transaction committed (never
 * when it rolls back), at least once, and exactly once for their writes to the same database (they run in the relay's
 * delivery transaction). Sagas see only the events published outside transactions. `@nestjs/cqrs` stays an optional
 * peer dependency.
 *
 * @example
 * imports: [CqrsModule.forRoot(), TxLockModule.forRoot(), OutboxCqrsModule.forRoot()]
 */
@Module({})
export class OutboxCqrsModule {
  /** The bridge for the transactions and outbox of `options.dataSource` (default: the default DataSource). */
  static forRoot(options: OutboxCqrsOptions = {}): DynamicModule {
    return bridgeModule(OutboxCqrsModule, options, installCqrsBridge);
  }
}
