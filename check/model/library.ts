/**
 * The library's documented semantics, as generator functions over the model's world. Each `yield` is a point
 * where other work may run (a real `await` between two things others can see); code between yields is atomic.
 * The README sections these follow: "@Transactional() and TransactionHost" (the propagation table), "What the
 * library guarantees", "Concurrency inside one transaction", "Locks" and "Lock lifetimes and concurrent
 * branches", "Counters", "Get-or-create".
 */
import type { DataSourceName, Isolation, LockPropagation, Propagation } from './program.js';
import { counterKey, gocKey, onDataSource } from './program.js';
import { BranchLocks, fail, ModelError, requireIsolation, Scope, type Conn, type Database, type Handle, type Hold, type Work, type Write } from './world.js';

/** A step of a model thread: `wait` blocks it until the condition holds. */
export interface Step {
  wait?: () => boolean;
}
export type Gen<T = unknown> = Generator<Step, T, unknown>;
const PAUSE: Step = {};

/** The session-scope lock calls of one call chain: one pinned connection. */
export interface Session {
  conn: Conn;
  branches: BranchLocks;
  held: Map<number, boolean>;
  users: Map<number, number>;
  broken: boolean;
}

/** What the call chain carries (AsyncLocalStorage in the library): its scope and session per DataSource, its lock chain. */
export interface Ctx {
  scopes: Partial<Record<DataSourceName, Scope>>;
  sessions: Partial<Record<DataSourceName, Session>>;
  chain: Hold | undefined;
  /**
   * Where detached work (an un-awaited call) was started: the lock chain at that point. The holds from there up are
   * still this chain's (AsyncLocalStorage carries them) but do not await it, so they are no re-entry for it.
   */
  detachedAt?: Hold;
}

/** A lock call's abort signal (the `abort` option of a program's lock): set by a model thread at any moment. */
export interface AbortFlag {
  aborted: boolean;
}

export const withScope = (ctx: Ctx, ds: DataSourceName, scope: Scope | undefined): Ctx => ({ ...ctx, scopes: { ...ctx.scopes, [ds]: scope } });

export interface TxOptions {
  propagation?: Propagation | LockPropagation;
  isolation?: Isolation;
  readOnly?: boolean;
}

/** A statement a program sends through the library. */
export type Statement =
  | { kind: 'insert'; label: string }
  | { kind: 'bad' }
  | { kind: 'probe' }
  | { kind: 'counter'; key: number; by: number; max?: number }
  | { kind: 'goc'; key: number; update: boolean };

/** What a lock call asks for. */
type LockRequest = { key: number; nowait: boolean; shared: boolean; abort?: AbortFlag };

/** The library model: TransactionHost, LockService, CounterService and AtomicService over one Database. */
export class LibraryModel {
  constructor(private readonly db: Database) {}

  // ---- TransactionHost.run / @Transactional

  *run<T>(ctx: Ctx, ds: DataSourceName, options: TxOptions, body: (ctx: Ctx) => Gen<T>): Gen<T> {
    const scope = ctx.scopes[ds];
    const propagation = options.propagation ?? 'REQUIRED';
    if (!scope && propagation === 'REQUIRED') return yield* this.begin(ctx, ds, options, body);
    switch (propagation) {
      case 'REQUIRES_NEW':
        return yield* this.begin(ctx, ds, options, body);
      case 'NOT_SUPPORTED':
        return yield* body(withScope(ctx, ds, undefined));
      case 'NEVER':
        if (scope && !scope.refusal()) {
          yield PAUSE; // the refusal comes after run()'s own steps: work already started may get in first
          throw fail('TransactionNotAllowedError');
        }
        return yield* body(withScope(ctx, ds, undefined));
    }
    // The call reaches the isolation check after a few awaits of its own: un-awaited work started before it may have
    // sent its first statement by then (which decides between raising the level and WeakerIsolationError).
    if (scope && options.isolation !== undefined) yield PAUSE;
    // Work that outlived its transaction is refused by the propagations that would use it.
    const ended = scope?.refusal();
    if (ended) throw ended;
    if (scope) requireIsolation(scope.conn, options.isolation);
    switch (propagation) {
      case 'REQUIRED':
        return yield* this.join(ctx, scope!, body);
      case 'NESTED':
        return scope ? yield* this.nested(ctx, ds, scope, body) : yield* this.begin(ctx, ds, options, body);
      case 'SUPPORTS':
        return scope ? yield* this.join(ctx, scope, body) : yield* body(ctx);
      case 'MANDATORY':
        if (!scope) throw fail('TransactionRequiredError');
        return yield* this.join(ctx, scope, body);
    }
    throw new Error(`unknown propagation ${propagation}`);
  }

