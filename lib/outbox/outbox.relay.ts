import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { AsyncResource } from 'node:async_hooks';
import { testScopeOf } from '../transaction/transaction-scope.js';
import { TransactionHost } from '../transaction/transaction.host.js';
import { TXLOCK_MODULE_OPTIONS } from '../txlock.module-definition.js';
import type { TxLockModuleOptions } from '../txlock-options.interface.js';
import { OutboxListener } from './outbox-listener.js';
import { OutboxService } from './outbox.service.js';
import { outboxSql } from './outbox.sql.js';

const POLL_WITH_NOTIFY_MS = 1_000;
const POLL_ALONE_MS = 200;
const CLEANUP_EVERY_MS = 60_000;
const CLEANUP_CHUNK = 1_000;
const MAX_ERROR_PAUSE_MS = 30_000;
const CONTENDED_PAUSE_MS = 10;

/** One delivery loop's alarm clock: woken by a commit, a notification or the poll interval. */
class Alarm {
  private rang = false;
  private ring?: () => void;

  /** Wakes the loop now, or at once from its next sleep if it is busy. */
  wake(): void {
    this.rang = true;
    this.ring?.();
  }

  /** Forgets earlier wakes: the round about to start will see what they announced. */
  reset(): void {
    this.rang = false;
  }

  /** Resolves after `ms`, or at the first wake (at once if one came since the last reset). */
  sleep(ms: number): Promise<void> {
    if (this.rang) {
      this.rang = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      const alarm = this;
      function done(): void {
        clearTimeout(timer);
        alarm.ring = undefined;
        alarm.rang = false;
        resolve();
      }
      this.ring = done;
    });
  }
}

/**
 * The relay of one TxLockModule registration's outbox, in every replica that has `@OnOutboxEvent()` handlers (and
 * `outbox.relay` is not false): `outbox.concurrency` loops, each delivering rounds of due events (OutboxDelivery)
 * while there are some, then sleeping until a commit in this process, a NOTIFY from another one, or the poll
 * interval. It also deletes delivered events older than `outbox.retentionMs`. While a test transaction of
 * nestjs-txlock/testing is open on its DataSource it delivers nothing (the testing kit's captureOutbox() does).
 *
 * Shutdown: `stop()` runs first thing in the app's close (TransactionHost's beforeApplicationShutdown, which refuses new
 * work and waits for running transactions, all before TypeORM closes the pool): it takes no new round, lets the rounds
 * in hand commit for up to `outbox.drainTimeoutMs` (and within `shutdown.graceMs`), and leaves any still running to be
 * rolled back: their events stay pending for another replica.
 */
@Injectable()
export class OutboxRelay implements OnApplicationBootstrap {
  private readonly logger = new Logger('TxLock');
  // The context the loops run in: made at bootstrap, so they pin no request's state.
  private readonly detached = new AsyncResource('TxLockOutboxRelay');
  private running = false;
  private stopping?: Promise<void>;
  private alarms: Alarm[] = [];
  private loops: Promise<void>[] = [];
  private listener?: OutboxListener;
  private unwatch?: () => void;
  private cleanupTimer?: NodeJS.Timeout;
  private pollMs = POLL_WITH_NOTIFY_MS;

  constructor(
    private readonly txHost: TransactionHost,
    private readonly outbox: OutboxService,
    @Inject(TXLOCK_MODULE_OPTIONS) private readonly options: TxLockModuleOptions,
  ) {}

  /** How the relay learns of new events: `'notify'`, `'poll'`, or `'off'` (no handlers, or `outbox.relay: false`). */
  mode: 'notify' | 'poll' | 'off' = 'off';

