import { Inject, Injectable, type OnApplicationBootstrap, type Type } from '@nestjs/common';
import { PARAMTYPES_METADATA, PROPERTY_DEPS_METADATA, SELF_DECLARED_DEPS_METADATA } from '@nestjs/common/constants.js';
import { DiscoveryService } from '@nestjs/core';
import { CounterService } from '../counters/counter.service.js';
import { LeaseService } from '../leases/lease.service.js';
import { SingleFlightService } from '../single-flight/single-flight.service.js';
import { TransactionHost } from '../transaction/transaction.host.js';
import { TXLOCK_DATA_SOURCE_NAME } from '../txlock.module-definition.js';
import { getTxLockToken } from '../txlock-tokens.js';
import { missingTables, type LibraryTable } from './library-table.js';
import { missingTableError } from './search-path.js';

/** A service that keeps its data in a table of its own. */
interface TableService {
  libraryTable(): LibraryTable | undefined;
}

/**
 * At bootstrap, checks in one query that the tables of the features the app uses exist (a feature is in use when
 * one of the app's providers or controllers injects its service, directly or through a decorator such as
 * `@ScheduledLock()`), and fails with MissingTableError, which names both fixes, instead of letting the first
 * call fail with "relation does not exist". Tables created by `autoCreate` exist by then.
 */
@Injectable()
export class LibraryTablesCheck implements OnApplicationBootstrap {
  constructor(
    private readonly discovery: DiscoveryService,
    private readonly txHost: TransactionHost,
    private readonly counters: CounterService,
    private readonly leases: LeaseService,
    private readonly singleFlights: SingleFlightService,
    @Inject(TXLOCK_DATA_SOURCE_NAME) private readonly dataSourceName: string,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const services: [Type, TableService][] = [
      [CounterService, this.counters],
      [LeaseService, this.leases],
      [SingleFlightService, this.singleFlights],
    ];
    const injected = this.tokensTheAppInjects();
    const tables = services.flatMap(([type, service]) => {
      const table = injected.has(getTxLockToken(type, this.dataSourceName)) ? service.libraryTable() : undefined;
      return table ? [table] : [];
    });
    const [missing] = await missingTables(this.txHost.dataSource, tables);
    if (missing) throw await missingTableError(this.txHost.dataSource, missing);
  }

  // Every token the app's own providers and controllers are injected with: constructor parameters (by type or
  // @Inject) and properties (@Inject, which is how the library's decorators reach their services).
  private tokensTheAppInjects(): Set<unknown> {
    const tokens = new Set<unknown>();
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      const type = wrapper.metatype as Type | undefined;
      if (typeof type !== 'function' || isLibraryClass(type)) continue;
      for (const param of (Reflect.getMetadata(PARAMTYPES_METADATA, type) ?? []) as unknown[]) tokens.add(param);
      for (const { param } of (Reflect.getMetadata(SELF_DECLARED_DEPS_METADATA, type) ?? []) as { param: unknown }[]) tokens.add(param);
      for (const { type: token } of (Reflect.getMetadata(PROPERTY_DEPS_METADATA, type) ?? []) as { type: unknown }[]) tokens.add(token);
    }
    return tokens;
  }
}

// The library's own services (and their per-DataSource subclasses) inject one another: they are not the app.
function isLibraryClass(type: Type): boolean {
  return [TransactionHost, CounterService, LeaseService, SingleFlightService, LibraryTablesCheck].some(
    (own) => type === own || type.prototype instanceof own,
  );
}