  // A joined call that throws makes the transaction (or savepoint) it joined rollback-only.
  private *join<T>(ctx: Ctx, scope: Scope, body: (ctx: Ctx) => Gen<T>): Gen<T> {
    try {
      return yield* body(ctx);
    } catch (error) {
      yield PAUSE;
      scope.rollbackOnly = true;
      throw error;
    }
  }

  private *begin<T>(ctx: Ctx, ds: DataSourceName, options: TxOptions, body: (ctx: Ctx) => Gen<T>): Gen<T> {
    yield PAUSE; // a pooled connection
    const conn = this.db.open('tx', ds, options.isolation ?? 'READ COMMITTED', options.readOnly ?? false);
    yield PAUSE; // subscriber broadcasts
    const root = conn.root;
    let result: T;
    try {
      result = yield* body(withScope(ctx, ds, root));
      yield { wait: () => root.keepers === 0 }; // detached work deferred by a lock of this transaction goes first
      if (root.rollbackOnly) throw fail('RollbackOnlyError');
      yield PAUSE; // BeforeTransactionCommit
      root.close();
      yield* this.await(this.db.submit(conn, this.db.commit(conn)));
      root.finish();
      yield PAUSE;
    } catch (error) {
      if (error instanceof ModelError && error.name === 'CommitOutcomeUnknownError') {
        this.db.close(conn);
        throw error;
      }
      yield* this.rollbackAndClose(conn);
      throw error;
    }
    this.db.close(conn);
    return result;
  }

  private *rollbackAndClose(conn: Conn): Gen<void> {
    yield PAUSE; // BeforeTransactionRollback
    const root = conn.root;
    root.close();
    try {
      if (!root.ended) yield* this.await(this.db.submit(conn, this.db.rollback(conn)));
    } catch {
      // ROLLBACK failed (the connection is gone): the connection is destroyed, which rolls back.
    }
    root.finish();
    this.db.close(conn);
    yield PAUSE;
  }

  private *nested<T>(ctx: Ctx, ds: DataSourceName, parent: Scope, body: (ctx: Ctx) => Gen<T>): Gen<T> {
    const conn = parent.conn;
    const scope = new Scope(conn, 'savepoint', parent);
    yield PAUSE;
    yield* this.await(this.db.submit(conn, this.db.savepoint(scope)));
    let result: T;
    try {
      result = yield* body(withScope(ctx, ds, scope));
      yield { wait: () => scope.keepers === 0 };
      if (scope.rollbackOnly) throw fail('RollbackOnlyError');
      scope.close();
      yield* this.await(this.db.submit(conn, this.db.release(scope)));
    } catch (error) {
      // As on the way out without an error (and as rollbackAndClose): the body's rejection reaches the savepoint's
      // end some microtasks later, so an un-awaited statement of the body may be queued in the savepoint first.
      yield PAUSE;
      if (!scope.ended) {
        scope.close();
        try {
          yield* this.await(this.db.submit(conn, this.db.rollbackTo(scope)));
        } catch {
          // refused: the transaction around it ended, which rolled it back
        }
      }
      throw error;
    }
    // The released savepoint's lock records now belong to its parent.
    for (const [key, shared] of scope.taken) parent.taken.set(key, (parent.taken.get(key) ?? true) && shared);
    return result;
  }

  // ---- TypeORM's own transaction API inside ours (routed runners)

