import { AsyncLocalStorage } from 'node:async_hooks';
import { LockNotAcquiredError, LockTimeoutError } from '../errors.js';
import type { LockRequest } from './lock-request.js';
import { processWide } from '../common/process-state.js';

/** One call's hold on some keys; the calls it makes (its call chain) find it as their ancestor. */
interface Hold {
  readonly keys: readonly bigint[];
  readonly shared: boolean;
  readonly parent: Hold | undefined;
}

interface Waiter {
  readonly request: LockRequest;
  readonly ancestors: ReadonlySet<Hold>;
  readonly hold: Hold;
  admit(): void;
}

// The innermost hold of the current call chain, across every owner (ancestors of other owners never conflict).
const chainStorage = processWide('lock-chain-storage', () => new AsyncLocalStorage<Hold>());
const BRANCH_LOCKS = processWide('branch-locks-key', () => Symbol('nestjs-txlock:branch-locks'));

/**
 * Mutual exclusion, inside one process, between the concurrent branches (`Promise.all`, un-awaited calls) of
 * one transaction, or of one session-scope lock call, on the same advisory keys. PostgreSQL grants an advisory
 * lock again to the backend that holds it, so two branches of one transaction would both enter a critical
 * section the database sees as taken once: the second branch waits here until the first one's call has returned.
 * A call made from inside a call that holds the key (re-entry by the same call chain, such as a locked method
 * calling another method locked on the same key) is let in; its own children then exclude each other again.
 * Shared holds admit each other; an exclusive hold admits no other branch.
 */
export class BranchLocks {
  private readonly holds = new Set<Hold>();
  private readonly waiting: Waiter[] = [];

  /** The branch locks kept in `locals` (a transaction's root scope, or a session). */
  static of(locals: Map<symbol, unknown>): BranchLocks {
    let locks = locals.get(BRANCH_LOCKS) as BranchLocks | undefined;
    if (!locks) locals.set(BRANCH_LOCKS, (locks = new BranchLocks()));
    return locks;
  }

  /**
   * Waits until no other branch holds a conflicting key (at most `request.timeoutMs`; not at all with
   * `nowait`), then runs `fn` holding the keys until it settles, passing what is left of `timeoutMs` for the
   * database lock. When the wait fails, returns `refused(LockTimeoutError | LockNotAcquiredError)` instead.
   */
  async run<T>(request: LockRequest, fn: (timeoutMs: number | undefined) => Promise<T>, refused: (failure: unknown) => T): Promise<T> {
    const startedAt = Date.now();
    const parent = chainStorage.getStore();
    const ancestors = new Set<Hold>();
    for (let hold = parent; hold; hold = hold.parent) ancestors.add(hold);
    const hold: Hold = { keys: request.keys, shared: request.shared, parent };
    if (this.admits(request, ancestors)) this.holds.add(hold);
    else {
      const failure = await this.wait(request, ancestors, hold);
      if (failure) return refused(failure);
    }
    try {
      const left = request.timeoutMs === undefined ? undefined : Math.max(1, request.timeoutMs - (Date.now() - startedAt));
      return await chainStorage.run(hold, () => fn(left));
    } finally {
      this.holds.delete(hold);
      this.admitWaiting();
    }
  }

  private admits(request: LockRequest, ancestors: ReadonlySet<Hold>): boolean {
    for (const hold of this.holds) {
      if (ancestors.has(hold) || (request.shared && hold.shared)) continue;
      if (request.keys.some((key) => hold.keys.includes(key))) return false;
    }
    return true;
  }

  // Resolves once `hold` has been admitted (added to the holds), in arrival order among compatible waiters, or
  // with the error when nowait/timeoutMs do not allow waiting that long.
  private wait(request: LockRequest, ancestors: ReadonlySet<Hold>, hold: Hold): Promise<unknown> {
    const label = `${request.label} (held by a concurrent call of the same transaction)`;
    if (request.nowait) return Promise.resolve(new LockNotAcquiredError(label));
    return new Promise<unknown>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const waiter: Waiter = {
        request,
        ancestors,
        hold,
        admit: () => {
          clearTimeout(timer);
          resolve(undefined);
        },
      };
      if (request.timeoutMs !== undefined) {
        timer = setTimeout(() => {
          this.waiting.splice(this.waiting.indexOf(waiter), 1);
          resolve(new LockTimeoutError(label, request.timeoutMs!));
        }, request.timeoutMs);
        timer.unref();
      }
      this.waiting.push(waiter);
    });
  }

  // First come, first served among the waiters that may go now; each admitted one counts for the next.
  private admitWaiting(): void {
    for (let i = 0; i < this.waiting.length; i++) {
      const waiter = this.waiting[i]!;
      if (!this.admits(waiter.request, waiter.ancestors)) continue;
      this.waiting.splice(i--, 1);
      this.holds.add(waiter.hold);
      waiter.admit();
    }
  }
}
