import { Logger, Module, type DynamicModule } from '@nestjs/common';
import type { DiscoveryService } from '@nestjs/core';
import { bridgeModule, inOpenTransaction, loadPeer, publishFromBridge, type BridgeContext } from './bridge-context.js';

/** Options of `OutboxEventEmitterModule.forRoot()`. */
export interface OutboxEventEmitterOptions {
  /** Which events go through the outbox when emitted in a transaction: names, or a test of the name. Default: every string name. */
  events?: readonly string[] | ((name: string) => boolean);
  /** The name of the DataSource (its TxLockModule registration) whose transactions and outbox to use. Default: the default one. */
  dataSource?: string;
}

/** The topic an emitted event travels on. */
export const EVENT_EMITTER_TOPIC_PREFIX = 'event-emitter:';

/** What the bridge needs of @nestjs/event-emitter's EventEmitter2 (kept structural: the package is optional). */
interface Emitter {
  emit(event: unknown, ...values: unknown[]): boolean;
  emitAsync(event: unknown, ...values: unknown[]): Promise<unknown[]>;
}

const logger = new Logger('TxLock');
// A name in a variable: the compiler resolves nothing of the optional peer, which apps without it need not have.
const EVENT_EMITTER_PACKAGE: string = '@nestjs/event-emitter';

/**
 * The bridge's work: `emit()` inside a transaction of the DataSource, of a selected event that has `@OnEvent()`
 * listeners of that exact name, publishes it on the outbox (topic `event-emitter:<name>`, the arguments as the JSON
 * payload) instead of calling the listeners, and returns true; after the transaction committed, the relay calls the
 * listeners with `emitAsync()` inside its delivery transaction and awaits them. Outside a transaction, and for other
 * events (wildcard listeners only, symbols), `emit()` is untouched.
 */
async function installEventEmitterBridge({ moduleRef, discovery, txHost, outbox, options }: BridgeContext<OutboxEventEmitterOptions>): Promise<void> {
  const { EventEmitter2, EVENT_LISTENER_METADATA } = await loadPeer<{ EventEmitter2: unknown; EVENT_LISTENER_METADATA: string }>(
    EVENT_EMITTER_PACKAGE,
    () => import(EVENT_EMITTER_PACKAGE),
    'OutboxEventEmitterModule',
  );
  const emitter = moduleRef.get<Emitter>(EventEmitter2 as string, { strict: false });
  const selected = selector(options.events);
  // Events with an @OnEvent() listener of that exact name: each gets an outbox topic, and only those are bridged.
  const bridged = new Set(listenedNames(discovery, EVENT_LISTENER_METADATA).filter(selected));
  for (const name of bridged) {
    outbox.handlers.add(`${EVENT_EMITTER_TOPIC_PREFIX}${name}`, {
      name: `@OnEvent('${name}') listeners`,
      handle: async (values) => {
        await emitter.emitAsync(name, ...(values as unknown[]));
      },
    });
  }
  const emit = emitter.emit.bind(emitter);
  emitter.emit = (event: unknown, ...values: unknown[]): boolean => {
    if (typeof event !== 'string' || !bridged.has(event) || !inOpenTransaction(txHost)) return emit(event, ...values);
    publishFromBridge(outbox, `${EVENT_EMITTER_TOPIC_PREFIX}${event}`, values, logger);
    return true;
  };
}

function selector(events: OutboxEventEmitterOptions['events']): (name: string) => boolean {
  if (events === undefined) return () => true;
  if (typeof events === 'function') return events;
  const names = new Set(events);
  return (name) => names.has(name);
}

// The string event names of the @OnEvent() methods of the app's singleton providers (@nestjs/event-emitter registers
// their listeners only at onApplicationBootstrap, after the relay needs its topics). An array name is joined with the
// default delimiter, as EventEmitter2 does; symbols cannot travel as JSON and are left alone.
function listenedNames(discovery: DiscoveryService, metadataKey: string): string[] {
  const names: string[] = [];
  for (const wrapper of discovery.getProviders()) {
    const instance = wrapper.instance as Record<string, unknown> | undefined;
    if (!wrapper.isDependencyTreeStatic() || !instance || typeof instance !== 'object') continue;
    for (let proto = Object.getPrototypeOf(instance); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
      for (const key of Object.getOwnPropertyNames(proto)) {
        const method = Object.getOwnPropertyDescriptor(proto, key)?.value as unknown;
        if (typeof method !== 'function') continue;
        const metadata = Reflect.getMetadata(metadataKey, method) as { event: unknown }[] | { event: unknown } | undefined;
        for (const { event } of metadata === undefined ? [] : Array.isArray(metadata) ? metadata : [metadata]) {
          if (typeof event === 'string') names.push(event);
          else if (Array.isArray(event)) names.push(event.join('.'));
        }
      }
    }
  }
  return names;
}

/**
 * Opt-in bridge from @nestjs/event-emitter to the outbox (import it after `EventEmitterModule.forRoot()`):
 * `eventEmitter.emit('order.placed', order)` inside a transaction no longer calls the listeners before the transaction
 * has committed (or even when it rolls back); it publishes the event with the transaction, and the listeners run after
 * the commit, in the relay's delivery transaction, at least once (exactly once for their writes to the same database).
 * `@nestjs/event-emitter` stays an optional peer dependency.
 *
 * @example
 * imports: [EventEmitterModule.forRoot(), TxLockModule.forRoot(), OutboxEventEmitterModule.forRoot({ events: ['order.placed'] })]
 */
@Module({})
export class OutboxEventEmitterModule {
  /** The bridge for the transactions and outbox of `options.dataSource` (default: the default DataSource). */
  static forRoot(options: OutboxEventEmitterOptions = {}): DynamicModule {
    return bridgeModule(OutboxEventEmitterModule, options, installEventEmitterBridge);
  }
}
