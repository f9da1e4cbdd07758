import type { Logger } from '@nestjs/common';
import type { QueryResult } from 'pg';
import type { DataSource } from 'typeorm';
import { LockLostError, LockNotAcquiredError, SessionLockPoolerError } from '../errors.js';
import { isDirectConnection } from '../server/connection-path.js';
import type { PoolerMode } from '../server/pooler.js';
import { serverSql } from '../server/server.sql.js';
import { TransactionConnection } from '../transaction/transaction-connection.js';
import { BranchLocks } from './branch-locks.js';
import { alreadyHeld, type SessionKeys } from './held-locks.js';
import { sqlState } from '../transaction/sql-state.js';
import { lockAborted, lockFailure, type LockRequest } from './lock-request.js';
import type { LockOutcome } from './lock-result.js';
import { lockSql } from './lock.sql.js';
import { boundStatement, resetStatements } from '../transaction/transaction.sql.js';
import { vanishedClientBound, type VanishedClientBound } from '../transaction/vanished-client.js';
import { CallContextSlot } from '../common/call-context.js';

/** One pinned connection and the session locks the current call chain holds on it. */
// A class rather than an object literal, which V8 may allocate in its old generation (common/fresh-array.ts says why not).
class Session {
  /** Keeps concurrent branches of the call chain apart on the same key (PostgreSQL would let both in). */
  readonly branches = new BranchLocks();
  readonly held: SessionKeys = new Map();
  /** How many calls of this call chain rely on each held key right now (concurrent branches may share one). */
  readonly users = new Map<bigint, number>();
  /** Set when the connection's state is unknown: it is destroyed instead of going back to the pool. */
  broken?: unknown;
  /** Aborted with LockLostError when the pinned connection is found lost while the call runs (sessionLockSignal()). */
  readonly lost = new AbortController();

  constructor(
    readonly connection: TransactionConnection,
    /** With the vanished-client bound: how long a statement that never waits (an unlock) may go unanswered. */
    readonly deadlineMs?: number,
  ) {}
}

// The current call chain's sessions, one per DataSource: a session lock on one DataSource says nothing of another
// (it may be another database), and its pinned connection must never carry another DataSource's locks.
const sessionStorage = new CallContextSlot<ReadonlyMap<DataSource, Session>>('session-lock-storage');

/**
 * The signal of the session-scope lock call the caller runs in on `dataSource`: aborted (with LockLostError) when its
 * pinned connection is found lost, after which other callers may hold the lock. Undefined outside such a call.
 */
export function sessionLockSignal(dataSource: DataSource): AbortSignal | undefined {
  return sessionStorage.getStore()?.get(dataSource)?.lost.signal;
}

/** The session keys the current call chain holds on `dataSource`, if it runs inside a session-scope lock there. */
export function currentSessionKeys(dataSource: DataSource): SessionKeys | undefined {
  return sessionStorage.getStore()?.get(dataSource)?.held;
}

/**
 * Runs `fn`, the body of a session-scope lock call under nestjs-txlock/testing (taken in the test's transaction, whose
 * connection is `connection`: LockService), as a session: sessionLockSignal() answers inside it, with a signal that never
 * aborts (the test's connection is not watched). A call nested in one runs in that one.
 */
export function runAsTestSession<T>(dataSource: DataSource, connection: TransactionConnection, fn: () => T): T {
  const sessions = sessionStorage.getStore();
  if (sessions?.has(dataSource)) return fn();
  const session = new Session(connection);
  return sessionStorage.run(new Map(sessions).set(dataSource, session), fn);
}

/**
 * Session-scope advisory locks. The outermost call pins one pooled connection; the locks are taken and
 * released on it (a release on another connection would unlock nothing, and the lock would leak), and
 * nested calls in the same call chain reuse it, so re-entering a key held there is a no-op instead of a
 * self-deadlock, while concurrent branches of the chain on the same key take turns (BranchLocks). Release
 * happens in `finally`; a connection whose release did not answer true is destroyed rather than handed to the
 * next pool user. Work that outlives the call finds the session ended (TransactionEndedError).
 *
 * A session lock only excludes anyone if every statement of the call reaches the backend that took it. Behind a
 * transaction-mode pooler they do not, so before taking anything the pinned connection must prove it talks
 * straight to its backend (isDirectConnection: one round trip per pooled connection, remembered for its life);
 * otherwise the call fails with SessionLockPoolerError, having locked nothing and run nothing.
 */
