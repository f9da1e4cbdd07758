import type { LoggerService } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { processWide } from '../common/process-state.js';
import { ShutdownRollbackError, ShuttingDownError } from '../errors.js';
import { onRequestEnd, requestStartedAt, requestsStartedBefore } from '../transaction/client-disconnect.interceptor.js';
import { CallContextSlot } from '../common/call-context.js';
import { LinkedList, type Linked } from '../common/linked-list.js';

/** A connection the gate waits for while the app closes, and ends by force after the grace period. */
export interface DrainedConnection extends Linked<DrainedConnection> {
  /** Cancels what runs on it and closes it: PostgreSQL rolls its transaction back and drops its locks. */
  abandon(error: ShutdownRollbackError): Promise<void>;
  /** Set by track(): the connection calls its `closed()` once it went back to the pool (or was destroyed). */
  drainedBy?: ShutdownGate;
}

// Code that runs as part of work admitted before the close began (a lease's job, a single flight): what it begins
// during the grace period belongs to that work, so it is not refused as new work.
const admittedWork = new CallContextSlot<true>('shutdown-admitted-work');
// The gate of each DataSource's TxLockModule registration (TransactionConnection.open() registers its connections there).
const gates = processWide('shutdown-gates', () => new WeakMap<DataSource, ShutdownGate>());

/** Runs `fn` as part of work admitted before the close: transactions it begins during the grace period are let in. */
export function asAdmittedWork<T>(fn: () => T): T {
  return admittedWork.run(true, fn);
}

/** The gate of the TxLockModule registration serving `dataSource`, if there is one. */
export function shutdownGateOf(dataSource: DataSource): ShutdownGate | undefined {
  return gates.get(dataSource);
}

/**
 * What `app.close()` does to one TxLockModule registration's work, in its `beforeApplicationShutdown` (see
 * TransactionHost), that is before TypeORM destroys the DataSource in `onApplicationShutdown`:
 *
 * 1. New work is refused with ShuttingDownError: transactions, session-scope locks, leases and single flights begun
 *    from now on. Work already running may go on beginning what it needs (a transaction joined or nested, a
 *    transaction begun by an HTTP request that arrived before the close, or by a lease's job or a single flight).
 * 2. The library's own background work (the outbox relay) is stopped, and `shutdownSignal` and every held lease's
 *    `signal` abort, so jobs stop and give their leases back, which frees them at once.
 * 3. Transactions, session-lock calls, held leases and HTTP requests that arrived before the close (through the
 *    library's interceptor) are waited for until `graceMs`; then each running transaction's statement is
 *    cancelled and its connection destroyed, so PostgreSQL rolls it back and releases its locks, and its caller gets
 *    ShutdownRollbackError. Leases still held are left to expire (their job is still running: giving them away would
 *    let another replica run it at the same time).
 */
export class ShutdownGate {
  private state: 'open' | 'draining' | 'closed' = 'open';
  private closingAt = Number.POSITIVE_INFINITY;
  private readonly controller = new AbortController();
  // Linked through the connections, not a Set (linked-list.ts says why: measured 4 KB per transaction promoted).
  private readonly connections = new LinkedList<DrainedConnection>();
  private readonly leases = new Set<AbortController>();
  private readonly stoppers = new Set<() => Promise<void>>();
  private changed?: () => void;
  private closing?: Promise<void>;

  /** Makes the gate of `dataSource`'s registration: a new registration (a new app on the same DataSource) starts open. */
  static open(dataSource: DataSource): ShutdownGate {
    const gate = new ShutdownGate();
    gates.set(dataSource, gate);
    return gate;
  }

  /** Aborted (reason: ShuttingDownError) when the close begins. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** True until the close begins: the one check on the hot path. */
  get isOpen(): boolean {
    return this.state === 'open';
  }

  /**
   * Throws ShuttingDownError once the close has begun, unless during the grace period the caller is part of work that
   * was running before it: `inside` (the caller runs in a transaction or session already), a lease's job or a single
   * flight, or an HTTP request that arrived before the close.
   */
  admit(what: NonNullable<ShuttingDownError['refused']>, inside = false): void {
    if (this.state === 'open') return;
    if (this.state === 'draining' && (inside || admittedWork.getStore() === true || (requestStartedAt() ?? Number.POSITIVE_INFINITY) < this.closingAt)) return;
    throw new ShuttingDownError(what);
  }

  /** Waits for `connection` during the close, and abandons it after the grace period. */
  track(connection: DrainedConnection): void {
    this.connections.add(connection);
    connection.drainedBy = this;
  }

  /** `connection` went back to the pool (or was destroyed). */
  closed(connection: DrainedConnection): void {
    if (!this.connections.remove(connection)) return;
    connection.drainedBy = undefined;
    this.changed?.();
  }

  /**
   * A lease is held: `controller` (its signal's) is aborted when the close begins, at once if it has begun, and the
   * close waits, up to the grace period, for the returned function, which the holder calls once it gave the lease back.
   */
  holdLease(controller: AbortController): () => void {
    if (!this.isOpen) controller.abort(new ShuttingDownError());
    this.leases.add(controller);
    return () => {
      if (this.leases.delete(controller)) this.changed?.();
    };
  }

  /** `stop` runs first thing when the close begins (the outbox relay's), and the close waits for it. */
  onClose(stop: () => Promise<void>): void {
    this.stoppers.add(stop);
  }

  /** Runs the close (see the class comment) once; later calls get the same promise. */
  close(graceMs: number, logger: LoggerService): Promise<void> {
    this.closing ??= this.drain(graceMs, logger);
    return this.closing;
  }

  private async drain(graceMs: number, logger: LoggerService): Promise<void> {
    this.state = 'draining';
    this.closingAt = performance.now();
    const stopped = Promise.all(
      [...this.stoppers].map((stop) => stop().catch((error: unknown) => logger.warn(`Stopping background work at shutdown failed: ${String(error)}`))),
    );
    const reason = new ShuttingDownError();
    this.controller.abort(reason);
    for (const lease of this.leases) lease.abort(reason);
    const drained = await this.drained(stopped, graceMs);
    this.state = 'closed';
    if (drained) return;
    const left = [...this.connections];
    if (left.length > 0) {
      logger.warn(
        `${left.length} transaction(s) or session-lock call(s) were still running after shutdown.graceMs (${graceMs} ms): ` +
          'they are rolled back and their callers get ShutdownRollbackError.',
      );
    }
    if (this.leases.size > 0) {
      logger.warn(
        `${this.leases.size} lease(s) were still held after shutdown.graceMs (${graceMs} ms): their work did not stop when ` +
          'lease.signal aborted, so they stay taken until they expire (atMostForMs).',
      );
    }
    await Promise.all(left.map((connection) => connection.abandon(new ShutdownRollbackError(graceMs))));
  }

  // True once the stoppers are done and no connection, lease or HTTP request that arrived before the close is left (such a
  // request may still begin a transaction); false when the grace period ran out first.
  private drained(stopped: Promise<unknown>, graceMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      let stoppersDone = false;
      const finish = (value: boolean): void => {
        clearTimeout(timer);
        stopListening();
        this.changed = undefined;
        resolve(value);
      };
      const timer = setTimeout(() => finish(false), graceMs);
      this.changed = () => {
        if (stoppersDone && this.connections.size === 0 && this.leases.size === 0 && !requestsStartedBefore(this.closingAt)) finish(true);
      };
      const stopListening = onRequestEnd(() => this.changed?.());
      void stopped.then(() => {
        stoppersDone = true;
        this.changed?.();
      });
    });
  }
}
