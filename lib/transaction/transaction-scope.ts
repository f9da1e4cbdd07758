import { AsyncLocalStorage } from 'node:async_hooks';
import type { TransactionConnection } from './transaction-connection.js';

/** A callback run after the outermost transaction commits or rolls back. */
export type TransactionHook = () => unknown;

/**
 * The transaction (root) or savepoint (NESTED) that code is running in. Carried by AsyncLocalStorage:
 * each begin/savepoint runs its callback with `storage.run(scope, ...)`, so concurrent requests never
 * see each other's scope. A `null` store means "explicitly outside any transaction" (NOT_SUPPORTED).
 */
export class TransactionScope {
  /** Why this scope may no longer commit (a joined call threw), if it may not. */
  rollbackOnly: unknown;
  readonly afterCommit: TransactionHook[] = [];
  readonly afterRollback: TransactionHook[] = [];
  /** Per-transaction state owned by other features (for example locks already held), keyed by feature. */
  readonly locals = new Map<symbol, unknown>();
  private savepointTurn: Promise<unknown> = Promise.resolve();

  constructor(
    readonly connection: TransactionConnection,
    readonly parent?: TransactionScope,
    readonly savepoint?: string,
  ) {}

  /** The outermost scope of this transaction. */
  get root(): TransactionScope {
    return this.parent ? this.parent.root : this;
  }

  markRollbackOnly(reason: unknown): void {
    this.rollbackOnly ??= reason;
  }

  /**
   * Runs `fn` when no other savepoint directly inside this scope is open. Savepoints are a stack on one
   * connection: two NESTED calls started with Promise.all must not interleave, so they take turns.
   */
  inSavepointTurn<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.savepointTurn.then(fn, fn);
    this.savepointTurn = result.catch(() => undefined);
    return result;
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
}

/** The one AsyncLocalStorage that carries the current TransactionScope. */
export const transactionStorage = new AsyncLocalStorage<TransactionScope | null>();

/** The scope the caller runs in, or undefined outside any transaction. */
export function currentScope(): TransactionScope | undefined {
  return transactionStorage.getStore() ?? undefined;
}
