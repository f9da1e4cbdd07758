import { awaitChainsVisible, countAwaitingFrames, nextMacrotask } from '../common/await-chain.js';
import { LockNotAcquiredError, LockTimeoutError } from '../errors.js';
import { processWide } from '../common/process-state.js';
import type { TransactionScope } from '../transaction/transaction-scope.js';
import { lockAborted, type LockRequest } from './lock-request.js';
import { CallContextSlot } from '../common/call-context.js';
import { freshArray } from '../common/fresh-array.js';

/**
 * One call's hold on some keys; the calls it makes (its call chain) find it as their ancestor. A class rather than an
 * object literal: V8 may allocate a literal's objects in its old generation (allocation-site pretenuring), where a dead
 * hold would keep its scope, and through it the whole transaction, alive through young-generation collections.
 */
class Hold {
  /**
   * Set for detached work that had to wait for a hold of its own call chain: it keeps the frame it runs in open
   * (TransactionScope.keepOpen) until it has had its turn; called to let the frame end.
   */
  release?: () => void;
  /** Set once the call has settled; `onEnd` are called then (lock calls of another owner waiting for it). */
  ended?: boolean;
  onEnd?: (() => void)[];

  constructor(
    readonly keys: readonly bigint[],
    readonly shared: boolean,
    readonly parent: Hold | undefined,
    /** The frame the call runs in (a transaction, a savepoint, a session's pinned connection). */
    readonly scope: TransactionScope | undefined,
  ) {}
}

/** A call waiting for a branch's hold to end (a class, as Hold is). */
class Waiter {
  constructor(
    readonly request: LockRequest,
    /** The ancestors that await this call: their holds do not keep it out. */
    public ancestors: ReadonlySet<Hold>,
    readonly hold: Hold,
    readonly admit: () => void,
  ) {}
}

// The innermost hold of the current call chain, across every owner (ancestors of other owners never conflict).
const chainStorage = new CallContextSlot<Hold>('lock-chain-storage');
const BRANCH_LOCKS = processWide('branch-locks-key', () => Symbol('nestjs-txlock:branch-locks'));
const NONE: ReadonlySet<Hold> = new Set();
// How often a deferred call looks again whether its call chain awaits it by now (a promise awaited late).
const RECHECK_MS = [10, 20, 40, 80, 160, 250];
/**
 * How long a deferred call without timeoutMs waits for its own call chain's hold. The async stack follows one
 * consumer of a promise: a call whose promise got a `.catch()`/`.then()` handler before its caller awaited it looks
 * detached though the holder awaits it, and would wait for the holder for ever. It ends with LockTimeoutError instead.
 */
export const DETACHED_WAIT_MS = 10_000;

// The frame every hold's body runs under. Its name is how a call finds, in the async stack, the holds that await it.
async function nestjsTxlockHold<T>(hold: Hold, fn: () => Promise<T>): Promise<T> {
  return await chainStorage.run(hold, fn);
}

/**
 * Mutual exclusion, inside one process, between the concurrent branches (`Promise.all`, un-awaited calls) of
 * one transaction, or of one session-scope lock call, on the same advisory keys. PostgreSQL grants an advisory
 * lock again to the backend that holds it, so two branches of one transaction would both enter a critical
 * section the database sees as taken once: the second branch waits here until the first one's call has returned.
 *
 * Re-entry belongs to the call chain that awaits the call: a call made inside a call that holds the key, and
 * awaited by it (directly, through other async functions, `return`, `Promise.all`...), is let in (a locked method
 * calling another method locked on the same key); its own children then exclude each other again. A call the
 * holder started but does not await (an event listener, a timer, `queueMicrotask`, `void call()`) is detached
 * work: it waits until the hold ends, and the frame it runs in (the transaction, savepoint or session) does not
 * end before it has had its turn. Whether a call is awaited is read from the async stack (await-chain.ts).
 * Shared holds admit each other; an exclusive hold admits no other branch.
 */
