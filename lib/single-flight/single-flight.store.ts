import { explainMissingTable } from '../tables/library-table.js';
import { explainConnectionLoss } from '../transaction/connection-errors.js';
import type { TransactionHost } from '../transaction/transaction.host.js';
import { singleFlightSql } from './single-flight.sql.js';

/** Where computed values are shared: JSON text under a key, for ttlMs. */
export interface SingleFlightStore {
  get(key: string): Promise<string | undefined>;
  set(key: string, json: string, ttlMs: number): Promise<void>;
}

const SWEEP_EVERY = 100;
const SWEEP_BATCH = 500;

/**
 * The default store: a PostgreSQL table every process shares. Reads and writes join the current
 * transaction, so the re-check and the write happen inside the flight's lock transaction. A lost connection
 * surfaces as ConnectionLostError (the driver's error as its cause).
 */
export class PostgresSingleFlightStore implements SingleFlightStore {
  private writes = 0;

  constructor(
    private readonly txHost: TransactionHost,
    private readonly table: string,
  ) {}

  async get(key: string): Promise<string | undefined> {
    const rows = await this.query<{ value: string }>(singleFlightSql.get(this.table), [key]);
    return rows[0]?.value;
  }

  async set(key: string, json: string, ttlMs: number): Promise<void> {
    await this.query(singleFlightSql.set(this.table), [key, json, ttlMs]);
    // Reads delete their own expired key; a bounded sweep now and then removes keys nobody reads again.
    if (++this.writes % SWEEP_EVERY === 0) await this.query(singleFlightSql.sweep(this.table), [SWEEP_BATCH]);
  }

  private async query<Row>(sql: string, params: unknown[]): Promise<Row[]> {
    try {
      return await this.txHost.query<Row>(sql, params);
    } catch (error) {
      throw explainConnectionLoss(explainMissingTable(error, { table: this.table, service: 'SingleFlightService', option: 'singleFlight' }));
    }
  }
}

/** The part of Nest's CACHE_MANAGER (cache-manager 6+) this store uses. */
export interface CacheLike {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown, ttlMs?: number): Promise<unknown>;
}

/** Values in the app's CACHE_MANAGER. Cross-process sharing needs a shared cache (Redis, ...). */
export class CacheManagerSingleFlightStore implements SingleFlightStore {
  constructor(private readonly cache: CacheLike) {}

  async get(key: string): Promise<string | undefined> {
    const value = await this.cache.get(`txlock:single-flight:${key}`);
    return typeof value === 'string' ? value : undefined;
  }

  async set(key: string, json: string, ttlMs: number): Promise<void> {
    await this.cache.set(`txlock:single-flight:${key}`, json, ttlMs);
  }
}
