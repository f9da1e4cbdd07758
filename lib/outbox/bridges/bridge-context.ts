import type { Logger } from '@nestjs/common';
import { TxLockConfigurationError } from '../../errors.js';
import type { TransactionHost } from '../../transaction/transaction.host.js';
import type { OutboxService } from '../outbox.service.js';

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
  outbox.enqueue(topic, payload).catch((error: unknown) => logger.error(`Outbox bridge: publishing on ${topic} failed: ${error instanceof Error ? error.message : String(error)}`));
}

/** True when the caller is inside a transaction of `txHost`'s DataSource that has not ended. */
export function inOpenTransaction(txHost: TransactionHost): boolean {
  const scope = txHost.scope();
  return scope !== undefined && !scope.refusal();
}
