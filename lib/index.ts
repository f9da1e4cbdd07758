export * from './errors.js';
export { TxLockModule } from './txlock.module.js';
export { TXLOCK_MODULE_OPTIONS } from './txlock.module-definition.js';
export type { TxLockModuleOptions } from './txlock-options.interface.js';
export { TransactionHost } from './transaction/transaction.host.js';
export type { TransactionHook } from './transaction/transaction-scope.js';
export { Transactional } from './transaction/transactional.decorator.js';
export { InjectTxRepository, getTxRepositoryToken } from './transaction/tx-repository.js';
export { IsolationLevel, Propagation, type TransactionOptions } from './transaction/transaction.options.js';
export { LeaseService, type Lease, type LeaseHolder, type LeaseRunResult } from './leases/lease.service.js';
export { ScheduledLock } from './leases/scheduled-lock.decorator.js';
export { LeaseEntity } from './leases/lease.entity.js';
export type { LeaseOptions, LeaseRunOptions, LeaseModuleOptions } from './leases/lease.options.js';
export { CounterService } from './counters/counter.service.js';
export { TxLockCounter } from './counters/counter.entity.js';
export { MAX_COUNTER_KEY_LENGTH, type CounterValue, type Integer } from './counters/counter-value.js';
export type {
  BoundedResult,
  ColumnBoundOptions,
  CounterBoundOptions,
  CounterModuleOptions,
  CounterWindowOptions,
} from './counters/counter.options.js';
export { AtomicService } from './atomic/atomic.service.js';
export type { BulkGetOrCreateOptions, BulkGetOrCreateResult, GetOrCreateOptions, GetOrCreateResult } from './atomic/atomic.options.js';
export type { EntityValues } from './common/entity-table.js';
