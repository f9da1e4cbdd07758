import { Module, type DynamicModule } from '@nestjs/common';
import type { EntityTarget, ObjectLiteral } from 'typeorm';
import { TransactionHost } from './transaction/transaction.host.js';
import { createTxRepositoryProviders } from './transaction/tx-repository.js';
import { ConfigurableTxLockModule } from './txlock.module-definition.js';

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
/** Hosts the `forFeature()` repositories; it needs TransactionHost, which the global root module exports. */
@Module({})
class TxLockFeatureModule {}

@Module({
  providers: [TransactionHost],
  exports: [TransactionHost],
})
export class TxLockModule extends ConfigurableTxLockModule {
  /** Registers `@InjectTxRepository(entity)` providers for these entities. */
  static forFeature(entities: EntityTarget<ObjectLiteral>[]): DynamicModule {
    const providers = createTxRepositoryProviders(entities);
    return { module: TxLockFeatureModule, providers, exports: providers };
  }
}
