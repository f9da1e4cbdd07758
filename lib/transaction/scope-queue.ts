import { awaitingChain, endsWith, nextMacrotask } from '../common/await-chain.js';
import { RunnerTransactionConflictError } from '../errors.js';
import { freshArray } from '../common/fresh-array.js';
import type { TransactionScope } from './transaction-scope.js';

/**
 * One piece of work for the connection: a statement, a batch, or several round trips that must stay together. A class
 * rather than an object literal, which V8 may allocate in its old generation (common/fresh-array.ts says why not).
 */
class Work {
  constructor(
    readonly scope: TransactionScope,
    /** The scope's own COMMIT, RELEASE or ROLLBACK: it may run while savepoints inside the scope are still open. */
    readonly ending: boolean,
    readonly run: () => Promise<unknown>,
    readonly resolve: (value: unknown) => void,
    readonly reject: (error: unknown) => void,
  ) {}
}

/**
 * Decides when work may use a connection that the concurrent branches of one transaction share
 * (`Promise.all`, un-awaited calls). One piece of work runs at a time, first come first served among the
 * pieces that may run; a piece may run only while its scope is the innermost open one (`top`). So a statement
 * of a transaction never lands inside a sibling's savepoint, where that savepoint's ROLLBACK TO would undo it:
 * it waits until the savepoint has ended. A scope's end may also run while savepoints opened inside it are
 * still open (un-awaited NESTED calls that outlive it): `sweep` rolls those back first, after which the work
 * the scope queued before its end runs, and then the end itself.
 */
export class ScopeQueue {
  private running = false;
  private readonly waiting = freshArray<Work>();
  /** Why every piece of work is refused from now on (the connection was lost), if it is. */
  private refuseAll?: () => unknown;
  // When the last piece of work settled (performance.now()), for idleForMs.
  private settledAt = performance.now();

  constructor(
    /** The innermost open scope on the connection. */
    public top: TransactionScope,
    private readonly sweep: (scope: TransactionScope) => Promise<void>,
  ) {}

  /**
   * Runs `run` for `scope` when its turn comes. Refused at once (nothing sent) when the scope, or one around it,
   * is ending or has ended; refused later if it has physically ended by the time its turn comes.
   */
  submit<T>(scope: TransactionScope, run: () => Promise<T>, ending = false): Promise<T> {
    const refusal = scope.refusal(ending) ?? this.refuseAll?.();
    if (refusal) return Promise.reject(refusal);
    // The hot path: nothing else is waiting or running, and the scope is the innermost one.
    if (!this.running && this.waiting.length === 0 && scope === this.top) {
      this.running = true;
      const result = run();
      result.then(this.done, this.done);
      return result;
    }
    const manual = ending ? undefined : this.manualInTheWay(scope);
    if (manual) return this.submitUnlessOwnerWaits(manual, scope, run);
    return this.enqueue(scope, run, ending);
  }

  // A manual transaction (on a routed query runner) that `scope`'s work must wait for, if any: one of the
  // savepoints open above `scope`.
  private manualInTheWay(scope: TransactionScope): TransactionScope | undefined {
    for (let open: TransactionScope | undefined = this.top; open && !open.encloses(scope); open = open.parent) if (open.owner) return open;
    return undefined;
  }

  // Work that waits for a manual transaction is a deadlock when the code holding that transaction open awaits it (it
  // used another repository inside the manual transaction): refused then; otherwise it queues as any other work.
  private async submitUnlessOwnerWaits<T>(manual: TransactionScope, scope: TransactionScope, run: () => Promise<T>): Promise<T> {
    await nextMacrotask();
    if (!manual.ended && endsWith(awaitingChain(), manual.owner!)) throw new RunnerTransactionConflictError();
    const refusal = scope.refusal() ?? this.refuseAll?.();
    if (refusal) throw refusal;
    return this.enqueue(scope, run, false);
  }

  private enqueue<T>(scope: TransactionScope, run: () => Promise<T>, ending: boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting.push(new Work(scope, ending, run, resolve as (value: unknown) => void, reject));
      this.next();
    });
  }

  /** How many pieces of work are queued or running. */
  get pending(): number {
    return this.waiting.length + (this.running ? 1 : 0);
  }

  /** How long (ms) nothing has been queued or running on the connection; undefined while something is. */
  get idleForMs(): number | undefined {
    return this.pending > 0 ? undefined : performance.now() - this.settledAt;
  }

  /** Refuses all waiting and future work with `error()` (the connection can no longer be used). */
  fail(error: () => unknown): void {
    this.refuseAll ??= error;
    for (const work of this.waiting.splice(0)) work.reject(this.refuseAll());
  }

  private readonly done = (): void => {
    this.running = false;
    this.settledAt = performance.now();
    this.next();
  };

  private next(): void {
    if (this.running) return;
    for (let i = 0; i < this.waiting.length; i++) {
      const work = this.waiting[i]!;
      const refusal = work.scope.endedRefusal() ?? this.refuseAll?.();
      if (refusal) {
        this.waiting.splice(i--, 1);
        work.reject(refusal);
      } else if (work.scope === this.top) {
        this.waiting.splice(i, 1);
        this.start(work.run(), work.resolve, work.reject);
        return;
      } else if (work.ending && work.scope.encloses(this.top)) {
        // Stays queued: once the savepoints above its scope are gone, work queued before it goes first.
        this.start(this.sweep(work.scope), () => undefined, (error) => this.fail(() => error));
        return;
      }
    }
  }

  private start(running: Promise<unknown>, resolve: (value: unknown) => void, reject: (error: unknown) => void): void {
    this.running = true;
    running.then(
      (value) => {
        resolve(value);
        this.done();
      },
      (error: unknown) => {
        reject(error);
        this.done();
      },
    );
  }
}
