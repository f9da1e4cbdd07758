import { Inject, Injectable, type OnApplicationBootstrap, type Type } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { CounterService } from '../counters/counter.service.js';
import { LeaseService } from '../leases/lease.service.js';
import { OutboxRelay } from '../outbox/outbox.relay.js';
import { OutboxService } from '../outbox/outbox.service.js';
import { SingleFlightService } from '../single-flight/single-flight.service.js';
import { TransactionHost } from '../transaction/transaction.host.js';
import { TXLOCK_DATA_SOURCE_NAME } from '../txlock.module-definition.js';
import { getTxLockToken } from '../txlock-tokens.js';
import { tokensTheAppInjects } from './injected-tokens.js';
import { missingTables, type LibraryTable } from './library-table.js';
import { missingTableError } from './search-path.js';

/** A service that keeps its data in a table of its own. */
interface TableService {
  libraryTable(): LibraryTable | undefined;
  /** Whether the app uses the feature, for a service that knows better than "the app injects it" (the outbox). */
  inUse?(): boolean;
}

/**
 * At bootstrap, checks in one query that the tables of the features the app uses exist (a feature is in use when
 * one of the app's providers or controllers injects its service, directly or through a decorator such as
 * `@ScheduledLock()`; the outbox also when the app has `@OnOutboxEvent()` handlers), and fails with MissingTableError, which names both fixes, instead of letting the first
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
    private readonly outbox: OutboxService,
    @Inject(TXLOCK_DATA_SOURCE_NAME) private readonly dataSourceName: string,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    const services: [Type, TableService][] = [
      [CounterService, this.counters],
      [LeaseService, this.leases],
      [SingleFlightService, this.singleFlights],
      [OutboxService, this.outbox],
    ];
    const injected = tokensTheAppInjects(this.discovery, (wrapper) => isLibraryClass(wrapper.metatype as Type));
    const tables = services.flatMap(([type, service]) => {
      const used = service.inUse ? service.inUse() : injected.has(getTxLockToken(type, this.dataSourceName));
      const table = used ? service.libraryTable() : undefined;
      return table ? [table] : [];
    });
    const [missing] = await missingTables(this.txHost.dataSource, tables);
    if (missing) throw await missingTableError(this.txHost.dataSource, missing);
  }
}

// The library's own services (and their per-DataSource subclasses) inject one another: they are not the app.
function isLibraryClass(type: Type): boolean {
  return [TransactionHost, CounterService, LeaseService, SingleFlightService, OutboxService, OutboxRelay, LibraryTablesCheck].some(
    (own) => type === own || type.prototype instanceof own,
  );
}
