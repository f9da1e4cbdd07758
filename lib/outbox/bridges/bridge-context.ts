import { Inject, Injectable, type DynamicModule, type Logger, type OnModuleInit, type Type } from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, ModuleRef } from '@nestjs/core';
import { TransactionEndedError, TxLockConfigurationError } from '../../errors.js';
import { TransactionHost } from '../../transaction/transaction.host.js';
import { getTxLockToken } from '../../txlock-tokens.js';
import { OutboxService } from '../outbox.service.js';

/** What a bridge is given: the app, and the transactions and outbox of its DataSource registration. */
export interface BridgeContext<Options> {
  moduleRef: ModuleRef;
  discovery: DiscoveryService;
  txHost: TransactionHost;
  outbox: OutboxService;
  options: Options;
}

/**
 * The module of a bridge: `install` runs once every provider exists (onModuleInit, before the relay starts at
 * bootstrap), with the TransactionHost and OutboxService of the registration `options.dataSource` names. The bridge's
 * provider injects OutboxService, so the outbox counts as used (its table is checked, or created with autoCreate).
 */
export function bridgeModule<Options extends { dataSource?: string }>(
  module: Type,
  options: Options,
  install: (context: BridgeContext<Options>) => Promise<void>,
): DynamicModule {
  @Injectable()
  class OutboxBridge implements OnModuleInit {
    constructor(
      private readonly moduleRef: ModuleRef,
      private readonly discovery: DiscoveryService,
      @Inject(getTxLockToken(TransactionHost, options.dataSource)) private readonly txHost: TransactionHost,
      @Inject(getTxLockToken(OutboxService, options.dataSource)) private readonly outbox: OutboxService,
    ) {}

    onModuleInit(): Promise<void> {
      return install({ moduleRef: this.moduleRef, discovery: this.discovery, txHost: this.txHost, outbox: this.outbox, options });
    }
  }
  Object.defineProperty(OutboxBridge, 'name', { value: `${module.name}Bridge` });
  return { module, imports: [DiscoveryModule], providers: [OutboxBridge] };
}

/**
 * Loads an optional peer (`@nestjs/cqrs`, `@nestjs/event-emitter`) that a bridge needs, with an error that says to
 * install it: the library itself never imports them, so apps without them load none of this.
 */
export async function loadPeer<T>(name: string, load: () => Promise<T>, bridge: string): Promise<T> {
  try {
    return await load();
  } catch (error) {
    throw new TxLockConfigurationError(`${bridge} needs ${name}, which could not be loaded (${error instanceof Error ? error.message : String(error)}): npm install ${name}.`);
  }
}

/**
 * Publishes on the outbox for a caller that does not await (an emit(), EventBus.publish()), inside the caller's
 * transaction: the statement is queued on the transaction before this returns, so its COMMIT comes after it, and a
 * failure of the statement fails that COMMIT (PostgreSQL aborted the transaction). Refusals (a payload JSON cannot
 * carry) are thrown at once.
 */
export function publishFromBridge(outbox: OutboxService, topic: string, payload: unknown, logger: Logger): void {
  outbox.enqueue(topic, payload).catch((error: unknown) => {
    // Refused because the transaction rolled back first: nothing to publish, as for an awaited publish().
    if (error instanceof TransactionEndedError) return;
    logger.error(`Outbox bridge: publishing on ${topic} failed (its transaction cannot commit): ${error instanceof Error ? error.message : String(error)}`);
  });
}

/** True when the caller is inside a transaction of `txHost`'s DataSource that has not ended. */
export function inOpenTransaction(txHost: TransactionHost): boolean {
  const scope = txHost.scope();
  return scope !== undefined && !scope.refusal();
}
