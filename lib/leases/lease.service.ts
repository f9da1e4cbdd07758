import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { AsyncResource } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { ensureTable } from '../common/ensure-table.js';
import { qualifiedTableName } from '../common/sql.js';
import { InvalidOptionError, LeaseLostError, LeaseReleasedError, ShuttingDownError } from '../errors.js';
import { asAdmittedWork } from '../lifecycle/shutdown-gate.js';
import { explainMissingTable, type LibraryTable } from '../tables/library-table.js';
import { traceLeaseAcquire, traceLeaseRenew } from '../telemetry/lease-telemetry.js';
import { telemetry } from '../telemetry/telemetry.js';
import { explainConnectionLoss } from '../transaction/connection-errors.js';
import { TransactionHost } from '../transaction/transaction.host.js';
import { TXLOCK_MODULE_OPTIONS } from '../txlock.module-definition.js';
import type { TxLockModuleOptions } from '../txlock-options.interface.js';
import {
  LEASE_CALLS,
  validateExtension,
  validateLease,
  validateLeaseRef,
  validateLeaseText,
  validateToken,
  type LeaseOptions,
  type LeaseRunOptions,
} from './lease.options.js';
import { leaseSql } from './lease.sql.js';
import { CallContextSlot } from '../common/call-context.js';

/** A lease this process holds. */
export interface Lease {
  name: string;
  holder: string;
  /** Fencing token: strictly greater than the token of every earlier holder of this name. */
  token: number;
  lockedAt: Date;
  lockUntil: Date;
  /** The `atLeastForMs` it was taken with (release() keeps it until lockedAt + atLeastForMs). */
  atLeastForMs: number;
  /**
   * Aborted when a renewal inside `run()` fails: the reason is a LeaseLostError when the lease expired or changed hands,
   * a ConnectionLostError when the renewal got no answer (within `renewEveryMs` + the module's `vanishedClientTimeoutMs`);
   * or when the app begins to close (a ShuttingDownError: stop, and give the lease back, which then frees it at once
   * for another replica).
   */
  signal: AbortSignal;
}

/** A current lease, as `holders()` lists it. */
export type LeaseHolder = Pick<Lease, 'name' | 'holder' | 'token' | 'lockedAt' | 'lockUntil'>;

/** The outcome of `run()`: whether fn ran (the lease was free) and what it returned. */
export type LeaseRunResult<T> = { ran: true; value: T } | { ran: false };

// The lease the calling code runs under (inside run()'s fn or a @ScheduledLock method), for current().
const runningLease = new CallContextSlot<Lease>('running-lease');

interface LeaseRow {
  name: string;
  holder: string;
  token: string;
  locked_at: Date;
  lock_until: Date;
  /** acquire() only: who held the row before this takeover (null for a new row). */
  previous_holder?: string | null;
}

/**
 * Table-backed leases with fencing tokens: a lease stays taken at least `atLeastForMs` (so replicas whose
 * timers fire a little later skip the same tick) and at most `atMostForMs` (so a dead holder's lease
 * expires by itself). Acquire, extend and release are each one statement, judged by the database clock.
 * Lease statements run on their own connection and commit at once: they never join the caller's transaction,
 * whose row locks would otherwise keep other replicas waiting on the lease row. The exceptions are the fencing
 * checks: fence() is part of the caller's own statement, and assertToken() inside a transaction runs in it;
 * both hold the lease row FOR KEY SHARE until that transaction ends, and no new token is issued before it has
 * (see leaseSql).
 *
 * @example
 * const outcome = await leases.run('reindex', async (lease) => reindex(lease), { atMostForMs: 60_000, renewEveryMs: 20_000 });
 */
@Injectable()
export class LeaseService implements OnModuleInit {
  /** The holder id written into the leases this process takes. */
  readonly holderId: string;
  private readonly table: string;
  private readonly controllers = new WeakMap<Lease, AbortController>();
  // The Lease objects given back with release(): extend() refuses them rather than revive what was released.
  private readonly released = new WeakSet<Lease>();
  private readonly detached = new AsyncResource('TxLockLeaseRenewal');
  // Tells the app's shutdown that a lease was given back (it waits for held leases up to its grace period).
  private readonly letGo = new WeakMap<Lease, () => void>();

  constructor(
    private readonly txHost: TransactionHost,
    @Inject(TXLOCK_MODULE_OPTIONS) private readonly options: TxLockModuleOptions,
  ) {
    this.table = qualifiedTableName(options.leases?.table ?? 'txlock_leases', 'leases.table');
    this.holderId = options.leases?.holderId ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    validateLeaseText(this.holderId, 'leases.holderId');
  }

