import { Module, type DynamicModule } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import type { EntityTarget, ObjectLiteral } from 'typeorm';
import { LeaseService } from './leases/lease.service.js';
import { LockService } from './locks/lock.service.js';
import { AtomicService } from './atomic/atomic.service.js';
import { CounterService } from './counters/counter.service.js';
import { ClientDisconnectInterceptor } from './transaction/client-disconnect.interceptor.js';
import { SingleFlightService } from './single-flight/single-flight.service.js';
import { TransactionHost } from './transaction/transaction.host.js';
import { createTxRepositoryProviders } from './transaction/tx-repository.js';
import { ConfigurableTxLockModule } from './txlock.module-definition.js';

/** Hosts the `forFeature()` repositories; it needs TransactionHost, which the global root module exports. */
@Module({})
class TxLockFeatureModule {}

/**
 * The global module: `TxLockModule.forRoot(options)` or `forRootAsync({ imports, inject, useFactory })`
 * once in the app, over the TypeORM DataSource the app already has (PostgreSQL only).
 *
 * @example
 * imports: [
 *   TypeOrmModule.forRoot({ type: 'postgres', url, entities: [Post] }),
 *   TxLockModule.forRoot({ retries: 2 }),
 *   TxLockModule.forFeature([Post]),
 * ]
 */
@Module({
  providers: [{ provide: APP_INTERCEPTOR, useClass: ClientDisconnectInterceptor }, TransactionHost, LeaseService, LockService, CounterService, AtomicService, SingleFlightService],
  exports: [TransactionHost, LeaseService, LockService, CounterService, AtomicService, SingleFlightService],
})
export class TxLockModule extends ConfigurableTxLockModule {
  /** Registers `@InjectTxRepository(entity)` providers for these entities. */
  static forFeature(entities: EntityTarget<ObjectLiteral>[]): DynamicModule {
    const providers = createTxRepositoryProviders(entities);
    return { module: TxLockFeatureModule, providers, exports: providers };
  }
}
