import type { DataSource, QueryRunner } from 'typeorm';
import type { PoolClient } from 'pg';
import { PoolExhaustedError } from '../errors.js';
import { recordPoolWait } from '../telemetry/pool-telemetry.js';
import { telemetry } from '../telemetry/telemetry.js';
import { explainConnectionLoss } from './connection-errors.js';
import { createOwnQueryRunner } from './data-source-routing.js';

/**
 * The parts of TypeORM's PostgresQueryRunner we rely on beyond its public interface, in one place.
 * `isTransactionActive`/`transactionDepth` tell TypeORM it is inside our transaction, so `save()` does not
 * open one of its own; `releasePostgresConnection(err)` makes pg-pool destroy a connection in an unknown state.
 */
export interface PostgresQueryRunnerInternals extends QueryRunner {
  isTransactionActive: boolean;
  transactionDepth: number;
  connect(): Promise<PoolClient>;
  releasePostgresConnection(err?: unknown): Promise<void>;
}

/** TypeORM's PostgresDriver keeps its pg Pool as `master`. */
function poolOf(dataSource: DataSource): { options?: { max?: number } } {
  return (dataSource.driver as unknown as { master: { options?: { max?: number } } }).master;
}

/**
 * Takes a connection from the DataSource's pool on a fresh query runner, waiting at most `timeoutMs` (pg-pool
 * hands out even idle connections on a later tick, so every wait gets the bound). `holding`: the caller already
 * holds a connection, which the error then mentions. `signal` (an HTTP request's: its client left) ends the wait
 * with its reason. A connection that arrives after we gave up goes back. One promise per acquire (no race of
 * promises): this runs once per transaction. Resolves with what `make` makes of the runner and its pg client.
 */
export function acquireConnection<T>(
  dataSource: DataSource,
  timeoutMs: number,
  holding: boolean,
  signal: AbortSignal | undefined,
  make: (queryRunner: PostgresQueryRunnerInternals, client: PoolClient) => T,
): Promise<T> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const startedAt = telemetry ? performance.now() : 0;
    const queryRunner = createOwnQueryRunner(dataSource) as PostgresQueryRunnerInternals;
    const connecting = queryRunner.connect();
    let settled = false;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      return true;
    };
    const fail = (error: unknown): void => {
      if (!settle()) return;
      if (startedAt) recordPoolWait(startedAt, error instanceof PoolExhaustedError ? 'timeout' : 'error');
      connecting.then(
        () => queryRunner.release(),
        () => queryRunner.release(),
      ).catch(() => undefined);
      reject(explainConnectionLoss(error));
    };
    const onAbort = () => fail(signal!.reason);
    const timer = setTimeout(() => fail(new PoolExhaustedError(timeoutMs, poolOf(dataSource).options?.max, holding)), timeoutMs);
    timer.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
    connecting.then((client) => {
      if (!settle()) return;
      if (startedAt) recordPoolWait(startedAt, 'acquired');
      try {
        resolve(make(queryRunner, client));
      } catch (error) {
        queryRunner.release().catch(() => undefined);
        reject(error);
      }
    }, fail);
  });
}
