import type { DataSource } from 'typeorm';
import { TransactionEndedError } from '../errors.js';
import { CallContextSlot } from '../common/call-context.js';
import { freshArray } from '../common/fresh-array.js';
import { processWide } from '../common/process-state.js';

/**
 * The connection a scope's work runs on. TransactionConnection (transaction-connection.ts) merges its own type into this
 * one, so the core's imports run one way (host → connection → scope) while `scope.connection` keeps its full type.
 */
export interface ScopeConnection {}

/** A callback run after the outermost transaction commits or rolls back. */
export type TransactionHook = () => unknown;

/**
 * What a scope stands for on its connection. `test`: the transaction nestjs-txlock/testing wraps a test in,
 * which the app's own transactions become savepoints of. `after transaction`: TypeORM subscribers'
 * afterTransactionCommit/afterTransactionRollback, whose queries run in autocommit once the transaction ended.
 */
export type ScopeKind = 'transaction' | 'savepoint' | 'session lock' | 'test' | 'after transaction';

/**
 * How a scope ended. `abandoned`: a NESTED savepoint rolled back because the scope around it ended while its
 * call was still running; `ended` when the outcome is not known (a lost connection) or does not apply (a
 * session lock call).
 */
export type ScopeOutcome = 'committed' | 'rolled back' | 'released' | 'abandoned' | 'ended';

/**
 * One frame of work on a connection: the transaction itself (root), a NESTED savepoint inside it, or the
 * pinned connection of a session-scope lock call. Carried by AsyncLocalStorage, so concurrent requests never
 * see each other's scope, and every statement knows the frame it was issued in: the connection runs it only
 * while that frame is the innermost open one, and refuses it once the frame (or an enclosing one) has ended.
 */
export class TransactionScope {
  /** Why this scope may no longer commit (a joined call threw), if it may not. */
  rollbackOnly: unknown;
  readonly afterCommit = freshArray<TransactionHook>();
  readonly afterRollback = freshArray<TransactionHook>();
  /** Per-scope state owned by other features (for example advisory locks taken in this frame), keyed by feature. */
  readonly locals = new Map<symbol, unknown>();
  /**
   * The isolation level this scope's transaction was opened at (set on scopes that stand for a transaction; the
   * others run at their parent's): what a call inside may not ask to strengthen (isolation.ts).
   */
  isolation?: string;
  /** True once something ran in this scope or inside it (set on scopes that stand for a transaction). */
  used = false;
  /** A savepoint standing for a readOnly transaction of the app under a test transaction (nestjs-txlock/testing). */
  readOnly?: boolean;
  /** A savepoint standing for a transaction of the app with a statement timeout, under a test transaction. */
  timeoutMs?: number;
  /**
   * For a manual transaction on a routed query runner (`queryRunner.startTransaction()`): the async frames that awaited
   * its start, i.e. the code that holds it open. A statement that must wait for it and that this code awaits would
   * wait for ever (ScopeQueue refuses it).
   */
  owner?: readonly string[];
  /**
   * Pieces of work of this scope on their way to its connection, not queued there yet (coalesced increments waiting in
   * a batch, under a test transaction): nestjs-txlock/testing counts them as work still running when the test ends.
   */
  unsent = 0;
  /** `open`, then `ending` once its end is decided (nothing new is accepted), then `ended`. */
  private state: 'open' | 'ending' | 'ended' = 'open';
  private outcome?: ScopeOutcome;
  // How many pieces of work keep this scope (or one inside it) from ending yet, and who waits for them.
  private keepers = 0;
  private kept?: { done: Promise<void>; resolve: () => void };

  constructor(
    readonly connection: ScopeConnection,
    readonly kind: ScopeKind,
    readonly parent?: TransactionScope,
    readonly savepoint?: string,
  ) {}

  /** The outermost scope of this transaction. */
  get root(): TransactionScope {
    let scope: TransactionScope = this;
    while (scope.parent) scope = scope.parent;
    return scope;
  }

  /** True once this scope ended by committing (a transaction's COMMIT succeeded). */
  get committed(): boolean {
    return this.outcome === 'committed';
  }

  /** True once this scope has physically ended on its connection (not merely decided to end). */
  get ended(): boolean {
    return this.state === 'ended';
  }

