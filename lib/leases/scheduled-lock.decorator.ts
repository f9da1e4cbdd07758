import { Logger } from '@nestjs/common';
import { allowedKeys } from '../common/option-keys.js';
import { injectInto, validateDataSourceName, wrapMethod } from '../common/wrap-method.js';
import { LEASE_OPTION_KEYS, validateLease, type LeaseRunOptions } from './lease.options.js';
import { ShuttingDownError } from '../errors.js';
import { LeaseService, type LeaseRunResult } from './lease.service.js';

const logger = new Logger('TxLock');

/** Options of `@ScheduledLock()`: the lease's, `renewEveryMs` for a job that may run longer than `atMostForMs`. */
export interface ScheduledLockOptions extends LeaseRunOptions {
  /** The name of the DataSource (its TxLockModule registration) whose lease table to use. Default: the default one. */
  dataSource?: string;
}

const DECORATOR_KEYS = allowedKeys<ScheduledLockOptions>('@ScheduledLock()', { ...LEASE_OPTION_KEYS, renewEveryMs: true, dataSource: true });

/**
 * Runs a scheduled method (`@Cron`, `@Interval` of @nestjs/schedule) at most once per lease window across
 * all replicas: the first replica to fire takes the lease `name` and keeps it at least `atLeastForMs`, so
 * replicas whose timers fire a little later skip that tick (logged at debug level) and return undefined.
 * If the holder dies, the lease expires after `atMostForMs`. Options are checked when the decorator is applied. The
 * method reads its lease with `LeaseService.current()`: its `signal` aborts when the lease is lost or the app begins to
 * close (stop then: the lease is freed at once for another replica). Ticks that fire while the app closes are skipped.
 *
 * @example
 * @Cron('0 3 * * *')
 * @ScheduledLock('nightly-stats', { atMostForMs: 10 * 60_000, atLeastForMs: 60_000 })
 * async nightlyStats() { ... }
 */
export function ScheduledLock(name: string, options: ScheduledLockOptions): MethodDecorator {
  validateLease(name, options, '@ScheduledLock()', DECORATOR_KEYS);
  const { dataSource: dataSourceName, ...leaseOptions } = options;
  const dataSource = validateDataSourceName(dataSourceName, '@ScheduledLock()');
  return (target, key, descriptor) => {
    const leases = injectInto(target, LeaseService, 'ScheduledLock', dataSource);
    wrapMethod('ScheduledLock', target, key, descriptor, (original, methodName) =>
      async function scheduledLock(this: object, ...args: unknown[]) {
        let started = false;
        let outcome: LeaseRunResult<unknown>;
        try {
          outcome = await leases(this).run(
            name,
            () => {
              started = true;
              return original.apply(this, args);
            },
            leaseOptions,
          );
        } catch (error) {
          // A tick that fires while the app closes is skipped: another replica runs it.
          if (started || !(error instanceof ShuttingDownError)) throw error;
          logger.debug(`${methodName} skipped: the app is shutting down`);
          return undefined;
        }
        if (outcome.ran) return outcome.value;
        logger.debug(`${methodName} skipped: lease "${name}" is held by another run`);
        return undefined;
      },
    );
  };
}
