import type { TransactionScope } from '../transaction/transaction-scope.js';
import { processWide } from '../common/process-state.js';

/** The advisory keys one session holds: key → shared? */
export type SessionKeys = Map<bigint, boolean>;

/** A key taken in a transaction scope: its mode, and the connection's foreign-rollback count when it was taken. */
interface TakenKey {
  shared: boolean;
  generation: number;
}

const HELD = processWide('held-locks-key', () => Symbol('nestjs-txlock:advisory-locks'));
const COUNT = processWide('lock-count-key', () => Symbol('nestjs-txlock:advisory-lock-count'));

function takenIn(scope: TransactionScope): Map<bigint, TakenKey> | undefined {
  return scope.locals.get(HELD) as Map<bigint, TakenKey> | undefined;
}

/**
 * Records that `keys` were taken in `scope`, the frame that was innermost on the connection when the lock
 * statement ran. Kept per scope (not per transaction) because a savepoint that rolls back releases the locks
 * taken inside it: its record is dropped with it, and merged into its parent when it is released.
 */
export function recordTaken(scope: TransactionScope, keys: readonly bigint[], shared: boolean): void {
  let held = takenIn(scope);
  if (!held) scope.locals.set(HELD, (held = new Map()));
  const generation = scope.connection.foreignRollbacks;
  for (const key of keys) held.set(key, { shared: shared && held.get(key)?.shared !== false, generation });
}

/**
 * True only when the lock is provably still held, so the lock statement may be skipped: taken in `scope` or a
 * scope around it (all still open: the caller runs in `scope`'s turn on the connection), with no ROLLBACK the
 * library did not send since (TypeORM's or raw savepoints may have released it), or held by `session`.
 */
export function alreadyHeld(key: bigint, shared: boolean, scope: TransactionScope | undefined, session: SessionKeys | undefined): boolean {
  for (let current = scope; current; current = current.parent) {
    const taken = takenIn(current)?.get(key);
    if (taken && taken.generation === current.connection.foreignRollbacks && covers(taken.shared, shared)) return true;
  }
  return covers(session?.get(key), shared);
}

// An exclusive lock covers a shared request; a shared one does not cover an exclusive request.
function covers(heldShared: boolean | undefined, wantShared: boolean): boolean {
  return heldShared === false || (heldShared === true && wantShared);
}

/** Adds `count` keys to the transaction's total and returns the new total (for the "very many keys" warning). */
export function countKeys(scope: TransactionScope, count: number): number {
  const total = ((scope.root.locals.get(COUNT) as number | undefined) ?? 0) + count;
  scope.root.locals.set(COUNT, total);
  return total;
}
