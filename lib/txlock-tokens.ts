import { Inject } from '@nestjs/common';
import { DEFAULT_DATA_SOURCE_NAME } from './transaction/resolve-data-source.js';

/** A service of the library (TransactionHost, LockService, CounterService, AtomicService, LeaseService, SingleFlightService, OutboxService). */
export type TxLockService = abstract new (...args: never[]) => unknown;

/**
 * The injection token of `service` for the TxLockModule registration of the DataSource `dataSource` (in the
 * style of @nestjs/typeorm's `getRepositoryToken(entity, name)`): the class itself for the default DataSource,
 * `TxLock(<name>).<Service>` for a named one.
 *
 * @example
 * TxLockModule.forRoot({ dataSource: 'analytics' });
 * moduleRef.get(getTxLockToken(CounterService, 'analytics'));
 */
export function getTxLockToken(service: TxLockService, dataSource: string = DEFAULT_DATA_SOURCE_NAME): TxLockService | string {
  return dataSource === DEFAULT_DATA_SOURCE_NAME ? service : `TxLock(${dataSource}).${service.name}`;
}

/**
 * Injects `service` of the TxLockModule registration of the DataSource `dataSource` (default: the default
 * DataSource, where plain constructor injection works as well).
 *
 * @example
 * constructor(@InjectTxLock(TransactionHost, 'analytics') private readonly analyticsTx: TransactionHost) {}
 */
export const InjectTxLock = (service: TxLockService, dataSource?: string): PropertyDecorator & ParameterDecorator =>
  Inject(getTxLockToken(service, dataSource));
