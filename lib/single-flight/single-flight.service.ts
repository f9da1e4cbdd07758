import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { AsyncResource } from 'node:async_hooks';
import { ensureTable } from '../common/ensure-table.js';
import { qualifiedTableName } from '../common/sql.js';
import { LockTimeoutError, TxLockConfigurationError, ValueNotSerializableError } from '../errors.js';
import { asAdmittedWork } from '../lifecycle/shutdown-gate.js';
import { LockService } from '../locks/lock.service.js';
import type { LibraryTable } from '../tables/library-table.js';
import { telemetry } from '../telemetry/telemetry.js';
import { TransactionHost } from '../transaction/transaction.host.js';
import { TXLOCK_MODULE_OPTIONS } from '../txlock.module-definition.js';
import type { TxLockModuleOptions } from '../txlock-options.interface.js';
import { SINGLE_FLIGHT_RUN, validateSingleFlight, type SingleFlightOptions } from './single-flight.options.js';
import { singleFlightSql } from './single-flight.sql.js';
import { CacheManagerSingleFlightStore, PostgresSingleFlightStore, type CacheLike, type SingleFlightStore } from './single-flight.store.js';

/**
 * Computes an expensive value once across all processes and shares it (seed 001's recipe as one call):
 * check the store; take an advisory lock on the key (in the library's own lock namespace); check again,
 * since another process may have computed it while we waited; compute; store for `ttlMs`; release by
 * committing. Within one process, concurrent callers of a key share one promise and one connection.
 *
 * What runs where: the first check runs on its own (outside any caller's transaction). The lock, the
 * re-check, `compute` and the write run in one transaction of their own that holds the lock; its only other
 * locks are what `compute` itself takes, and it commits as soon as the value is stored. Errors are never
 * stored: every caller waiting on a failed computation gets its error, and the next caller computes again.
 *
 * @example
 * const report = await singleFlight.run(`report:${day}`, () => buildReport(day), { ttlMs: 60_000 });
 */
@Injectable()
export class SingleFlightService implements OnModuleInit {
  private readonly flights = new Map<string, Promise<unknown>>();
  // Made at bootstrap, outside any request: flights run in its async context, never in their first caller's.
  private readonly detached = new AsyncResource('TxLockSingleFlight');
  private store?: SingleFlightStore;
  private readonly table: string;

  constructor(
    private readonly txHost: TransactionHost,
    private readonly locks: LockService,
    private readonly moduleRef: ModuleRef,
    @Inject(TXLOCK_MODULE_OPTIONS) private readonly options: TxLockModuleOptions,
  ) {
    this.table = qualifiedTableName(options.singleFlight?.table ?? 'txlock_single_flight', 'singleFlight.table');
  }

  /** Picks the store, and creates the single-flight table at bootstrap when `autoCreate` is on (Nest calls it). */
  async onModuleInit(): Promise<void> {
    this.store = this.createStore();
    if ((this.options.singleFlight?.autoCreate ?? this.options.autoCreate) && this.store instanceof PostgresSingleFlightStore) {
      await ensureTable(this.txHost.dataSource, this.table, [singleFlightSql.createTable(this.table)]);
    }
  }

  /**
   * The value of `key`: the stored one while it lives, else computed by exactly one caller across all
   * processes while the others wait for it. The value must be JSON-serialisable; every caller (the one
   * that computed it included) gets its JSON round trip, so all see the same value.
   */
  run<T>(key: string, compute: () => T | Promise<T>, options: SingleFlightOptions): Promise<T> {
    validateSingleFlight(key, options, 'single-flight', SINGLE_FLIGHT_RUN);
    const id = JSON.stringify([options.namespace ?? '', key]);
    // Under a test transaction a flight runs in its first caller's scope, so only callers of that scope share it.
    const flightId = `${this.txHost.sharingTag()}\u0000${id}`;
    let flight = this.flights.get(flightId);
    const joins = flight !== undefined;
    if (!flight) {
      // A new flight is new work; joining one in the air is not.
      if (!this.txHost.shutdown.isOpen) {
        try {
          this.txHost.shutdown.admit('single flight');
        } catch (error) {
          return Promise.reject(error);
        }
      }
      const started = this.fly(id, compute, options.ttlMs);
      flight = started.finally(() => this.flights.delete(flightId));
      this.flights.set(flightId, flight);
    }
    const waiting = (options.timeoutMs === undefined ? flight : waitAtMost(flight, options.timeoutMs, id)) as Promise<T>;
    return joins && telemetry ? telemetry.trace('txlock.single_flight.wait', {}, () => waiting) : waiting;
  }

  // A flight is shared, so it runs in no caller's async context: not in the first caller's transaction, and
  // not tied to its request (a client that disconnects must not fail everyone's computation).
  private fly(id: string, compute: () => unknown, ttlMs: number): Promise<unknown> {
    // Admitted before the app began to close: its own transaction (the lock) is let in during the grace period.
    return this.txHost.detached(this.detached, () => asAdmittedWork(() => this.computeOnce(id, compute, ttlMs)));
  }

  // Check, lock, check again, compute, store (see the class comment).
  private async computeOnce(id: string, compute: () => unknown, ttlMs: number): Promise<unknown> {
    const stored = await this.requireStore().get(id);
    if (stored !== undefined) return JSON.parse(stored);
    return this.locks.withLibraryLock(['single-flight', id], async () => {
      const meanwhile = await this.requireStore().get(id);
      if (meanwhile !== undefined) return JSON.parse(meanwhile);
      const json = serialise(await (telemetry ? telemetry.trace('txlock.single_flight.compute', {}, async () => compute()) : compute()), id);
      await this.requireStore().set(id, json, ttlMs);
      return JSON.parse(json);
    });
  }

  /**
   * The table the postgres store keeps values in (none with the cache-manager store), for the bootstrap check of
   * the library's tables. Not part of the public API.
   * @internal
   */
  libraryTable(): LibraryTable | undefined {
    return this.requireStore() instanceof PostgresSingleFlightStore ? { table: this.table, service: 'SingleFlightService', option: 'singleFlight' } : undefined;
  }

  private createStore(): SingleFlightStore {
    if (this.options.singleFlight?.store !== 'cache-manager') return new PostgresSingleFlightStore(this.txHost, this.table);
    let cache: CacheLike;
    try {
      cache = this.moduleRef.get<CacheLike>('CACHE_MANAGER', { strict: false });
    } catch {
      throw new TxLockConfigurationError(
        `singleFlight.store is 'cache-manager' but no CACHE_MANAGER provider was found: import CacheModule.register() ` +
          `(@nestjs/cache-manager), or use the default 'postgres' store.`,
      );
    }
    return new CacheManagerSingleFlightStore(cache);
  }

  private requireStore(): SingleFlightStore {
    return (this.store ??= this.createStore());
  }
}

function serialise(value: unknown, key: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    throw new ValueNotSerializableError(key, error);
  }
  if (json === undefined) throw new ValueNotSerializableError(key);
  return json;
}

// One caller stops waiting; the flight goes on for the others.
function waitAtMost<T>(flight: Promise<T>, timeoutMs: number, key: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new LockTimeoutError(`single-flight key ${key}`, timeoutMs)), timeoutMs);
    timer.unref();
  });
  return Promise.race([flight, timeout]).finally(() => clearTimeout(timer));
}