  markRollbackOnly(reason: unknown): void {
    this.rollbackOnly ??= reason;
  }

  /** From now on the scope accepts nothing new: its COMMIT, RELEASE or ROLLBACK is on its way. */
  close(): void {
    if (this.state === 'open') this.state = 'ending';
  }

  /** Records that the scope ended on the connection (its statement ran, or its parent's end swept it away). */
  finish(outcome: ScopeOutcome): void {
    this.state = 'ended';
    this.outcome ??= outcome;
  }

  /**
   * Keeps this scope and the ones around it from ending (see keptOpen()) until the returned function is called:
   * for detached work that was made to wait for its turn inside it (a lock call deferred by BranchLocks).
   */
  keepOpen(): () => void {
    for (let scope: TransactionScope | undefined = this; scope; scope = scope.parent) scope.keepers++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (let scope: TransactionScope | undefined = this; scope; scope = scope.parent) {
        if (--scope.keepers > 0 || !scope.kept) continue;
        scope.kept.resolve();
        scope.kept = undefined;
      }
    };
  }

  /** Resolves once nothing keeps this scope open (keepOpen()); undefined when nothing does, so the end need not wait. */
  keptOpen(): Promise<void> | undefined {
    if (this.keepers === 0) return undefined;
    if (!this.kept) {
      let resolve!: () => void;
      const done = new Promise<void>((settle) => (resolve = settle));
      this.kept = { done, resolve };
    }
    return this.kept.done;
  }

  /** This scope while it is open, else the innermost scope around it that is (the outermost one at least). */
  openOrAround(): TransactionScope {
    let open: TransactionScope = this;
    while (open.parent && open.refusal()) open = open.parent;
    return open;
  }

  /** True when `scope` is this scope or lies inside it. */
  encloses(scope: TransactionScope): boolean {
    for (let current: TransactionScope | undefined = scope; current; current = current.parent) if (current === this) return true;
    return false;
  }

  /**
   * The error for a new call made in this scope, or undefined when the scope and every enclosing one are still
   * open. `ending` (for the scope's own COMMIT/RELEASE/ROLLBACK) accepts this scope in its `ending` state.
   */
  refusal(ending = false): TransactionEndedError | undefined {
    for (let scope: TransactionScope | undefined = this; scope; scope = scope.parent) {
      const accepted = scope.state === 'open' || (ending && scope === this && scope.state === 'ending');
      if (!accepted) return scope.endedError();
    }
    return undefined;
  }

  /** The error for work that reached this scope after it had physically ended (or that of an enclosing scope). */
  endedRefusal(): TransactionEndedError | undefined {
    for (let scope: TransactionScope | undefined = this; scope; scope = scope.parent) {
      if (scope.state === 'ended') return scope.endedError();
    }
    return undefined;
  }

  /**
   * Hands a released savepoint's hooks and feature state to its parent: the hooks now wait for the outer
   * commit/rollback, and what the savepoint took (for example advisory locks) is now held by the parent.
   * Map-valued locals are merged entry by entry; others are kept where the parent has none.
   */
  mergeInto(parent: TransactionScope): void {
    parent.afterCommit.push(...this.afterCommit);
    parent.afterRollback.push(...this.afterRollback);
    for (const [feature, value] of this.locals) {
      const mine = parent.locals.get(feature);
      if (mine instanceof Map && value instanceof Map) for (const [key, entry] of value) mine.set(key, entry);
      else if (mine === undefined) parent.locals.set(feature, value);
    }
  }

  private endedError(): TransactionEndedError {
    return new TransactionEndedError(this.kind === 'test' ? 'test transaction' : this.kind, this.state === 'ending' ? 'ending' : (this.outcome ?? 'ended'));
  }
}

/**
 * What an async context runs in, per DataSource: the scope of its current transaction there, or `null` for
 * "explicitly outside any transaction" (NOT_SUPPORTED, hooks, the library's own statements). Each DataSource
 * has its own entry, so a transaction on one never hides or captures another's.
 */
export type ScopeMap = ReadonlyMap<DataSource, TransactionScope | null>;

// The current scopes travel in the library's one AsyncLocalStorage (call-context.ts), with its other call-chain values.
const scopeSlot = new CallContextSlot<ScopeMap>('transaction-scopes');

