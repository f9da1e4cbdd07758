import { AsyncResource } from 'node:async_hooks';
import { LinkedList, type Linked } from '../common/linked-list.js';

/**
 * One statement in flight that its StatementWatches checks: overdue once it has had no answer for the watches' time
 * (since it was sent, or since a check last found it still served).
 */
export class StatementWatch implements Linked<StatementWatch> {
  /** Date.now() when it was sent, or when a check last found it still served. */
  since: number;
  /** True while a check of it runs (a sweep then leaves it alone). */
  checking = false;
  /** True once its statement has settled: a check still running then has nothing left to do. */
  settled = false;
  // Its neighbours in its StatementWatches' list.
  linkedOlder?: StatementWatch;
  linkedNewer?: StatementWatch;

  constructor(now: number) {
    this.since = now;
  }
}

/**
 * The statements in flight under one vanished-client bound, swept by one timer every quarter of `afterMs`; each sweep
 * hands every statement that has been without an answer for about `afterMs` (at least `afterMs` minus a quarter,
 * at most `afterMs`) to `overdue`. One timer per statement cost a timer, its async context and three closures on
 * every statement of every transaction. The statements are a LinkedList, not a Set (linked-list.ts says why). The timer
 * runs only while statements are in flight (it stops at the first sweep that finds none) and never keeps the process
 * alive.
 */
export class StatementWatches<W extends StatementWatch> {
  private readonly inFlight = new LinkedList<StatementWatch>();
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
    this.inFlight.add(watch);
    if (!this.timer) this.timer = this.context.runInAsyncScope(() => setInterval(this.sweep, this.tickMs).unref());
  }

  /** Its statement settled. */
  remove(watch: StatementWatch): void {
    watch.settled = true;
    this.inFlight.remove(watch);
  }

  private readonly sweep = (): void => {
    if (this.inFlight.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    const due = Date.now() - (this.afterMs - this.tickMs);
    for (const watch of this.inFlight) {
      if (!watch.checking && watch.since <= due) {
        watch.checking = true;
        this.overdue(watch as W);
      }
    }
  };
}