export class BranchLocks {
  private readonly holds = new Set<Hold>();
  private readonly waiting = freshArray<Waiter>();

  /** The branch locks kept in `locals` (a transaction's root scope, or a session). */
  static of(locals: Map<symbol, unknown>): BranchLocks {
    let locks = locals.get(BRANCH_LOCKS) as BranchLocks | undefined;
    if (!locks) locals.set(BRANCH_LOCKS, (locks = new BranchLocks()));
    return locks;
  }

  /**
   * Waits until no other branch holds a conflicting key (at most `request.timeoutMs`; not at all with `nowait`;
   * until `request.signal` aborts), then runs `fn` holding the keys until it settles, passing what is left of
   * `timeoutMs` for the database lock. When the wait fails, returns `refused(LockTimeoutError |
   * LockNotAcquiredError | the abort's error)` instead. `scope`: the frame the call runs in.
   */
  async run<T>(request: LockRequest, fn: (timeoutMs: number | undefined) => Promise<T>, refused: (failure: unknown) => T, scope?: TransactionScope): Promise<T> {
    const startedAt = Date.now();
    const parent = chainStorage.getStore();
    const hold = new Hold(request.keys, request.shared, parent, scope);
    let ancestors = NONE;
    // Only a hold of the call's own chain stands in the way: let it in if that chain awaits the call.
    if (parent && !this.admits(request, NONE) && this.admits(request, ancestorsOf(parent))) ancestors = await this.awaitingAncestors(parent);
    if (this.admits(request, ancestors)) this.holds.add(hold);
    else {
      const failure = await this.wait(request, ancestors, hold, startedAt);
      if (failure) return refused(failure);
    }
    try {
      const left = request.timeoutMs === undefined ? undefined : Math.max(1, request.timeoutMs - (Date.now() - startedAt));
      return await nestjsTxlockHold(hold, () => fn(left));
    } finally {
      this.holds.delete(hold);
      hold.ended = true;
      this.admitWaiting();
      hold.release?.();
      if (hold.onEnd) for (const ended of hold.onEnd) ended();
    }
  }

  /** The ancestor holds whose bodies await the current call: the innermost ones, as many as the async stack shows. */
  private async awaitingAncestors(parent: Hold): Promise<ReadonlySet<Hold>> {
    const chain = [...ancestorsOf(parent)];
    if (!(await awaitChainsVisible())) return new Set(chain);
    await nextMacrotask();
    return new Set(chain.slice(0, countAwaitingFrames(nestjsTxlockHold)));
  }

  private admits(request: LockRequest, ancestors: ReadonlySet<Hold>): boolean {
    for (const hold of this.holds) {
      if (ancestors.has(hold) || (request.shared && hold.shared)) continue;
      if (request.keys.some((key) => hold.keys.includes(key))) return false;
    }
    return true;
  }

