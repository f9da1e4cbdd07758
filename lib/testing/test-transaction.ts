import type { INestApplicationContext } from '@nestjs/common';
import { UnfinishedTestWorkError } from '../errors.js';
import { identifyTestsBy } from '../transaction/transaction-scope.js';
import { TransactionHost } from '../transaction/transaction.host.js';
import { currentTestIdentity } from './test-identity.js';
import { getTxLockToken } from '../txlock-tokens.js';

/** An open test transaction. */
export interface TestTransaction {
  /**
   * Rolls back everything the app did on the DataSource since begin. Throws UnfinishedTestWorkError when some
   * of it was still running (a missing await), after rolling that back too.
   */
  rollback(): Promise<void>;
}

/** Which app and DataSource a test transaction covers. */
export interface TestTransactionOptions {
  /** The name of the DataSource (its TxLockModule registration). Default: the default one. */
  dataSource?: string;
  /**
   * Fail the test with TestKitLimitError where the test transaction cannot reproduce production, instead of a
   * warning the first time: a transaction of its own begun inside another (REQUIRES_NEW, a single flight), which
   * production runs on a second pooled connection. Default false.
   */
  strict?: boolean;
}

/** The app, or a function that returns it (for hooks registered before the app is created). */
export type AppLike = INestApplicationContext | (() => INestApplicationContext);

/**
 * Begins a transaction that everything the app sends on the DataSource runs in until `rollback()`: HTTP
 * requests (supertest), direct provider calls, `@InjectRepository` repositories, counters, get-or-create.
 * The app's own transactions (`@Transactional()`, TransactionHost.run, `REQUIRES_NEW` too) become savepoints
 * of it, so a rollback inside the test behaves as in production; their afterCommit hooks run when the savepoint
 * that stands for the outermost app transaction is released. For runners without jest/vitest hooks.
 *
 * @example
 * const transaction = await beginTestTransaction(app);
 * try { await request(app.getHttpServer()).post('/likes/1').expect(201); } finally { await transaction.rollback(); }
 */
export function beginTestTransaction(app: AppLike, options: TestTransactionOptions = {}): Promise<TestTransaction> {
  return begin(app, options, false);
}

// `fromHook`: begun by useRollbackPerTest()'s beforeEach, whose context the test does not inherit (jest runs each hook
// and the test in contexts of their own): the test's code is then known by the runner's test identity instead.
async function begin(app: AppLike, options: TestTransactionOptions, fromHook: boolean): Promise<TestTransaction> {
  if (fromHook) identifyTestsBy(currentTestIdentity);
  const host = hostOf(app, options);
  await host.beginTestTransaction(options.strict === true, fromHook);
  return {
    rollback: async () => {
      const { stillRunning } = await host.endTestTransaction();
      if (stillRunning > 0) throw new UnfinishedTestWorkError(stillRunning);
    },
  };
}

/** The hooks of the test runner, when they are not globals (vitest without `globals: true`). */
export interface TestHooks {
  /** Registers `fn` to run before each test (the runner's beforeEach). */
  beforeEach(fn: () => Promise<void>): void;
  /** Registers `fn` to run after each test (the runner's afterEach). */
  afterEach(fn: () => Promise<void>): void;
}

/**
 * Django's TestCase for jest and vitest: call it in a `describe` (after the app is created in beforeAll) and
 * each test of that describe runs inside one transaction that is rolled back after it (see
 * beginTestTransaction). `app` may be a getter, for an app created in beforeAll.
 *
 * @example
 * describe('likes', () => {
 *   let app: INestApplication;
 *   beforeAll(async () => { app = await createApp(); });
 *   useRollbackPerTest(() => app);
 *   it('likes a post', () => request(app.getHttpServer()).post('/posts/1/likes').expect(201));
 * });
 */
export function useRollbackPerTest(app: AppLike, options: TestTransactionOptions & { hooks?: TestHooks } = {}): void {
  const hooks = options.hooks ?? (globalThis as Partial<TestHooks>);
  if (typeof hooks.beforeEach !== 'function' || typeof hooks.afterEach !== 'function') {
    throw new Error('useRollbackPerTest() found no global beforeEach/afterEach: pass them, useRollbackPerTest(app, { hooks: { beforeEach, afterEach } }) (vitest without globals: true).');
  }
  let current: TestTransaction | undefined;
  hooks.beforeEach(async () => {
    current = await begin(app, options, true);
  });
  hooks.afterEach(async () => {
    const ending = current;
    current = undefined;
    await ending?.rollback();
  });
}

function hostOf(app: AppLike, options: TestTransactionOptions): TransactionHost {
  const context = typeof app === 'function' ? app() : app;
  return context.get<TransactionHost>(getTxLockToken(TransactionHost, options.dataSource), { strict: false });
}