const NO_SCOPES: ScopeMap = new Map();

// The test transaction of each DataSource under test (nestjs-txlock/testing): what code outside any transaction
// of the app runs in, whatever async context it comes from (an HTTP request through supertest has none).
const testScopes = processWide('test-scopes', () => new Map<DataSource, TransactionScope>());

/**
 * The scope the caller runs in on `dataSource`: its transaction there, or (outside any, or explicitly outside
 * one) the test transaction when the DataSource is under test; undefined otherwise.
 */
export function currentScope(dataSource: DataSource): TransactionScope | undefined {
  const scope = scopeSlot.getStore()?.get(dataSource);
  if (scope) return scope.kind === 'test' && scope.parent ? openAround(scope) : scope;
  if (!tests.identify) return testScopes.get(dataSource);
  // Under nestjs-txlock/testing: the test the caller's code belongs to, by the test runner's own context.
  const identity = tests.identify();
  return (identity && tests.bindings.get(identity)?.get(dataSource)) || testScopes.get(dataSource);
}

// Under a test transaction, work outside the app's transactions that a call ran aside (a session-scope lock's body, a
// NOT_SUPPORTED body) and that outlives it runs where production runs it, outside any transaction: in the innermost
// scope around it that is still open and stands outside the app's transactions (the test's own, at least), never in
// the app transaction the call was made in.
function openAround(scope: TransactionScope): TransactionScope {
  let open = scope;
  while (open.parent && (open.kind !== 'test' || open.refusal())) open = open.parent;
  return open;
}

/** True while some DataSource is under a test transaction. */
export function underTest(): boolean {
  return testScopes.size > 0;
}

/** The test transaction `dataSource` is under, if any. */
export function testScopeOf(dataSource: DataSource): TransactionScope | undefined {
  return testScopes.get(dataSource);
}

/** Puts `dataSource` under the test transaction `scope`, or (undefined) takes it out again. */
export function setTestScope(dataSource: DataSource, scope: TransactionScope | undefined): void {
  if (scope) testScopes.set(dataSource, scope);
  else testScopes.delete(dataSource);
}

/**
 * The scopes of one test's transactions, as the context of the test's own code: work the test starts (a direct
 * provider call, a timer, an un-awaited promise) carries it, so it runs in that test's transaction, and finds it
 * ended (TransactionEndedError) if it runs after the test, instead of committing between tests or writing into
 * the next test's transaction.
 */
class TestBinding extends Map<DataSource, TransactionScope | null> {
  constructor(readonly previous: ScopeMap | undefined) {
    super(previous ?? NO_SCOPES);
  }

  /** Its test is still running: none of its test transactions has ended. */
  get open(): boolean {
    for (const scope of this.values()) if (scope?.kind === 'test' && scope.refusal()) return false;
    return true;
  }
}

/**
 * Binds the caller's context to the test transaction about to begin on `dataSource`; the DataSources of one test share
 * one binding. Called before the first await of beginTestTransaction(), so the caller's continuation inherits it;
 * `byTestIdentity` (from a hook, whose context the test does not inherit): also the test the runner says is running,
 * for all its code. Returns the function that records the test transaction once it exists.
 */
export function bindCallerToTest(dataSource: DataSource, byTestIdentity: boolean): (root: TransactionScope) => void {
  const identity = byTestIdentity ? tests.identify?.() : undefined;
  const store = scopeSlot.getStore();
  const known = identity && tests.bindings.get(identity);
  const binding = known && known.open ? known : store instanceof TestBinding && store.open ? store : new TestBinding(store);
  if (binding !== store) scopeSlot.enterWith(binding);
  if (identity) tests.bindings.set(identity, binding);
  return (root) => binding.set(dataSource, root);
}

// The test of the code running now, as the test runner tracks it (set by nestjs-txlock/testing), and the binding of
// each test: the runner's own context reaches the test's code (and what it starts) where enterWith() from a hook
// cannot (jest 30 runs each hook and test in an AsyncLocalStorage.run() of its own).
// Process-wide: the kit may be one copy of the library (CommonJS) and the app's services the other (ES module).
const tests = processWide('test-identities', () => ({ identify: undefined as (() => object | undefined) | undefined, bindings: new WeakMap<object, TestBinding>() }));

