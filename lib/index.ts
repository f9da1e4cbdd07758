// The public API of nestjs-txlock: exactly what this file exports. Each symbol is documented where it is declared.

// Module
export { TxLockModule } from './txlock.module.js';
export { TXLOCK_MODULE_OPTIONS } from './txlock.module-definition.js';
export type { TxLockModuleOptions } from './txlock-options.interface.js';
export type { PoolerMode } from './server/pooler.js';
export { getTxLockToken, InjectTxLock, type TxLockService } from './txlock-tokens.js';

// Transactions
export { TransactionHost } from './transaction/transaction.host.js';
export type { TransactionHook } from './transaction/transaction-scope.js';
export { Transactional, type TransactionalOptions } from './transaction/transactional.decorator.js';
export { InjectTxRepository, getTxRepositoryToken } from './transaction/tx-repository.js';
export { IsolationLevel, Propagation, type TransactionOptions } from './transaction/transaction.options.js';
export type { SettingValue, TransactionSettings } from './transaction/transaction-settings.js';
export type { SettingsContext } from './transaction/request-context.js';
export { DEFAULT_VANISHED_CLIENT_TIMEOUT_MS } from './transaction/vanished-client.js';

// Locks: advisory and table locks
export { LockService } from './locks/lock.service.js';
export type { AdvisoryLockHolder } from './locks/lock-holders.js';
export { AdvisoryLock, type AdvisoryLockOptions } from './locks/advisory-lock.decorator.js';
export { TableLock, type TableLockDecoratorOptions } from './locks/table-lock.decorator.js';
export { TxLockExceptionFilter, type LockedResponseBody } from './locks/lock-exception.filter.js';
export { advisoryLockKey, DEFAULT_LOCK_NAMESPACE, RESERVED_LOCK_NAMESPACE, type LockKey, type LockKeyPart } from './locks/lock-key.js';
export type { LockRunResult } from './locks/lock-result.js';
export { TableLockMode, type AdvisoryLockCallOptions, type LockPropagation, type LockWaitOptions, type TableLockOptions } from './locks/lock.options.js';
export type { TableTarget } from './locks/table-targets.js';

// Counters
export { CounterService } from './counters/counter.service.js';
export { TxLockCounter } from './counters/counter.entity.js';
export { MAX_COUNTER_KEY_LENGTH, type BigIntValueOption, type CounterValue, type Integer } from './counters/counter-value.js';
export { MAX_COUNTER_SHARDS } from './counters/counter-shards.js';
export type {
  BoundedResult,
  ColumnBoundOptions,
  CounterIncrementOptions,
  CounterBoundOptions,
  CounterModuleOptions,
  CounterWindowOptions,
} from './counters/counter.options.js';

// Get-or-create
export { AtomicService } from './atomic/atomic.service.js';
export type { BulkGetOrCreateOptions, BulkGetOrCreateResult, GetOrCreateOptions, GetOrCreateResult } from './atomic/atomic.options.js';
export type { EntityValues } from './common/entity-table.js';

// Leases
export { LeaseService, type Lease, type LeaseHolder, type LeaseRunResult } from './leases/lease.service.js';
export { ScheduledLock, type ScheduledLockOptions } from './leases/scheduled-lock.decorator.js';
export { LeaseEntity } from './leases/lease.entity.js';
export type { LeaseOptions, LeaseRunOptions, LeaseModuleOptions } from './leases/lease.options.js';

// Single flight
export { SingleFlightService } from './single-flight/single-flight.service.js';
export { SingleFlight, type SingleFlightDecoratorOptions } from './single-flight/single-flight.decorator.js';
export { SingleFlightEntity } from './single-flight/single-flight.entity.js';
export type { SingleFlightOptions, SingleFlightModuleOptions } from './single-flight/single-flight.options.js';

// Transactional outbox
export { OutboxService, type OutboxCounts } from './outbox/outbox.service.js';
export { OnOutboxEvent, type OnOutboxEventOptions } from './outbox/on-outbox-event.decorator.js';
export { OutboxRelay } from './outbox/outbox.relay.js';
export type { FailedOutboxEvent, OutboxEvent } from './outbox/outbox-event.js';
export type { OutboxModuleOptions, OutboxWakeup, PublishOptions } from './outbox/outbox.options.js';
export { OutboxEventEntity } from './outbox/outbox.entity.js';
export { TxLockOutboxMigration } from './outbox/outbox.migration.js';
export { OutboxCqrsModule, CQRS_TOPIC_PREFIX, type OutboxCqrsOptions } from './outbox/bridges/outbox-cqrs.module.js';
export { OutboxEventEmitterModule, EVENT_EMITTER_TOPIC_PREFIX, type OutboxEventEmitterOptions } from './outbox/bridges/outbox-event-emitter.module.js';

// Shutdown and rolling deploys (docs/production.md)
export { DEFAULT_SHUTDOWN_GRACE_MS, type ShutdownModuleOptions } from './lifecycle/shutdown.options.js';

// The library's tables
export { TxLockTablesMigration } from './tables/tables.migration.js';

// Observability (docs/observability.md): recorded when an OpenTelemetry provider is registered before bootstrap
export type { LeaseOutcome, LockAcquireOutcome, LockFeature, OutboxFailureOutcome, TransactionOutcome } from './telemetry/telemetry.types.js';

// Limits and errors
export { MAX_DURATION_MS, MAX_TIMER_MS } from './common/durations.js';
export * from './errors.js';
