import type { Type } from '@nestjs/common';
import type { DiscoveryService } from '@nestjs/core';
import { TxLockConfigurationError } from '../errors.js';
import type { OutboxEvent } from './outbox-event.js';
import { outboxHandlerMarks } from './on-outbox-event.decorator.js';

/** A handler of one topic: a discovered `@OnOutboxEvent()` method, or a bridge's. */
export interface OutboxHandler {
  /** `Class.method`, for logs and errors. */
  name: string;
  handle(payload: unknown, event: OutboxEvent): unknown;
}

/**
 * The handlers of one TxLockModule registration's outbox, by topic: the `@OnOutboxEvent()` methods of the app's
 * singleton providers (discovered once, at bootstrap) and those the bridges add.
 */
export class OutboxHandlers {
  private readonly byTopic = new Map<string, OutboxHandler[]>();
  private discovered = false;

  /** Adds `handler` for `topic`. */
  add(topic: string, handler: OutboxHandler): void {
    const list = this.byTopic.get(topic) ?? [];
    this.byTopic.set(topic, [...list, handler]);
  }

  /** The handlers of `topic`, in the order they were added. */
  of(topic: string): readonly OutboxHandler[] {
    return this.byTopic.get(topic) ?? [];
  }

  /** Every topic with a handler. */
  topics(): string[] {
    return [...this.byTopic.keys()];
  }

  /**
   * Adds the `@OnOutboxEvent()` methods of the app's providers for the DataSource registration `dataSource`, once.
   * A request- or transient-scoped provider with one is refused: the relay has no request to resolve it for.
   */
  discover(discovery: DiscoveryService, dataSource: string): void {
    if (this.discovered) return;
    this.discovered = true;
    for (const wrapper of discovery.getProviders()) {
      const type = wrapper.metatype as Type | undefined;
      if (typeof type !== 'function') continue;
      const marks = outboxHandlerMarks(type).filter((mark) => mark.dataSource === dataSource);
      if (marks.length === 0) continue;
      const instance = wrapper.instance as Record<string | symbol, (...args: unknown[]) => unknown> | undefined;
      if (!wrapper.isDependencyTreeStatic() || !instance) {
        throw new TxLockConfigurationError(
          `${type.name} has @OnOutboxEvent() handlers but is not a singleton provider (request or transient scope): the relay ` +
            `calls handlers outside any request. Move the handlers to a singleton provider.`,
        );
      }
      for (const { topic, method } of marks) {
        this.add(topic, { name: `${type.name}.${String(method)}`, handle: (payload, event) => instance[method]!.call(instance, payload, event) });
      }
    }
  }
}