export class SessionLocks {
  constructor(
    private readonly dataSource: () => DataSource,
    private readonly acquireTimeoutMs: number,
    private readonly logger: Logger,
    private readonly pooler: PoolerMode = 'none',
  ) {}

  async run<T>(request: LockRequest, fn: () => T | Promise<T>): Promise<LockOutcome<T>> {
    const dataSource = this.dataSource();
    const sessions = sessionStorage.getStore();
    const current = sessions?.get(dataSource);
    if (current) return this.runOn(current, request, fn);
    const connection = await TransactionConnection.open(dataSource, this.acquireTimeoutMs, 'session lock', false);
    const bound = vanishedClientBound(dataSource);
    const session = new Session(connection, bound && Math.floor(bound.ms / 2));
    let refused = false;
    let heartbeat: NodeJS.Timeout | undefined;
    try {
      if (this.pooler !== 'session' && !(await this.reachesItsBackend(session))) {
        refused = true;
        throw new SessionLockPoolerError(request.label, 'detected');
      }
      if (bound && bound.session.length > 0) connection.holdBack([boundStatement([], bound.session)]);
      const running = sessionStorage.run(new Map(sessions).set(dataSource, session), () => this.runOn(session, request, fn));
      if (!bound) return await running;
      heartbeat = this.heartbeat(session, bound, request);
      // The call rejects as soon as the lock is lost, even while fn goes on (it can stop on sessionLockSignal()).
      // Promise.race is `running`'s only consumer (it also handles a later rejection): V8's async stack follows a
      // promise with one reaction only, and a second one (a .catch()) would make every lock call inside fn that
      // re-enters a key of its chain look detached (BranchLocks), so it would wait for its own holder.
      return await Promise.race([running, rejectOnAbort(session.lost.signal)]);
    } catch (error) {
      // Ended by the app's shutdown after its grace period: that is what the caller must learn.
      const abandoned = session.connection.abandonment;
      if (abandoned && abandoned !== error && abandoned.cause === undefined) abandoned.cause = error;
      throw abandoned ?? error;
    } finally {
      clearInterval(heartbeat);
      // Detached work deferred by one of the session's locks has its turn first (BranchLocks).
      if (!session.lost.signal.aborted) await session.connection.root.keptOpen();
      // Safety net before the connection goes back to the pool: no session lock may outlive the call, nor the session
      // settings of the bound. Not after a refusal: nothing was taken or set, and behind a pooler the statement would
      // reach another client's server connection.
      const reset = bound ? resetStatements(bound.session) : [];
      if (session.broken === undefined && !refused) await session.connection.execWithin([lockSql.unlockAll, ...reset], session.deadlineMs).catch((error: unknown) => (session.broken = error));
      // RESET took the connection's own keepalives back too: its next transaction makes them again.
      if (reset.length > 0) session.connection.forgetBound();
      await session.connection.close(session.broken);
    }
  }

  // Every quarter of the bound, a statement that must be answered within half of it (vanished-client.ts): a pinned
  // connection that stops answering is destroyed, and the call learns within the bound that its lock may be gone.
  // The server's idle_session_timeout (the same bound) ends a session whose heartbeats stopped arriving.
  private heartbeat(session: Session, bound: VanishedClientBound, request: LockRequest): NodeJS.Timeout {
    const timer = setInterval(() => {
      void session.connection.heartbeat(Math.floor(bound.ms / 2)).then((alive) => {
        if (alive || session.lost.signal.aborted) return;
        session.broken ??= session.connection.lostReason;
        clearInterval(timer);
        session.lost.abort(new LockLostError(request.label, session.connection.lostReason));
      });
    }, Math.floor(bound.ms / 4));
    timer.unref();
    return timer;
  }

  // Whether the pinned connection's statements reach the backend it was opened on (not a pooler's server connections).
  private async reachesItsBackend(session: Session): Promise<boolean> {
    const client = await session.connection.queryRunner.connect();
    return isDirectConnection(client, async () => Number((await this.exec(session, [serverSql.backendPid]))[0]!.rows[0].pid));
  }