/** Tells the core how to know which test the running code belongs to (nestjs-txlock/testing). */
export function identifyTestsBy(identify: () => object | undefined): void {
  tests.identify ??= identify;
}

/**
 * Unbinds the caller's context from its test (called as the test ends, before its rollback's first await), so
 * hooks that run after it are outside any test again; work the test started keeps the binding, and is refused.
 */
export function unbindCallerFromTest(): void {
  const store = scopeSlot.getStore();
  if (store instanceof TestBinding) scopeSlot.enterWith(store.previous ?? NO_SCOPES);
}

/**
 * Runs `fn` (an HTTP handler) bound to the test transactions current when it starts, so that a request still
 * running after its test ended finds that test's transaction ended (TransactionEndedError) instead of
 * writing into the next test's.
 */
export function runInCurrentTests<T>(fn: () => T): T {
  const store = scopeSlot.getStore();
  if (!bindsToTests(store)) return fn();
  // A request's async context comes from the server's connection, which may carry the binding of a test that has
  // ended (Vitest on Node 20): a request that starts now belongs to the tests running now, or to none.
  const scopes = new Map(store instanceof TestBinding && !store.open ? (store.previous ?? NO_SCOPES) : (store ?? NO_SCOPES));
  for (const [dataSource, scope] of testScopes) {
    const inherited = scopes.get(dataSource);
    if (!inherited || (inherited.kind === 'test' && inherited !== scope)) scopes.set(dataSource, scope);
  }
  return scopeSlot.run(scopes, fn);
}

/**
 * True when an HTTP request must be bound with runInCurrentTests(): tests run under nestjs-txlock/testing, or the
 * request's context carries the binding of a test (one that ended, when no test runs now).
 */
export function bindsRequestsToTests(): boolean {
  return bindsToTests(scopeSlot.getStore());
}

function bindsToTests(store: ScopeMap | undefined): boolean {
  return testScopes.size > 0 || store instanceof TestBinding;
}

/** True when the caller runs in an open transaction of any DataSource (it holds a connection). */
export function holdsConnection(): boolean {
  for (const scope of scopeSlot.getStore()?.values() ?? []) if (scope && !scope.refusal()) return true;
  return false;
}

/** Runs `fn` with `scope` as the current scope of `dataSource` (null: outside any transaction there), the others unchanged. */
export function runInScope<T>(dataSource: DataSource, scope: TransactionScope | null, fn: () => T): T {
  const scopes = new Map(scopeSlot.getStore() ?? NO_SCOPES);
  scopes.set(dataSource, scope);
  return scopeSlot.run(scopes, fn);
}

// Under a test transaction: the scope a lease's statement (or, with joinDataSource: false, TypeORM's own API) was called
// in. It runs in that scope under the kit (docs/testing.md), though in production it runs outside the transaction.
const outsideUnderTest = new CallContextSlot<TransactionScope>('outside-under-test');

/**
 * Runs `fn` in `scope` as work that production runs outside that scope's transaction (nestjs-txlock/testing): what
 * it sends does not count as the transaction's own work (exemptFromUse()), so a later call may still set its
 * isolation level, as in production.
 */
export function runOutsideUnderTest<T>(scope: TransactionScope, fn: () => T): T {
  return outsideUnderTest.run(standingFor(scope), fn);
}

/**
 * The scope that stands for the transaction `scope` belongs to (a NESTED savepoint runs at its transaction's
 * level), which records whether anything ran in it; under a test transaction, outside the app's, the test's own.
 */
export function standingFor(scope: TransactionScope): TransactionScope {
  let standing = scope;
  while (standing.isolation === undefined && standing.kind !== 'test' && standing.parent) standing = standing.parent;
  return standing;
}

/**
 * The scope whose transaction work submitted now does not use (runOutsideUnderTest()), if any. Read only under a
 * test transaction: production pays no context lookup per statement for it.
 */
export function exemptFromUse(): TransactionScope | undefined {
  return testScopes.size > 0 ? outsideUnderTest.getStore() : undefined;
}

/** Runs `fn` outside every transaction of every DataSource (after-commit hooks). */
export function runOutsideTransactions<T>(fn: () => T): T {
  return scopeSlot.run(NO_SCOPES, fn);
}
