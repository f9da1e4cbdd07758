import { TransactionNotStartedError, type EntityManager, type QueryRunner } from 'typeorm';
import { awaitingChain } from '../common/await-chain.js';
import { shadowMethod } from '../common/shadow-method.js';
import { StrayTransactionEndError } from '../errors.js';
import { transactionCallback, transactionIsolation } from './data-source-routing.js';
import type { PostgresQueryRunnerInternals } from './pool-connection.js';
import { runOutsideUnderTest, type TransactionScope } from './transaction-scope.js';

/** What a routed runner needs of the transaction's connection (TransactionConnection). */
export interface RoutingConnection {
  /** The scope a statement made now belongs to, by the caller's context. */
  callerScope(): TransactionScope;
  /** Runs one TypeORM statement in `scope`'s turn. */
  typeormStatement<T>(scope: TransactionScope, sql: string, task: () => Promise<T>): Promise<T>;
  /** Runs one TypeORM stream in `scope`'s turn. */
  typeormStream<T>(scope: TransactionScope, sql: string, task: () => Promise<T>): Promise<T>;
  /** Opens one of our savepoints inside `parent`, in its turn. */
  savepoint(parent: TransactionScope): Promise<TransactionScope>;
  /** Releases or rolls back a savepoint opened by savepoint(). */
  endSavepoint(scope: TransactionScope, commit: boolean): Promise<void>;
  /** Runs `fn` in a NESTED savepoint of `scope` (the transaction host's rules), as manager.transaction() does. */
  nested(scope: TransactionScope, fn: () => Promise<unknown>): Promise<unknown>;
  /** Throws WeakerIsolationError when `isolation` is stronger than what `scope` runs at (not when `apart`). */
  assertIsolation(isolation: string | undefined, scope: TransactionScope, where: string, apart?: boolean): void;
  /** Tells TypeORM subscribers what a manual transaction does, as TypeORM's own runner would. */
  broadcast(event: 'BeforeTransactionStart' | 'AfterTransactionStart' | 'BeforeTransactionCommit' | 'AfterTransactionCommit' | 'BeforeTransactionRollback' | 'AfterTransactionRollback'): Promise<void>;
}

/** The state of one runner handed out by `dataSource.createQueryRunner()` inside a transaction. */
interface RoutedState {
  /** Its manual transactions (startTransaction() calls), innermost last: savepoints of ours. */
  manual?: TransactionScope[];
  ownManager?: EntityManager;
  /** It stands for a connection of its own (data-source-routing.ts, standsApart): set by routedRunner(true). */
  apart?: boolean;
}

type RoutedRunner = PostgresQueryRunnerInternals & RoutedState;

/**
 * The prototype of the runners `dataSource.createQueryRunner()` hands out inside a transaction: each inherits
 * everything from the transaction's own runner (its connection, driver, broadcaster), so TypeORM code that makes a
 * runner of its own joins the transaction, while its manual-transaction calls keep to that one runner:
 * - `startTransaction()` opens a savepoint of ours that waits for its turn and keeps every other statement of the
 *   transaction out until it ends, as a NESTED call does; statements through this runner (its `query()`, its
 *   `manager`) run inside it. An isolation stronger than the transaction's is refused (WeakerIsolationError).
 * - `commitTransaction()` / `rollbackTransaction()` end that savepoint; without one of its own they are refused
 *   (StrayTransactionEndError), never a COMMIT or ROLLBACK of the whole transaction.
 * - `release()` rolls back a manual transaction left open, and leaves the connection to the transaction.
 * Made once per transaction; a runner is then one small object. `query`/`stream`: TypeORM's own, unrouted.
 */