  private runOn<T>(session: Session, request: LockRequest, fn: () => T | Promise<T>): Promise<LockOutcome<T>> {
    return session.branches.run(
      request,
      (timeoutMs) => this.runHolding(session, { ...request, timeoutMs }, fn),
      (failure) => ({ ran: false, failure }),
      session.connection.root,
    );
  }

  // Takes the keys the session does not hold yet, runs fn, and releases them before another branch may enter.
  private async runHolding<T>(session: Session, request: LockRequest, fn: () => T | Promise<T>): Promise<LockOutcome<T>> {
    const keys = request.keys.filter((key) => !alreadyHeld(key, request.shared, undefined, session.held));
    const failure = await this.acquire(session, keys, request);
    request.observation?.acquired(failure);
    if (failure) return { ran: false, failure };
    for (const key of keys) session.held.set(key, request.shared);
    for (const key of request.keys) session.users.set(key, (session.users.get(key) ?? 0) + 1);
    let value: T;
    try {
      value = await fn();
    } catch (error) {
      await this.release(session, this.lastUsers(session, request.keys), request).catch((releaseError: unknown) => this.logger.warn(String(releaseError)));
      throw error;
    }
    await this.release(session, this.lastUsers(session, request.keys), request);
    return { ran: true, value };
  }

  // A key is released only when no call of the chain relies on it any more: with Promise.all, the branch
  // that re-entered a key may still be running when the branch that took it finishes.
  private lastUsers(session: Session, keys: bigint[]): bigint[] {
    return keys.filter((key) => {
      const users = (session.users.get(key) ?? 1) - 1;
      if (users > 0) session.users.set(key, users);
      else session.users.delete(key);
      return users === 0 && session.held.has(key);
    });
  }

  private exec(session: Session, statements: string[], signal?: AbortSignal): Promise<QueryResult[]> {
    if (!signal) return session.connection.exec(session.connection.root, statements);
    return session.connection.exclusive(session.connection.root, (send) => send(statements, signal));
  }

  /** Takes `keys`; returns the LockNotAcquiredError/LockTimeoutError when they are busy, throws anything else. */
  private async acquire(session: Session, keys: bigint[], request: LockRequest): Promise<unknown> {
    if (keys.length === 0) return undefined;
    const flavor = { session: true, shared: request.shared, tryOnly: request.nowait };
    try {
      if (request.nowait) {
        const results = await this.exec(session, lockSql.lock(keys, flavor));
        const taken = keys.filter((_, i) => results[i]!.rows[0].ok === true);
        if (taken.length === keys.length) return undefined;
        await this.unlock(session, taken, request);
        return new LockNotAcquiredError(request.label);
      }
      // One implicit transaction block: lock_timeout ends with it. A failure does not undo the keys taken
      // before it (session locks ignore rollback), so those are released below.
      const timeout = request.timeoutMs !== undefined ? [lockSql.blockTimeout(request.timeoutMs)] : [];
      if (request.signal?.aborted) return lockAborted(request);
      await this.exec(session, [...timeout, ...lockSql.lock(keys, flavor)], request.signal);
      return undefined;
    } catch (error) {
      await this.exec(session, [lockSql.unlockGranted(keys, request.shared)]).catch((cleanupError: unknown) => (session.broken ??= cleanupError));
      if (request.signal?.aborted && sqlState(error) === '57014') return lockAborted(request);
      const failure = lockFailure(error, request.label, request);
      if (failure === error) throw error;
      return failure;
    }
  }

  /** Releases `keys` and checks that each one was still held; otherwise the work may not have run alone. */
  private async release(session: Session, keys: bigint[], request: LockRequest): Promise<void> {
    for (const key of keys) session.held.delete(key);
    await this.unlock(session, keys, request);
  }

  private async unlock(session: Session, keys: bigint[], request: LockRequest): Promise<void> {
    if (keys.length === 0) return;
    let released: boolean[];
    try {
      released = (await session.connection.execWithin(lockSql.unlock(keys, request.shared), session.deadlineMs)).map((result) => result.rows[0].released === true);
    } catch (error) {
      session.broken ??= error;
      throw new LockLostError(request.label, error);
    }
    if (released.includes(false)) {
      session.broken ??= new Error('pg_advisory_unlock answered false');
      throw new LockLostError(request.label);
    }
  }
}

// Rejects with the signal's reason once it aborts (never resolves).
function rejectOnAbort(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}