  /** Creates the leases table at bootstrap when `autoCreate` is on (Nest calls it). */
  async onModuleInit(): Promise<void> {
    if (this.options.leases?.autoCreate ?? this.options.autoCreate) {
      await ensureTable(this.txHost.dataSource, this.table, [leaseSql.createTable(this.table)]);
    }
  }

  /**
   * Takes the lease `name` if it is free (never taken, or expired); returns null, without waiting, when someone
   * holds it. An expired lease still covered by an open fenced transaction of its old holder (fence(),
   * assertToken() in a transaction) counts as held until that transaction ends, so none of them can commit after
   * the new token exists.
   */
  async acquire(name: string, options: LeaseOptions): Promise<Lease | null> {
    validateLease(name, options, 'lease', LEASE_CALLS.acquire);
    if (!this.txHost.shutdown.isOpen) this.txHost.shutdown.admit('lease');
    return this.take(name, options);
  }

  private async take(name: string, options: LeaseOptions): Promise<Lease | null> {
    const params = [name, this.holderId, options.atMostForMs];
    const rows = await (telemetry
      ? traceLeaseAcquire(telemetry, this.holderId, () => this.query<LeaseRow[]>(leaseSql.acquire(this.table), params))
      : this.query<LeaseRow[]>(leaseSql.acquire(this.table), params));
    if (rows.length === 0) return null;
    const controller = new AbortController();
    const lease = { ...toHolder(rows[0]!), atLeastForMs: options.atLeastForMs ?? 0, signal: controller.signal };
    this.controllers.set(lease, controller);
    // Under a test transaction the lease is rolled back with the test: nothing to wait for.
    if (!this.txHost.inTestTransaction()) this.letGo.set(lease, this.txHost.shutdown.holdLease(controller));
    return lease;
  }

  /**
   * Pushes the lease's end to `ms` from now. Throws LeaseLostError when it expired or changed hands, and
   * LeaseReleasedError when this process released it (even while atLeastForMs still keeps it taken).
   */
  async extend(lease: Lease, ms: number): Promise<Lease> {
    validateLeaseRef(lease, 'extend');
    validateExtension(ms);
    if (this.released.has(lease)) throw new LeaseReleasedError(lease.name, lease.token);
    const params = [lease.name, lease.token, ms];
    const rows = await (telemetry
      ? traceLeaseRenew(telemetry, lease.token, () => this.update<Pick<LeaseRow, 'lock_until'>>(leaseSql.extend(this.table), params))
      : this.update<Pick<LeaseRow, 'lock_until'>>(leaseSql.extend(this.table), params));
    if (rows.length === 0) throw new LeaseLostError(lease.name, lease.token);
    lease.lockUntil = rows[0]!.lock_until;
    return lease;
  }

  /**
   * Gives the lease back; it stays taken until lockedAt + atLeastForMs, but this Lease can no longer be extended.
   * Releasing a lost lease does nothing. Once the app's shutdown aborted `lease.signal`, the lease is freed at once
   * instead: its work was cut short, so another replica should run it without waiting for atLeastForMs.
   */
  async release(lease: Lease): Promise<void> {
    validateLeaseRef(lease, 'release');
    this.released.add(lease);
    const atLeastForMs = lease.signal?.reason instanceof ShuttingDownError ? 0 : lease.atLeastForMs;
    try {
      await this.update(leaseSql.release(this.table), [lease.name, lease.token, atLeastForMs]);
    } finally {
      this.letGo.get(lease)?.();
    }
  }

  /**
   * The lease the calling code runs under: inside `run()`'s fn or a `@ScheduledLock()` method (the innermost one),
   * else undefined. A scheduled job reads its `signal` here to stop early when the lease is lost or the app closes.
   */
  current(): Lease | undefined {
    return runningLease.getStore();
  }

  /**
   * Acquires `name`, runs `fn`, and releases in `finally`. With `renewEveryMs`, the lease is extended by
   * `atMostForMs` while fn runs; if a renewal finds it lost, `lease.signal` aborts so fn can stop.
   * Returns `{ ran: false }` without running fn when the lease is taken. A lease belongs to a holder id (this
   * process), not to a call chain, so it is not re-entrant: a run() of a name inside a run() of the same name
   * answers `{ ran: false }`.
   */
  async run<T>(name: string, fn: (lease: Lease) => T | Promise<T>, options: LeaseRunOptions): Promise<LeaseRunResult<T>> {
    validateLease(name, options, 'lease', LEASE_CALLS.run);
    if (!this.txHost.shutdown.isOpen) this.txHost.shutdown.admit('lease');
    const lease = await this.take(name, options);
    if (!lease) return { ran: false };
    const renewal = options.renewEveryMs ? this.renew(lease, options.renewEveryMs, options.atMostForMs) : undefined;
    let failed = false;
    try {
      // Work admitted before the app began to close: the transactions it begins during the grace period are let in.
      return { ran: true, value: await asAdmittedWork(() => runningLease.run(lease, () => fn(lease))) };
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      // A renewal still in flight must land before the release, or it would push the lease's end out again.
      await renewal?.stop();
      // fn's own error matters more than a failed release.
      await this.release(lease).catch((error: unknown) => {
        if (!failed) throw error;
      });
    }
  }