export function routedRunnerPrototype(
  connection: RoutingConnection,
  runner: PostgresQueryRunnerInternals,
  { query, stream }: Pick<QueryRunner, 'query' | 'stream'>,
): object {
  // Its open manual transaction, unless the caller runs in a savepoint opened inside that (a NESTED call in it).
  const scopeOf = (routed: RoutedRunner): TransactionScope => {
    const caller = connection.callerScope();
    const manual = routed.manual?.at(-1);
    return manual && !manual.encloses(caller) ? manual : caller;
  };
  const methods = {
    query(this: RoutedRunner, ...args: Parameters<QueryRunner['query']>) {
      const scope = scopeOf(this);
      const send = () => query(...args);
      // Every repository call in a transaction comes here: no second closure unless the runner stands apart.
      if (this.apart) return runOutsideUnderTest(scope, () => connection.typeormStatement(scope, args[0], send));
      return connection.typeormStatement(scope, args[0], send);
    },
    stream(this: RoutedRunner, ...args: Parameters<QueryRunner['stream']>) {
      const scope = scopeOf(this);
      return apartIf(this, scope, () => connection.typeormStream(scope, args[0], () => stream(...args)));
    },
    get manager(): EntityManager {
      const routed = this as unknown as RoutedRunner;
      return (routed.ownManager ??= routedManager(connection, routed, scopeOf));
    },
    // TypeORM's EntityManager constructor sets itself as its runner's manager.
    set manager(manager: EntityManager) {
      (this as unknown as RoutedRunner).ownManager = manager;
    },
    async startTransaction(this: RoutedRunner, isolation?: string): Promise<void> {
      const parent = scopeOf(this);
      connection.assertIsolation(isolation, parent, 'queryRunner.startTransaction()', this.apart);
      await connection.broadcast('BeforeTransactionStart');
      const scope = await apartIf(this, parent, () => connection.savepoint(parent));
      // Who awaits this call is the code that holds the manual transaction open (see ScopeQueue).
      scope.owner = awaitingChain();
      (this.manual ??= []).push(scope);
      await connection.broadcast('AfterTransactionStart');
    },
    commitTransaction(this: RoutedRunner): Promise<void> {
      return endManual(this, true);
    },
    rollbackTransaction(this: RoutedRunner): Promise<void> {
      return endManual(this, false);
    },
    async release(this: RoutedRunner): Promise<void> {
      // The connection stays with the transaction; a manual transaction left open is undone, as a returned connection's would be.
      const outermost = this.manual?.[0];
      this.manual = undefined;
      if (outermost && !outermost.ended) await apartIf(this, outermost, () => connection.endSavepoint(outermost, false)).catch(() => undefined);
    },
  };
  // commitTransaction() / rollbackTransaction(): the runner's innermost manual transaction, or StrayTransactionEndError.
  async function endManual(routed: RoutedRunner, commit: boolean): Promise<void> {
    const scope = routed.manual?.at(-1);
    if (!scope) {
      // Outside the app's transactions under nestjs-txlock/testing the runner joined only the test's transaction:
      // refused as TypeORM refuses it outside any transaction, in production.
      if (connection.callerScope().kind === 'test') throw new TransactionNotStartedError();
      throw new StrayTransactionEndError(commit ? 'commitTransaction' : 'rollbackTransaction');
    }
    await connection.broadcast(commit ? 'BeforeTransactionCommit' : 'BeforeTransactionRollback');
    routed.manual!.pop();
    await apartIf(routed, scope, () => connection.endSavepoint(scope, commit));
    if (commit) scope.mergeInto(scope.parent!);
    await connection.broadcast(commit ? 'AfterTransactionCommit' : 'AfterTransactionRollback');
  }
  return Object.create(runner, Object.getOwnPropertyDescriptors(methods)) as object;
}

// What a runner that stands apart sends in `scope` does not count as the app transaction's own work.
function apartIf<T>(routed: RoutedRunner, scope: TransactionScope, send: () => T): T {
  return routed.apart ? runOutsideUnderTest(scope, send) : send();
}

// The EntityManager of a routed runner: its calls go through the runner, and its transaction() is a NESTED call.
function routedManager(connection: RoutingConnection, runner: RoutedRunner, scopeOf: (routed: RoutedRunner) => TransactionScope): EntityManager {
  const manager = runner.connection.createEntityManager(runner);
  shadowMethod(manager, 'transaction', async (...args: unknown[]) => {
    const scope = scopeOf(runner);
    connection.assertIsolation(transactionIsolation(args), scope, 'manager.transaction()', runner.apart);
    const fn = transactionCallback(args);
    return apartIf(runner, scope, () => connection.nested(scope, () => fn(manager)));
  });
  return manager;
}