  /**
   * `qr.startTransaction(isolation)` … `commitTransaction()` / `rollbackTransaction()` on the runner
   * `dataSource.createQueryRunner()` hands out inside a transaction: a savepoint of ours, through the turn-taking
   * queue like a NESTED call, whose statements are the body's (through `qr.manager`); a failing body is rolled back
   * in the program's catch, as TypeORM's docs show.
   */
  *manual(ctx: Ctx, ds: DataSourceName, isolation: Isolation | undefined, end: 'commit' | 'rollback', body: (ctx: Ctx) => Gen<unknown>): Gen<unknown> {
    const parent = ctx.scopes[ds];
    if (!parent) throw new Error('a manual transaction outside a transaction is not generated');
    if (isolation !== undefined) yield PAUSE; // as in run(): un-awaited work may have sent a statement first
    requireIsolation(parent.conn, isolation);
    yield PAUSE; // BeforeTransactionStart
    const conn = parent.conn;
    const scope = new Scope(conn, 'savepoint', parent);
    yield* this.await(this.db.submit(conn, this.db.savepoint(scope)));
    yield PAUSE; // AfterTransactionStart
    let open = true;
    try {
      yield* body(withScope(ctx, ds, scope));
      open = false;
      yield* this.endManual(scope, end === 'commit');
    } catch (error) {
      if (open) yield* this.endManual(scope, false);
      throw error;
    }
    return undefined;
  }

  private *endManual(scope: Scope, commit: boolean): Gen<void> {
    yield PAUSE; // BeforeTransactionCommit / BeforeTransactionRollback
    scope.close();
    yield* this.await(this.db.submit(scope.conn, commit ? this.db.release(scope) : this.db.rollbackTo(scope)));
  }

  /** `dataSource.transaction(isolation, fn)` inside a transaction: a NESTED call at the transaction's level. */
  *dataSourceTransaction(ctx: Ctx, ds: DataSourceName, isolation: Isolation | undefined, body: (ctx: Ctx) => Gen<unknown>): Gen<unknown> {
    const scope = ctx.scopes[ds];
    if (!scope) throw new Error('dataSource.transaction() outside a transaction is not generated');
    if (isolation !== undefined) yield PAUSE;
    requireIsolation(scope.conn, isolation);
    return yield* this.nested(ctx, ds, scope, body);
  }

  /** `commitTransaction()` / `rollbackTransaction()` on `dataSource.createQueryRunner()` with no startTransaction(). */
  *strayEnd(ctx: Ctx, ds: DataSourceName): Gen<unknown> {
    yield PAUSE;
    // Inside a transaction the runner is a routed one, which never ends it; outside, TypeORM's own refuses it.
    throw fail(ctx.scopes[ds] ? 'StrayTransactionEndError' : 'TransactionNotStartedError');
  }

  *await(handle: Handle): Gen<unknown> {
    yield { wait: () => handle.done };
    if (handle.error) throw handle.error;
    return handle.value;
  }

  // ---- statements

  /** A statement through a transaction-aware repository or `txHost.manager`: in the caller's scope, else autocommit. */
  *statement(ctx: Ctx, ds: DataSourceName, statement: Statement): Gen<unknown> {
    const scope = ctx.scopes[ds];
    yield PAUSE;
    if (!scope) return yield* this.autocommit(ds, statement);
    const conn = scope.conn;
    const work = this.db.work(
      conn,
      scope,
      () => this.execute(ds, conn, statement),
      () => this.blocked(ds, conn, statement),
    );
    return yield* this.await(this.db.submit(conn, work));
  }

  private *autocommit(ds: DataSourceName, statement: Statement): Gen<unknown> {
    yield { wait: () => !this.blocked(ds, undefined, statement) };
    return this.execute(ds, undefined, statement);
  }

  // True while another connection holds the row (or unique key) the statement must lock.
  private blocked(ds: DataSourceName, conn: Conn | undefined, statement: Statement): boolean {
    // A statement that fails at once (read-only, aborted, lost connection) waits for nothing.
    if (conn && (conn.readOnly || conn.abortedAt || conn.lost)) return false;
    if (statement.kind === 'counter') return this.db.conflict(`c:${onDataSource(ds, counterKey(statement.key))}`, conn, false);
    if (statement.kind === 'goc') {
      const key = onDataSource(ds, gocKey(statement.key));
      if (!statement.update && this.db.goc.has(key)) return false; // a committed row is read without waiting
      return this.db.conflict(`g:${key}`, conn, false);
    }
    return false;
  }