  // Resolves with undefined once `hold` has been admitted (added to the holds), in arrival order among compatible
  // waiters, or with the error when nowait/timeoutMs/the signal do not allow waiting that long. A call kept out by
  // a hold of its own chain is detached work (deferred); it looks again now and then whether its chain awaits it
  // by now (a promise created first and awaited later), which lets it in as re-entry.
  private async wait(request: LockRequest, ancestors: ReadonlySet<Hold>, hold: Hold, startedAt: number): Promise<unknown> {
    const label = `${request.label} (held by a concurrent call of the same transaction)`;
    if (request.nowait) return new LockNotAcquiredError(label);
    const { signal } = request;
    if (signal?.aborted) return lockAborted(request);
    const chain = hold.parent ? [...ancestorsOf(hold.parent)] : [];
    const deferred = chain.some((ancestor) => !ancestors.has(ancestor) && conflicts(request, ancestor));
    if (deferred) hold.release = hold.scope?.keepOpen();
    let settle!: (failure: unknown) => void;
    const outcome = new Promise<unknown>((resolve) => (settle = resolve));
    const waiter = new Waiter(request, ancestors, hold, () => settle(undefined));
    const leave = (failure: unknown) => {
      const index = this.waiting.indexOf(waiter);
      if (index < 0) return; // admitted meanwhile
      this.waiting.splice(index, 1);
      hold.release?.();
      settle(failure);
    };
    // A deferred call waits DETACHED_WAIT_MS at most even without timeoutMs, and says why it may be waiting for itself.
    const limitMs = request.timeoutMs ?? (deferred ? DETACHED_WAIT_MS : undefined);
    const timeoutLabel = deferred
      ? `${request.label} (held by the call chain that started this call, which does not await it as far as the async stack ` +
        `shows: if it does, await the call before attaching .catch()/.then() handlers to its promise)`
      : label;
    let timer: NodeJS.Timeout | undefined;
    if (limitMs !== undefined) {
      timer = setTimeout(() => leave(new LockTimeoutError(timeoutLabel, limitMs)), Math.max(0, limitMs - (Date.now() - startedAt)));
      timer.unref();
    }
    const onAbort = () => leave(lockAborted(request));
    signal?.addEventListener('abort', onAbort, { once: true });
    this.waiting.push(waiter);
    try {
      if (!deferred || chain.length === ancestors.size) return await outcome;
      for (let round = 0; ; round++) {
        const pause = new Promise<false>((resolve) => setTimeout(resolve, RECHECK_MS[Math.min(round, RECHECK_MS.length - 1)], false).unref());
        if (await Promise.race([outcome.then(() => true), pause])) return await outcome;
        const awaiting = new Set(chain.slice(0, countAwaitingFrames(nestjsTxlockHold)));
        if (awaiting.size > waiter.ancestors.size) {
          waiter.ancestors = awaiting;
          this.admitWaiting();
        }
      }
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
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

/**
 * Which of `keys` the calls of the current call chain hold for it: those held by the calls that await the current
 * one (its own hold, the innermost, left out). For a lock of another owner, such as a transaction-scope lock inside
 * a session-scope lock call, which counts them as held (re-entry). Detached work started inside such a call (a
 * listener, a timer) first waits until the call that holds the key has returned, or awaits it after all (a promise
 * awaited late), and gets none of them in the first case, so it takes the lock in the database itself. Call it
 * inside a hold's body.
 */
export async function keysHeldForChain(keys: readonly bigint[]): Promise<Set<bigint>> {
  const own = chainStorage.getStore();
  const ancestors = own ? [...ancestorsOf(own)].slice(1) : [];
  const holders = ancestors.filter((hold) => hold.keys.some((key) => keys.includes(key)));
  if (holders.length === 0) return new Set();
  if (!(await awaitChainsVisible())) return keysOf(ancestors);
  await nextMacrotask();
  for (let round = 0; ; round++) {
    const awaiting = ancestors.slice(0, countAwaitingFrames(nestjsTxlockHold) - 1);
    const running = holders.filter((hold) => !hold.ended && !awaiting.includes(hold));
    if (running.length === 0) return keysOf(awaiting);
    const pause = new Promise<void>((resolve) => setTimeout(resolve, RECHECK_MS[Math.min(round, RECHECK_MS.length - 1)]).unref());
    await Promise.race([pause, ...running.map((hold) => new Promise<void>((resolve) => (hold.onEnd ??= []).push(resolve)))]);
  }
}

function keysOf(holds: readonly Hold[]): Set<bigint> {
  return new Set(holds.flatMap((hold) => hold.keys));
}

function ancestorsOf(parent: Hold): Set<Hold> {
  const ancestors = new Set<Hold>();
  for (let hold: Hold | undefined = parent; hold; hold = hold.parent) ancestors.add(hold);
  return ancestors;
}

function conflicts(request: LockRequest, hold: Hold): boolean {
  return !(request.shared && hold.shared) && request.keys.some((key) => hold.keys.includes(key));
}