  /** Starts the relay once the app's handlers are known (see the class comment for how it wakes). */
  async onApplicationBootstrap(): Promise<void> {
    this.outbox.onApplicationBootstrap(); // the handlers, whichever hook Nest calls first
    const settings = this.outbox.settings;
    if (!settings.relay || this.outbox.handlers.topics().length === 0) return;
    let listening = false;
    if (settings.wakeup === 'notify') {
      this.listener = new OutboxListener(this.txHost.dataSource, this.outbox.channel, this.options.pooler ?? 'none', () => this.wake(), this.logger);
      listening = await this.listener.start();
      if (!listening) {
        this.listener = undefined;
        this.outbox.stopNotifying();
        this.logger.warn(
          'Outbox relay: a connection pooler sits between the app and PostgreSQL, where LISTEN cannot be relied on; the relay ' +
            `polls every ${settings.pollIntervalMs ?? POLL_ALONE_MS} ms. Declare it (TxLockModule option pooler: 'transaction', or ` +
            `'session' for a session-mode pooler, where LISTEN works), or set outbox.wakeup: 'poll'.`,
        );
      }
    }
    this.mode = listening ? 'notify' : 'poll';
    this.pollMs = settings.pollIntervalMs ?? (listening ? POLL_WITH_NOTIFY_MS : POLL_ALONE_MS);
    this.unwatch = this.outbox.watch({ committed: () => this.wake() });
    this.running = true;
    this.txHost.shutdown.onClose(() => this.stop());
    this.alarms = Array.from({ length: settings.concurrency }, () => new Alarm());
    this.loops = this.alarms.map((alarm) => this.detached.runInAsyncScope(() => this.loop(alarm)));
    if (settings.retentionMs > 0) {
      this.cleanupTimer = this.detached.runInAsyncScope(() => setInterval(() => void this.cleanup(), Math.min(CLEANUP_EVERY_MS, settings.retentionMs)));
      this.cleanupTimer.unref();
    }
  }

  /**
   * Takes no new round, waits up to `outbox.drainTimeoutMs` for the rounds in hand to commit, and closes the LISTEN
   * connection. Rounds still running after that are left to be rolled back when the DataSource closes their
   * connections, so their events stay pending for another replica. Safe to call more than once.
   */
  stop(): Promise<void> {
    this.stopping ??= this.drain();
    return this.stopping;
  }

  /** Wakes every delivery loop now (a commit in this process, a NOTIFY). */
  wake(): void {
    for (const alarm of this.alarms) alarm.wake();
  }

  private async drain(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unwatch?.();
    clearInterval(this.cleanupTimer);
    this.wake();
    await this.listener?.stop();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), this.outbox.settings.drainTimeoutMs)));
    const late = await Promise.race([Promise.all(this.loops).then(() => false), timedOut]);
    clearTimeout(timer);
    if (late) {
      this.logger.warn(
        `Outbox relay: deliveries still running after outbox.drainTimeoutMs (${this.outbox.settings.drainTimeoutMs} ms) are left to roll back; ` +
          'their events stay pending and are delivered again.',
      );
    }
  }

  private async loop(alarm: Alarm): Promise<void> {
    const { batchSize } = this.outbox.settings;
    let failures = 0;
    while (this.running) {
      // Under nestjs-txlock/testing, a round begun now would be a savepoint of the test's transaction.
      if (testScopeOf(this.txHost.dataSource)) {
        await alarm.sleep(this.pollMs);
        continue;
      }
      alarm.reset();
      try {
        const round = await this.outbox.delivery.deliver();
        if (failures > 0) this.logger.log(`Outbox relay: delivering again after ${failures} failed round(s).`);
        failures = 0;
        if (round.delivered > 0 && round.claimed >= batchSize) continue; // more may be due
        // Events given back to another delivery of their key: look again soon, it may be done by then.
        await alarm.sleep(Math.min(this.pollMs, round.retryInMs ?? Infinity, round.contended ? CONTENDED_PAUSE_MS : Infinity));
        continue;
      } catch (error) {
        if (!this.running) break;
        // The database's trouble (a lost connection, an exhausted pool), not an event's: no attempt is counted.
        if (failures++ === 0) this.logger.error(`Outbox relay: a delivery round failed (${error instanceof Error ? error.message : String(error)}); retrying with backoff.`);
        await alarm.sleep(Math.min(MAX_ERROR_PAUSE_MS, 100 * 2 ** failures));
        continue;
      }
      await alarm.sleep(this.pollMs);
    }
  }

  // Deletes delivered events past their retention, in chunks, skipping rows another replica is deleting.
  private async cleanup(): Promise<void> {
    if (!this.running || testScopeOf(this.txHost.dataSource)) return;
    const { table, retentionMs } = this.outbox.settings;
    try {
      for (;;) {
        const deleted = await this.txHost.query(outboxSql.cleanup(table), [retentionMs, CLEANUP_CHUNK]);
        if (deleted.length < CLEANUP_CHUNK || !this.running) break;
      }
    } catch (error) {
      this.logger.warn(`Outbox relay: deleting delivered events failed (${error instanceof Error ? error.message : String(error)}); trying again later.`);
    }
  }
}