  /**
   * Throws LeaseLostError unless `token` is still the current, unexpired token of lease `name`. Inside a
   * transaction the check runs in it and holds the lease row FOR KEY SHARE until it ends, as fence() does: a
   * takeover waits for the transaction, so "assertToken, then write" cannot commit after a newer token exists.
   * (PostgreSQL refuses row locks in a READ ONLY transaction.) Outside a transaction it is a standalone read.
   */
  async assertToken(name: string, token: number): Promise<void> {
    validateLeaseText(name, 'assertToken name');
    validateToken(token, 'assertToken');
    const inTransaction = this.txHost.isActive;
    const sql = inTransaction ? leaseSql.isCurrentFenced(this.table) : leaseSql.isCurrent(this.table);
    const [{ current }]: { current: boolean }[] = await this.query(sql, [name, token], inTransaction);
    if (!current) throw new LeaseLostError(name, token);
  }

  /**
   * A condition for the WHERE clause of your own write, so the write and the fencing check are one
   * statement: the write does nothing once the lease changed hands. `firstParam` is the placeholder number
   * the lease's name takes; its token takes the next one. The condition also locks the lease row FOR KEY SHARE
   * until the writer's transaction ends, so a takeover waits for it: a fenced write can never commit after a
   * newer token was issued. (Keep such transactions short: a paused holder delays the takeover until its
   * transaction ends; bound it with idle_in_transaction_session_timeout and statement timeouts.)
   *
   * @example
   * const fence = leases.fence(lease, 3);
   * const [, affected] = await manager.query(`UPDATE report SET body = $1 WHERE id = $2 AND ${fence.condition}`, [body, id, ...fence.params]);
   */
  fence(lease: Pick<Lease, 'name' | 'token'>, firstParam: number): { condition: string; params: [string, number] } {
    validateLeaseRef(lease, 'fence');
    if (!Number.isSafeInteger(firstParam) || firstParam < 1) throw new InvalidOptionError('fence firstParam', firstParam, 'a placeholder number >= 1');
    return { condition: leaseSql.fence(this.table, `$${firstParam}`, `$${firstParam + 1}`), params: [lease.name, lease.token] };
  }

  /** The leases held right now, for dashboards. */
  async holders(): Promise<LeaseHolder[]> {
    const rows: LeaseRow[] = await this.query(leaseSql.holders(this.table), []);
    return rows.map(toHolder);
  }

  private renew(lease: Lease, everyMs: number, forMs: number): { stop(): Promise<void> } {
    let inFlight: Promise<unknown> = Promise.resolve();
    // Scheduled from the context made at bootstrap, so the timer pins no request or transaction state.
    const timer = this.txHost.detached(this.detached, () =>
      setInterval(() => {
        inFlight = this.extend(lease, forMs).catch((error: unknown) => {
          clearInterval(timer);
          this.controllers.get(lease)?.abort(error);
        });
      }, everyMs),
    );
    timer.unref();
    return {
      stop: async () => {
        clearInterval(timer);
        await inFlight;
      },
    };
  }

  // On its own connection, committed at once; in the caller's transaction only when `inTransaction`.
  // A lost connection surfaces as ConnectionLostError (the driver's error as its cause).
  /**
   * The table this service keeps its data in, for the bootstrap check of the library's tables. Not part of the
   * public API.
   * @internal
   */
  libraryTable(): LibraryTable {
    return { table: this.table, service: 'LeaseService', option: 'leases' };
  }

  private async query<T>(sql: string, params: unknown[], inTransaction = false): Promise<T> {
    try {
      if (inTransaction) return (await this.txHost.query(sql, params)) as T;
      return (await this.txHost.outsideTransaction(() => this.txHost.query(sql, params))) as T;
    } catch (error) {
      throw explainConnectionLoss(explainMissingTable(error, this.libraryTable()));
    }
  }

  // An UPDATE ... RETURNING of the lease row, on its own connection.
  private update<Row>(sql: string, params: unknown[]): Promise<Row[]> {
    return this.query<Row[]>(sql, params);
  }
}

function toHolder(row: LeaseRow): LeaseHolder {
  return { name: row.name, holder: row.holder, token: Number(row.token), lockedAt: row.locked_at, lockUntil: row.lock_until };
}