  // Runs a statement atomically: in `conn`'s innermost scope, or on its own (autocommit) without `conn`.
  private execute(ds: DataSourceName, conn: Conn | undefined, statement: Statement): unknown {
    if (statement.kind === 'probe') {
      if (conn) this.db.send(conn);
      return 'ok';
    }
    if (!conn) return this.executeAutocommit(ds, statement);
    this.db.send(conn);
    const top = conn.top;
    const writes = (write: Write) => top.writes.push(write);
    // The library names what its own statements (counters, get-or-create) meet in a transaction; the app's stay raw.
    if (conn.readOnly) this.db.abort(conn, statement.kind === 'counter' || statement.kind === 'goc' ? 'ReadOnlyTransactionError' : 'QueryFailedError:25006');
    switch (statement.kind) {
      case 'insert':
        writes({ kind: 'row', label: onDataSource(ds, statement.label) });
        return 'ok';
      case 'bad':
        return this.db.abort(conn, 'QueryFailedError:23514');
      case 'counter': {
        const key = onDataSource(ds, counterKey(statement.key));
        conn.touched.add('counter');
        if (this.db.serializationMayFail(conn, `c:${key}`) && this.db.choose(2, 'serialization failure (counter)') === 1) {
          this.db.abort(conn, 'TransactionSerializationError');
        }
        this.db.hold(`c:${key}`, conn, top, false);
        if (statement.max !== undefined && this.db.counterValue(key, conn) + statement.by > statement.max) return 'ok:refused';
        writes({ kind: 'counter', key, by: statement.by });
        return 'ok';
      }
      case 'goc': {
        const key = onDataSource(ds, gocKey(statement.key));
        conn.touched.add('goc');
        if (this.db.serializationMayFail(conn, `g:${key}`) && this.db.choose(2, 'serialization failure (get-or-create)') === 1) {
          this.db.abort(conn, 'GetOrCreateSerializationError');
        }
        if (this.db.gocExists(key, conn)) {
          if (statement.update) this.db.hold(`g:${key}`, conn, top, false);
          return 'ok:found';
        }
        writes({ kind: 'goc', key });
        this.db.hold(`g:${key}`, conn, top, false);
        return 'ok:created';
      }
    }
  }

  private executeAutocommit(ds: DataSourceName, statement: Exclude<Statement, { kind: 'probe' }>): unknown {
    switch (statement.kind) {
      case 'insert':
        this.db.autocommit([{ kind: 'row', label: onDataSource(ds, statement.label) }]);
        return 'ok';
      case 'bad':
        throw fail('QueryFailedError:23514');
      case 'counter': {
        const key = onDataSource(ds, counterKey(statement.key));
        if (statement.max !== undefined && this.db.counterValue(key) + statement.by > statement.max) return 'ok:refused';
        this.db.autocommit([{ kind: 'counter', key, by: statement.by }]);
        return 'ok';
      }
      case 'goc': {
        const key = onDataSource(ds, gocKey(statement.key));
        if (this.db.gocExists(key)) return 'ok:found';
        this.db.autocommit([{ kind: 'goc', key }]);
        return 'ok:created';
      }
    }
  }

  // ---- CounterService and AtomicService

  /** increment / tryIncrement: one statement, in the caller's transaction or on its own. */
  *counter(ctx: Ctx, ds: DataSourceName, key: number, by: number, max: number | undefined): Gen<unknown> {
    return yield* this.statement(ctx, ds, { kind: 'counter', key, by, max });
  }

  /** getOrCreate / updateOrCreate: inside a transaction in a savepoint of its own (a NESTED call), else on its own. */
  *getOrCreate(ctx: Ctx, ds: DataSourceName, key: number, update: boolean): Gen<unknown> {
    const statement: Statement = { kind: 'goc', key, update };
    if (!ctx.scopes[ds]) return yield* this.statement(ctx, ds, statement);
    return yield* this.run(ctx, ds, { propagation: 'NESTED' }, (inner) => this.statement(inner, ds, statement));
  }

  // ---- LockService.withAdvisoryLock

  /** withAdvisoryLock(key, body, { scope, propagation, nowait, shared, signal }). */
  *advisoryLock<T>(
    ctx: Ctx,
    ds: DataSourceName,
    request: { key: number; scope: 'transaction' | 'session'; propagation?: LockPropagation; nowait: boolean; shared: boolean; abort?: AbortFlag },
    body: (ctx: Ctx) => Gen<T>,
  ): Gen<T> {
    if (request.scope === 'session') return yield* this.sessionLock(ctx, ds, request, body);
    const outer = ctx.scopes[ds];
    const { propagation } = request;
    const joins = outer && (propagation === undefined || propagation === 'REQUIRED' || propagation === 'MANDATORY');
    if (joins) {
      // The lock is taken in the caller's scope before the body joins it.
      return yield* this.guarded(ctx, outer, false, request, (inner) => this.run(inner, ds, { propagation }, body));
    }
    return yield* this.run(ctx, ds, { propagation }, (inner) => this.guarded(inner, inner.scopes[ds]!, true, request, body));
  }

