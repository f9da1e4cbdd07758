import type { Logger } from '@nestjs/common';
import { LockNotAcquiredError, TableNotFoundError } from '../errors.js';
import { observeLock } from '../telemetry/lock-telemetry.js';
import { sqlState } from '../transaction/sql-state.js';
import type { TransactionScope } from '../transaction/transaction-scope.js';
import { keysHeldForChain } from './branch-locks.js';
import { alreadyHeld, countKeys, recordTaken, type SessionKeys } from './held-locks.js';
import { lockAborted, lockFailure, type LockRequest } from './lock-request.js';
import type { TableLockMode, TableLockOptions } from './lock.options.js';
import { lockSql } from './lock.sql.js';
import { currentSessionKeys } from './session-locks.js';

// PostgreSQL's default max_locks_per_transaction: past it, one transaction eats into the lock table shared by all.
const MANY_KEYS = 64;

/**
 * Takes the request's keys in `scope`, waiting at most `timeoutMs` (what is left of the request's), in one round
 * trip (with BEGIN when it is still pending). Returns
 * the LockNotAcquiredError/LockTimeoutError when busy. Keys provably held already are skipped: that is decided
 * in the lock's own turn on the connection, where no sibling can end a savepoint meanwhile. `own`: the
 * transaction or savepoint was opened for this call, so a failure rolls it back and no savepoint is needed here.
 */
export async function takeAdvisoryLocks(scope: TransactionScope, request: LockRequest, timeoutMs: number | undefined, own: boolean, logger: Logger): Promise<unknown> {
  const held = currentSessionKeys(scope.connection.dataSource);
  const session = held && request.keys.some((key) => held.has(key)) ? await sessionKeysOfChain(held, request) : held;
  const { nowait, shared } = request;
  let taken: bigint[] | undefined;
  try {
    // One exclusive task: nothing else of this transaction runs between the savepoint and its end.
    taken = await scope.connection.exclusive(scope, async (send) => {
      const keys = request.keys.filter((key) => !alreadyHeld(key, shared, scope, session));
      if (keys.length === 0) return [];
      // A savepoint keeps a joined transaction usable when the lock times out, or when a multi-key try took
      // some keys but not all (transaction-level locks cannot be unlocked; rolling back to it releases them).
      // Also when a signal may cancel the wait: the cancelled statement aborts the transaction unless a savepoint catches it.
      const savepoint = !own && (timeoutMs !== undefined || (nowait && keys.length > 1) || request.signal !== undefined) ? scope.connection.savepointName() : undefined;
      const statements = [
        ...(savepoint ? [lockSql.savepoint(savepoint)] : []),
        ...(timeoutMs !== undefined ? lockSql.setTimeout(timeoutMs) : []),
        ...lockSql.lock(keys, { session: false, shared, tryOnly: nowait }),
        ...(timeoutMs !== undefined ? [lockSql.restoreTimeout] : []),
        // A waiting lock either succeeded or failed the batch: the savepoint can go in the same round trip.
        ...(savepoint && !nowait ? [lockSql.release(savepoint)] : []),
      ];
      if (request.signal?.aborted) throw new Aborted();
      let results;
      try {
        results = await send(statements, nowait ? undefined : request.signal);
      } catch (error) {
        // A SAVEPOINT refused because the transaction was aborted already (25P02) never existed: rolling back to it
        // would fail (3B001) and break the connection, where the transaction's end reports the abort.
        if (savepoint && sqlState(error) !== '25P02') await rollBackTo(scope, send, savepoint);
        throw request.signal?.aborted && sqlState(error) === '57014' ? new Aborted() : error;
      }
      if (nowait) {
        const offset = savepoint ? 1 : 0;
        const all = results.slice(offset, offset + keys.length).every((result) => result.rows[0].ok === true);
        if (savepoint) await send(all ? [lockSql.release(savepoint)] : lockSql.rollbackTo(savepoint));
        if (!all) return undefined;
      }
      recordTaken(scope, keys, shared);
      return keys;
    });
  } catch (error) {
    if (error instanceof Aborted) return lockAborted(request);
    // The caller's timeoutMs (as session locks say it), not what was left of it after waiting for sibling branches.
    const failure = lockFailure(error, request.label, request);
    if (failure === error) throw error;
    return failure;
  }
  if (taken === undefined) return new LockNotAcquiredError(request.label);
  const total = countKeys(scope, taken.length);
  if (total > MANY_KEYS && total - taken.length <= MANY_KEYS) {
    logger.warn(
      `One transaction now holds ${total} advisory locks. Each takes a slot in PostgreSQL's shared lock table ` +
        `(max_locks_per_transaction × max_connections); too many fail with "out of shared memory". Lock coarser keys.`,
    );
  }
  return undefined;
}

/**
 * Takes `LOCK TABLE` on `tables` (quoted and sorted by resolveTables()) in `scope`. In a transaction that was
 * already running (`own` false), a savepoint keeps it usable when nowait/timeoutMs fail.
 */
export async function takeTableLocks(scope: TransactionScope, tables: readonly string[], mode: TableLockMode, options: TableLockOptions, own: boolean): Promise<void> {
  const { timeoutMs, nowait = false } = options;
  const observation = observeLock('table', { mode }, tables.length);
  const savepoint = !own && (timeoutMs !== undefined || nowait) ? scope.connection.savepointName() : undefined;
  const before = [...(savepoint ? [lockSql.savepoint(savepoint)] : []), ...(timeoutMs !== undefined ? lockSql.setTimeout(timeoutMs) : [])];
  const after = [...(timeoutMs !== undefined ? [lockSql.restoreTimeout] : []), ...(savepoint ? [lockSql.release(savepoint)] : [])];
  // One exclusive task: no concurrent statement of this transaction runs under the short lock_timeout or
  // inside the savepoint.
  const taking = scope.connection.exclusive(scope, async (send) => {
    if (before.length > 0) await send(before);
    try {
      // Its own round trip (a held-back BEGIN travels with it): identifiers, quoted and validated, never integers.
      await send([lockSql.lockTables(tables, mode, nowait)]);
    } catch (error) {
      if (savepoint) await rollBackTo(scope, send, savepoint);
      const label = `table ${tables.join(', ')} (${mode})`;
      if (sqlState(error) === '42P01') throw new TableNotFoundError(tables.join(', '), error);
      throw lockFailure(error, label, options);
    }
    if (after.length > 0) await send(after);
  });
  await (observation ? observation.granted(taking) : taking);
}

// The session keys this call may count as held: those its own awaiting call chain holds, not the ones a session-lock
// call whose body started this one as detached work (a listener, a timer) holds meanwhile. Asked only when the
// session holds one of the request's keys.
async function sessionKeysOfChain(session: SessionKeys, request: LockRequest): Promise<SessionKeys> {
  const held = await keysHeldForChain(request.keys);
  return new Map([...session].filter(([key]) => held.has(key)));
}

// The lock statement was cancelled because the request's signal aborted (or it aborted before it was sent).
class Aborted {}

// Undoes a failed lock inside its savepoint. If even that fails, the savepoint may still be open under the
// transaction's feet: the connection is marked unusable, and the lock's own error is the one reported.
async function rollBackTo(scope: TransactionScope, send: (statements: string[]) => Promise<unknown>, savepoint: string): Promise<void> {
  await send(lockSql.rollbackTo(savepoint)).catch((error: unknown) => scope.connection.markBroken(error));
}
