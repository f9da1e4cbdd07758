import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
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
 * object only, hands out the transaction's runner (whose release is then a no-op) inside a transaction, and a
 * fresh runner as before outside one. `dataSource.manager.transaction()` inside a transaction becomes `nested`
 * (a NESTED savepoint). No prototype is touched, so other DataSources and other libraries see plain TypeORM.
 * Returns the function that puts everything back.
 */
export function routeIntoTransactions(
  dataSource: DataSource,
  nested: (scope: TransactionScope, fn: () => Promise<unknown>) => Promise<unknown>,
): () => void {
  const createQueryRunner: CreateQueryRunner = dataSource.createQueryRunner.bind(dataSource);
  const manager = dataSource.manager;
  const transaction = manager.transaction.bind(manager) as (...args: unknown[]) => Promise<unknown>;
  originals.set(dataSource, createQueryRunner);
  define(dataSource, 'createQueryRunner', ((mode?: 'master' | 'slave') => {
    const scope = currentScope(dataSource);
    return scope ? scope.connection.joinedRunner : createQueryRunner(mode);
  }) satisfies CreateQueryRunner);
  define(manager, 'transaction', (...args: unknown[]) => {
    const scope = currentScope(dataSource);
    if (!scope) return transaction(...args);
    const fn = transactionCallback(args);
    return nested(scope, () => fn(scope.connection.queryRunner.manager));
  });
  return () => {
    delete (dataSource as unknown as Record<string, unknown>).createQueryRunner;
    delete (manager as unknown as Record<string, unknown>).transaction;
    originals.delete(dataSource);
  };
}

/** The callback of `manager.transaction(fn)` / `manager.transaction(isolation, fn)`, as TypeORM reads it. */
export function transactionCallback(args: readonly unknown[]): (manager: EntityManager) => Promise<unknown> {
  return (typeof args[0] === 'function' ? args[0] : args[1]) as (manager: EntityManager) => Promise<unknown>;
}

function define(target: object, property: string, value: unknown): void {
  Object.defineProperty(target, property, { value, configurable: true, writable: true });
}