  // Holds the key against the other branches of the transaction, takes it in PostgreSQL, then runs the body.
  private *guarded<T>(ctx: Ctx, scope: Scope, own: boolean, request: LockRequest, body: (ctx: Ctx) => Gen<T>): Gen<T> {
    void own; // a joined wait that a signal may cancel runs in a savepoint of its own: the transaction stays usable either way
    return yield* this.branchRun(ctx, scope.root.branch!, scope, request, function* (this: LibraryModel, inner: Ctx) {
      yield* this.takeLock(scope, `a:${scope.conn.ds}:${request.key}`, request);
      return yield* body(inner);
    }.bind(this));
  }

  private *takeLock(scope: Scope, resource: string, request: LockRequest): Gen<void> {
    const conn = scope.conn;
    const heldAlready = () => {
      for (let s: Scope | undefined = scope; s; s = s.parent) {
        const taken = s.taken.get(resource);
        if (taken !== undefined && (taken === false || request.shared)) return true;
      }
      return false;
    };
    yield PAUSE;
    const work: Work = this.db.work(
      conn,
      scope,
      () => {
        if (heldAlready()) return 'skipped';
        if (request.abort?.aborted) throw fail('LockAbortedError'); // aborted before it was sent: nothing is sent
        this.db.send(conn);
        if (this.db.conflict(resource, conn, request.shared)) {
          if (request.nowait) return 'busy';
          // Cancelled on the server while it waited; inside a savepoint of its own when joined, so nothing is aborted.
          throw fail('LockAbortedError');
        }
        this.db.hold(resource, conn, conn.top, request.shared);
        scope.taken.set(resource, (scope.taken.get(resource) ?? true) && request.shared);
        return 'taken';
      },
      () => !request.nowait && !request.abort?.aborted && !heldAlready() && !conn.lost && !conn.abortedAt && this.db.conflict(resource, conn, request.shared),
    );
    const outcome = yield* this.await(this.db.submit(conn, work));
    if (outcome === 'busy') throw fail('LockNotAcquiredError');
  }

  // BranchLocks.run: wait until no other branch holds the key (not at all with nowait; until the signal aborts), hold
  // it until `fn` settles. Re-entry is for the holds that await the call: detached work (ctx.detachedAt) waits for
  // the holds of the chain that started it, and keeps `frame` open until it has had its turn.
  private *branchRun<T>(ctx: Ctx, locks: BranchLocks, frame: Scope, request: LockRequest, fn: (ctx: Ctx) => Gen<T>): Gen<T> {
    const ancestors = new Set<Hold>();
    for (let hold = ctx.chain; hold && hold !== ctx.detachedAt; hold = hold.parent) ancestors.add(hold);
    const hold: Hold = { key: request.key, shared: request.shared, parent: ctx.chain };
    let release: (() => void) | undefined;
    if (locks.admits(request.key, request.shared, ancestors)) locks.holds.add(hold);
    else {
      if (request.nowait || request.abort?.aborted) {
        yield PAUSE;
        throw fail(request.nowait ? 'LockNotAcquiredError' : 'LockAbortedError');
      }
      let deferred = false;
      for (let held = ctx.chain; held; held = held.parent) {
        if (!ancestors.has(held) && held.key === request.key && !(held.shared && request.shared)) deferred = true;
      }
      if (deferred) release = frame.keepOpen();
      const waiter = { key: request.key, shared: request.shared, ancestors, hold, admitted: false };
      locks.waiting.push(waiter);
      yield { wait: () => waiter.admitted || request.abort?.aborted === true };
      if (!waiter.admitted) {
        locks.waiting.splice(locks.waiting.indexOf(waiter), 1);
        release?.();
        throw fail('LockAbortedError');
      }
    }
    try {
      return yield* fn({ ...ctx, chain: hold });
    } finally {
      yield PAUSE;
      locks.holds.delete(hold);
      locks.admitWaiting();
      release?.();
    }
  }

