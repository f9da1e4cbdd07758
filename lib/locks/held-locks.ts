import type { TransactionScope } from '../transaction/transaction-scope.js';

/** The advisory keys one transaction scope (or one session) holds: key → shared? */
export type HeldKeys = Map<bigint, boolean>;

const HELD = Symbol('nestjs-txlock:advisory-locks');
const COUNT = Symbol('nestjs-txlock:advisory-lock-count');

/**
 * The keys taken in this scope. Kept per scope (not per root) because a NESTED savepoint that rolls back
 * releases the locks taken inside it: its scope, and with it this record, is dropped at the same time.
 */
export function heldIn(scope: TransactionScope): HeldKeys {
  let held = scope.locals.get(HELD) as HeldKeys | undefined;
  if (!held) scope.locals.set(HELD, (held = new Map()));
  return held;
}

/** True when a key held in `scope` or an enclosing savepoint, or in `session`, already gives what is asked. */
export function alreadyHeld(key: bigint, shared: boolean, scope: TransactionScope | undefined, session: HeldKeys | undefined): boolean {
  for (let current = scope; current; current = current.parent) {
    if (covers((current.locals.get(HELD) as HeldKeys | undefined)?.get(key), shared)) return true;
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
