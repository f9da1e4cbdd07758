import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import { assertIsolation } from './isolation.js';
import { currentScope, type TransactionScope } from './transaction-scope.js';
import { processWide } from '../common/process-state.js';

type CreateQueryRunner = DataSource['createQueryRunner'];

/** The DataSources whose own calls are routed, with their original createQueryRunner. */
const originals = processWide('data-source-routing', () => new WeakMap<DataSource, CreateQueryRunner>());

/**
 * A fresh pooled query runner of `dataSource`, never the current transaction's: for the library's own
 * connections (transactions, session locks, table creation), which must not join anything.
 */
export function createOwnQueryRunner(dataSource: DataSource): QueryRunner {
  const create = originals.get(dataSource) ?? dataSource.createQueryRunner.bind(dataSource);
  return create('master');
}

/**
 * Makes every TypeORM call made through `dataSource` itself join the caller's transaction of this library on
 * it: `@InjectRepository()` repositories, `dataSource.getRepository()`, `dataSource.manager` and its methods,
 * `dataSource.query()`, query builders, custom repositories. TypeORM runs each of those on the query runner
 * `dataSource.createQueryRunner()` hands it (and releases it after), so that one method, on this DataSource
 * object only, hands out a runner on the transaction's connection inside a transaction (routed-runner.ts: its
 * release leaves the connection to the transaction, its manual transactions are savepoints of ours), and a fresh
 * runner as before outside one. `dataSource.manager.transaction()` inside a transaction becomes `nested` (a NESTED
 * savepoint); an isolation stronger than the transaction's is refused (WeakerIsolationError). No prototype is
 * touched, so other DataSources and other libraries see plain TypeORM. `joins`: which scopes calls join (all by
 * default; with joinDataSource: false, only a test's, see TransactionHost). Returns the function that puts everything back.
 */
export function routeIntoTransactions(
  dataSource: DataSource,
  nested: (scope: TransactionScope, fn: () => Promise<unknown>) => Promise<unknown>,
  joins: (scope: TransactionScope) => boolean = () => true,
): () => void {
  const createQueryRunner: CreateQueryRunner = dataSource.createQueryRunner.bind(dataSource);
  const manager = dataSource.manager;
  const transaction = manager.transaction.bind(manager) as (...args: unknown[]) => Promise<unknown>;
  originals.set(dataSource, createQueryRunner);
  const joined = (): TransactionScope | undefined => {
    const scope = currentScope(dataSource);
    return scope && joins(scope) ? scope : undefined;
  };
  define(dataSource, 'createQueryRunner', ((mode?: 'master' | 'slave') => {
    const scope = joined();
    return scope ? scope.connection.routedRunner() : createQueryRunner(mode);
  }) satisfies CreateQueryRunner);
  define(manager, 'transaction', (...args: unknown[]) => {
    const scope = joined();
    if (!scope) return transaction(...args);
    try {
      assertIsolation(transactionIsolation(args), scope, 'dataSource.transaction()');
    } catch (error) {
      return Promise.reject(error);
    }
    const fn = transactionCallback(args);
    return nested(scope, () => fn(scope.connection.queryRunner.manager));
  });
  return () => {
    delete (dataSource as unknown as Record<string, unknown>).createQueryRunner;
    delete (manager as unknown as Record<string, unknown>).transaction;
    originals.delete(dataSource);
  };
}

/** The isolation level of `manager.transaction(isolation, fn)`, if one was given. */
export function transactionIsolation(args: readonly unknown[]): string | undefined {
  return typeof args[0] === 'function' ? undefined : (args[0] as string);
}

/** The callback of `manager.transaction(fn)` / `manager.transaction(isolation, fn)`, as TypeORM reads it. */
export function transactionCallback(args: readonly unknown[]): (manager: EntityManager) => Promise<unknown> {
  return (typeof args[0] === 'function' ? args[0] : args[1]) as (manager: EntityManager) => Promise<unknown>;
}

function define(target: object, property: string, value: unknown): void {
  Object.defineProperty(target, property, { value, configurable: true, writable: true });
}