  // Session scope: one pinned connection per call chain; refused inside a transaction.
  private *sessionLock<T>(ctx: Ctx, ds: DataSourceName, request: LockRequest, body: (ctx: Ctx) => Gen<T>): Gen<T> {
    const scope = ctx.scopes[ds];
    if (scope) {
      const ended = scope.refusal();
      if (ended) throw ended;
      yield PAUSE; // the refusal comes after withAdvisoryLock()'s own steps: work already started may get in first
      throw fail('InvalidOptionError');
    }
    const current = ctx.sessions[ds];
    if (current) return yield* this.sessionRunOn(ctx, current, request, body);
    yield PAUSE; // a pooled connection
    const conn = this.db.open('session', ds, 'READ COMMITTED', false);
    const session: Session = { conn, branches: new BranchLocks(), held: new Map(), users: new Map(), broken: false };
    try {
      return yield* this.sessionRunOn({ ...ctx, sessions: { ...ctx.sessions, [ds]: session } }, session, request, body);
    } finally {
      // Detached work deferred by one of the session's locks has its turn first.
      yield { wait: () => conn.root.keepers === 0 };
      if (!session.broken) {
        try {
          yield* this.sessionExec(session, () => this.db.unlockAllSession(conn));
        } catch {
          session.broken = true;
        }
      }
      this.db.close(conn);
    }
  }

  private *sessionRunOn<T>(ctx: Ctx, session: Session, request: LockRequest, body: (ctx: Ctx) => Gen<T>): Gen<T> {
    return yield* this.branchRun(ctx, session.branches, session.conn.root, request, function* (this: LibraryModel, inner: Ctx) {
      const { key, shared } = request;
      const held = session.held.get(key);
      const take = !(held === false || (held === true && shared));
      if (take) yield* this.sessionAcquire(session, request);
      else yield PAUSE; // runHolding awaits acquire() even with no key left to take
      if (take) session.held.set(key, shared);
      session.users.set(key, (session.users.get(key) ?? 0) + 1);
      let value: T;
      try {
        value = yield* body(inner);
      } catch (error) {
        try {
          yield* this.sessionRelease(session, key);
        } catch {
          // logged by the library; the body's error is the one reported
        }
        throw error;
      }
      yield* this.sessionRelease(session, key);
      return value;
    }.bind(this));
  }

  private *sessionAcquire(session: Session, request: LockRequest): Gen<void> {
    const conn = session.conn;
    const resource = `a:${conn.ds}:${request.key}`;
    let outcome: unknown;
    yield PAUSE;
    if (!request.nowait && request.abort?.aborted) throw fail('LockAbortedError'); // nothing sent
    try {
      const work = this.db.work(
        conn,
        conn.root,
        () => {
          this.db.send(conn);
          if (this.db.conflict(resource, conn, request.shared)) {
            if (request.nowait) return 'busy';
            throw fail('LockAbortedError'); // cancelled on the server while it waited
          }
          this.db.hold(resource, conn, undefined, request.shared);
          return 'taken';
        },
        () => !request.nowait && !request.abort?.aborted && !conn.lost && this.db.conflict(resource, conn, request.shared),
      );
      outcome = yield* this.await(this.db.submit(conn, work));
    } catch (error) {
      try {
        yield* this.sessionExec(session, () => this.db.unlockSession(resource, conn));
      } catch {
        session.broken = true;
      }
      throw error;
    }
    if (outcome === 'busy') throw fail('LockNotAcquiredError');
  }

  // Releases the key once no call of the chain relies on it any more; LockLostError if it was no longer held.
  private *sessionRelease(session: Session, key: number): Gen<void> {
    const users = (session.users.get(key) ?? 1) - 1;
    if (users > 0) session.users.set(key, users);
    else session.users.delete(key);
    if (users > 0 || !session.held.has(key)) return;
    session.held.delete(key);
    let released: unknown;
    try {
      released = yield* this.sessionExec(session, () => this.db.unlockSession(`a:${session.conn.ds}:${key}`, session.conn));
    } catch {
      session.broken = true;
      throw fail('LockLostError');
    }
    if (released !== true) {
      session.broken = true;
      throw fail('LockLostError');
    }
  }

  private *sessionExec(session: Session, effect: () => unknown): Gen<unknown> {
    const conn = session.conn;
    yield PAUSE;
    return yield* this.await(
      this.db.submit(
        conn,
        this.db.work(conn, conn.root, () => {
          this.db.send(conn);
          return effect();
        }),
      ),
    );
  }
}

export { ModelError };
