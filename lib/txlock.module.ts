import { Module, type DynamicModule, type Provider, type Type } from '@nestjs/common';
import { PARAMTYPES_METADATA, SELF_DECLARED_DEPS_METADATA } from '@nestjs/common/constants.js';
import { APP_INTERCEPTOR, DiscoveryModule } from '@nestjs/core';
import type { EntityTarget, ObjectLiteral } from 'typeorm';
import { AtomicService } from './atomic/atomic.service.js';
import { CounterService } from './counters/counter.service.js';
import { LeaseService } from './leases/lease.service.js';
import { LockService } from './locks/lock.service.js';
import { OutboxRelay } from './outbox/outbox.relay.js';
import { OutboxService } from './outbox/outbox.service.js';
import { ServerCheck } from './server/server.check.js';
import { SingleFlightService } from './single-flight/single-flight.service.js';
import { LibraryTablesCheck } from './tables/library-tables.check.js';
import { ClientDisconnectInterceptor } from './transaction/client-disconnect.interceptor.js';
import { DEFAULT_DATA_SOURCE_NAME } from './transaction/resolve-data-source.js';
import { TransactionHost } from './transaction/transaction.host.js';
import { createTxRepositoryProviders } from './transaction/tx-repository.js';
import { ASYNC_OPTIONS_TYPE, ConfigurableTxLockModule, OPTIONS_TYPE, TXLOCK_DATA_SOURCE_NAME } from './txlock.module-definition.js';
import { validateModuleOptions } from './txlock-options.validation.js';
import { getTxLockToken } from './txlock-tokens.js';

const SERVICES: Type[] = [TransactionHost, LeaseService, LockService, CounterService, AtomicService, SingleFlightService, OutboxService];

/** Hosts the `forFeature()` repositories; it needs TransactionHost, which the global root module exports. */
@Module({})
class TxLockFeatureModule {}

/**
 * The global module: `TxLockModule.forRoot(options)` or `forRootAsync({ imports, inject, useFactory })` once
 * per TypeORM DataSource the app already has (PostgreSQL only). The default DataSource's services are injected
 * by class; a named DataSource's (`forRoot({ dataSource: 'analytics' })`) with `@InjectTxLock(Service, 'analytics')`.
 *
 * @example
 * imports: [
 *   TypeOrmModule.forRoot({ type: 'postgres', url, entities: [Post] }),
 *   TxLockModule.forRoot({ retries: 2 }),
 * ]
 */
@Module({})
export class TxLockModule extends ConfigurableTxLockModule {
  /** Registers the module over a DataSource (`options.dataSource`: the DataSource or its name; default the default one). */
  static override forRoot(options: typeof OPTIONS_TYPE = {}): DynamicModule {
    // Checked here, before any provider exists (TypeORM's DataSource included), so nothing is left open by the failure.
    validateModuleOptions(options);
    const name = typeof options.dataSource === 'string' ? options.dataSource : DEFAULT_DATA_SOURCE_NAME;
    return withServices(super.forRoot(options), name);
  }

  /**
   * `forRoot()` with options from a factory. `dataSource` names the DataSource this registration serves (its
   * tokens are named after it); the factory may return the DataSource itself as `dataSource`.
   */
  static override forRootAsync(options: typeof ASYNC_OPTIONS_TYPE & { dataSource?: string }): DynamicModule {
    return withServices(super.forRootAsync(options), options.dataSource ?? DEFAULT_DATA_SOURCE_NAME);
  }

  /** Registers `@InjectTxRepository(entity, dataSource?)` providers for these entities of the DataSource `dataSource`. */
  static forFeature(entities: EntityTarget<ObjectLiteral>[], dataSource: string = DEFAULT_DATA_SOURCE_NAME): DynamicModule {
    const providers = createTxRepositoryProviders(entities, dataSource);
    return { module: TxLockFeatureModule, providers, exports: providers };
  }
}

// The default DataSource's registration provides and exports the services under their class tokens. A named
// one provides them under its named tokens only, as subclasses whose own service dependencies are injected by
// those named tokens: a class token of a named registration would be found by `app.get(Service)` as readily as
// the default one's.
function withServices(definition: DynamicModule, name: string): DynamicModule {
  const isDefault = name === DEFAULT_DATA_SOURCE_NAME;
  const services: Provider[] = isDefault ? SERVICES : SERVICES.map((service) => ({ provide: getTxLockToken(service, name), useClass: forDataSource(service, name) }));
  return {
    ...definition,
    imports: [...(definition.imports ?? []), DiscoveryModule],
    providers: [
      ...(definition.providers ?? []),
      { provide: TXLOCK_DATA_SOURCE_NAME, useValue: name },
      { provide: APP_INTERCEPTOR, useClass: ClientDisconnectInterceptor },
      isDefault ? ServerCheck : forDataSource(ServerCheck, name),
      isDefault ? LibraryTablesCheck : forDataSource(LibraryTablesCheck, name),
      isDefault ? OutboxRelay : forDataSource(OutboxRelay, name),
      ...services,
    ],
    exports: [...(definition.exports ?? []), ...SERVICES.map((service) => getTxLockToken(service, name))],
  };
}

/** `service` with the library services it depends on injected from the registration of the DataSource `name`. */
function forDataSource(service: Type, name: string): Type {
  const named = { [service.name]: class extends service {} }[service.name]!;
  const paramTypes = (Reflect.getMetadata(PARAMTYPES_METADATA, service) ?? []) as unknown[];
  const declared = (Reflect.getMetadata(SELF_DECLARED_DEPS_METADATA, service) ?? []) as { index: number; param: unknown }[];
  const own = paramTypes.flatMap((type, index) => (SERVICES.includes(type as Type) ? [{ index, param: getTxLockToken(type as Type, name) }] : []));
  Reflect.defineMetadata(SELF_DECLARED_DEPS_METADATA, [...declared.filter((dep) => !own.some((o) => o.index === dep.index)), ...own], named);
  return named;
}
