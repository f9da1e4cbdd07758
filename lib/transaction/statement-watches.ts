import { AsyncResource } from 'node:async_hooks';

/**
 * One statement in flight that its StatementWatches checks: overdue once it has had no answer for the watches' time
 * (since it was sent, or since a check last found it still served).
 */
export class StatementWatch {
  /** Date.now() when it was sent, or when a check last found it still served. */
  since: number;
  /** True while a check of it runs (a sweep then leaves it alone). */
  checking = false;
  /** True once its statement has settled: a check still running then has nothing left to do. */
  settled = false;
  // The list of its StatementWatches, linked through the watches themselves.
  older?: StatementWatch;
  newer?: StatementWatch;

  constructor(now: number) {
    this.since = now;
  }
}

/**
 * The statements in flight under one vanished-client bound, swept by one timer every quarter of `afterMs`; each sweep
 * hands every statement that has been without an answer for about `afterMs` (at least `afterMs` minus a quarter,
 * at most `afterMs`) to `overdue`. One timer per statement cost a timer, its async context and three closures on
 * every statement of every transaction. The list is linked through the watches rather than kept in a Set: a
 * long-lived collection that every statement enters and leaves kept each statement's objects alive through V8's
 * young-generation collections (docs/performance.md). The timer runs only while statements are in flight (it stops
 * at the first sweep that finds none) and never keeps the process alive.
 */
export class StatementWatches<W extends StatementWatch> {
  private newest?: W;
  private timer?: NodeJS.Timeout;
  private readonly tickMs: number;
  // The async context the timer is made in: this one's (the module's bootstrap), not that of the statement that happens
  // to start it, which would keep that statement's transaction reachable for as long as the timer runs.
  private readonly context = new AsyncResource('nestjs-txlock:statement-watches');

  constructor(
    private readonly afterMs: number,
    private readonly overdue: (watch: W) => void,
  ) {
    this.tickMs = Math.max(1, Math.floor(afterMs / 4));
  }

  /** Watches `watch` until remove(). */
  add(watch: W): void {
    watch.older = this.newest;
    if (this.newest) this.newest.newer = watch;
    this.newest = watch;
    if (!this.timer) this.timer = this.context.runInAsyncScope(() => setInterval(this.sweep, this.tickMs).unref());
  }

  /** Its statement settled. */
  remove(watch: W): void {
    watch.settled = true;
    const { older, newer } = watch;
    if (older) older.newer = newer;
    if (newer) newer.older = older;
    else if (this.newest === watch) this.newest = older as W | undefined;
    watch.older = watch.newer = undefined;
  }

  private readonly sweep = (): void => {
    if (!this.newest) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    const due = Date.now() - (this.afterMs - this.tickMs);
    for (let watch: W | undefined = this.newest; watch; ) {
      const older = watch.older as W | undefined;
      if (!watch.checking && watch.since <= due) {
        watch.checking = true;
        this.overdue(watch);
      }
      watch = older;
    }
  };
}
