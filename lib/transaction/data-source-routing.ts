import type { DataSource, EntityManager, QueryRunner } from 'typeorm';
import { assertIsolation } from './isolation.js';
import { currentScope, runOutsideUnderTest, standingFor, type TransactionScope } from './transaction-scope.js';
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
 * default; with joinDataSource: false, only a test's, see TransactionHost). `apart`: the routing exists only for a
 * test (joinDataSource: false), so a call it joins to an app transaction stands for what production runs on a
 * connection of its own (see standsApart). Returns the function that puts everything back.
 */
export function routeIntoTransactions(
  dataSource: DataSource,
  nested: (scope: TransactionScope, fn: () => Promise<unknown>) => Promise<unknown>,
  joins: (scope: TransactionScope) => boolean = () => true,
  apart = false,
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
    return scope ? scope.connection.routedRunner(apart && standsApart(scope)) : createQueryRunner(mode);
  }) satisfies CreateQueryRunner);
  define(manager, 'transaction', (...args: unknown[]) => {
    const scope = joined();
    if (!scope) return transaction(...args);
    const own = apart && standsApart(scope);
    const call = (): Promise<unknown> => {
      assertIsolation(transactionIsolation(args), scope, 'dataSource.transaction()', own);
      const fn = transactionCallback(args);
      return nested(scope, () => fn(scope.connection.queryRunner.manager));
    };
    try {
      return own ? runOutsideUnderTest(scope, call) : call();
    } catch (error) {
      return Promise.reject(error);
    }
  });
  return () => {
    delete (dataSource as unknown as Record<string, unknown>).createQueryRunner;
    delete (manager as unknown as Record<string, unknown>).transaction;
    originals.delete(dataSource);
  };
}

/**
 * Under nestjs-txlock/testing with joinDataSource: false, TypeORM's own API called inside an app transaction joins it
 * only because the test has one connection; production runs it on a connection of its own. So it stands apart: what
 * it sends does not count as the app transaction's work (runOutsideUnderTest), and the level it asks for is its own,
 * not the app transaction's (assertIsolation). Outside the app's transactions (the test's own scope) nothing differs.
 */
export function standsApart(scope: TransactionScope): boolean {
  return standingFor(scope).kind !== 'test';
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
