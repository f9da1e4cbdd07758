import { Logger, UseFilters } from '@nestjs/common';
import { allowedKeys, checkOptionKeys } from '../common/option-keys.js';
import { injectInto, validateDataSourceName, wrapMethod } from '../common/wrap-method.js';
import { InvalidOptionError } from '../errors.js';
import { markSessionScope } from '../server/pooler.js';
import { TxLockExceptionFilter } from './lock-exception.filter.js';
import { defaultMethodKey, lockKeyText, type LockKey } from './lock-key.js';
import { ADVISORY_LOCK_CALL_KEYS, validateAdvisoryOptions, type AdvisoryLockCallOptions } from './lock.options.js';
import { LockService } from './lock.service.js';

const logger = new Logger('TxLock');

// Key functions receive the method's own arguments, whose types the decorator cannot know; `any` lets a
// typed function such as `(id: number) => ...` be passed.
type KeyFunction<R> = (...args: any[]) => R;

/** Options of `@AdvisoryLock()`. */
export interface AdvisoryLockOptions extends AdvisoryLockCallOptions {
  /**
   * The lock's key: a constant (every call takes turns, like a staggered job), or a function of the
   * method's arguments (`(id) => ['account', id]`). Default: `ClassName.methodName` plus the arguments.
   */
  key?: LockKey | KeyFunction<LockKey>;
  /** Several keys from the arguments (`(from, to) => [['account', from], ['account', to]]`), taken in sorted order. */
  keys?: KeyFunction<readonly LockKey[]>;
  /**
   * When the lock is taken (nowait) or `timeoutMs` runs out: `'throw'` (default) LockNotAcquiredError or
   * LockTimeoutError; `'skip'` returns undefined without running, logged at debug level. `'skip'` without
   * `timeoutMs` does not wait at all.
   */
  onLocked?: 'throw' | 'skip';
  /** The name of the DataSource (its TxLockModule registration) to lock on. Default: the default one. */
  dataSource?: string;
}

const DECORATOR_KEYS = allowedKeys<AdvisoryLockOptions>('@AdvisoryLock()', { ...ADVISORY_LOCK_CALL_KEYS, key: true, keys: true, onLocked: true, dataSource: true });

/**
 * Runs the method holding a PostgreSQL advisory lock, so calls with the same key never run at the same time,
 * across processes and replicas. In transaction scope (default) it opens a transaction when none is active
 * (the lock travels with its BEGIN) or joins the current one, and the lock lasts until it ends. On a controller,
 * LockTimeoutError/LockNotAcquiredError answer HTTP 423 (see TxLockExceptionFilter). Invalid options throw
 * when the decorator is applied.
 *
 * @example
 * @AdvisoryLock({ key: (accountId: number) => ['account', accountId], timeoutMs: 2_000 })
 * async credit(accountId: number, amount: number) { ... }
 *
 * @Cron('* * * * *')
 * @AdvisoryLock({ key: 'reports.rebuild', onLocked: 'skip' }) // one replica at a time; the others skip
 * async rebuildReports() { ... }
 */
export function AdvisoryLock(options: AdvisoryLockOptions = {}): MethodDecorator {
  checkOptionKeys(options, DECORATOR_KEYS);
  const { key, keys, onLocked = 'throw', dataSource, ...callOptions } = options;
  validateDataSourceName(dataSource, '@AdvisoryLock()');
  validateAdvisoryOptions(callOptions, '@AdvisoryLock()');
  if (onLocked !== 'throw' && onLocked !== 'skip') throw new InvalidOptionError('@AdvisoryLock() "onLocked"', onLocked, ['throw', 'skip']);
  if (key !== undefined && keys !== undefined) throw new InvalidOptionError('@AdvisoryLock() "keys"', 'keys', 'unset when "key" is given');
  if (keys !== undefined && typeof keys !== 'function') throw new InvalidOptionError('@AdvisoryLock() "keys"', keys, 'a function of the arguments');
  if (key !== undefined && typeof key !== 'function') lockKeyText(key); // a bad constant fails now, not on the first call
  return (target, propertyKey, descriptor) => {
    const locks = injectInto(target, LockService, 'AdvisoryLock', dataSource);
    // Behind a transaction pooler (module option pooler: 'transaction') such a method is refused at bootstrap.
    if (callOptions.scope === 'session') markSessionScope(target, `${target.constructor.name}.${String(propertyKey)}`, dataSource);
    wrapMethod('AdvisoryLock', target, propertyKey, descriptor, (original, methodName) => {
      const skipping = async (service: LockService, lockKeys: readonly LockKey[], call: () => unknown) => {
        const outcome = await service.tryAdvisoryLocks(lockKeys, call, callOptions);
        if (outcome.ran) return outcome.value;
        logger.debug(`${methodName} skipped: its advisory lock is held elsewhere (${outcome.reason})`);
        return undefined;
      };
      // Not async: the lock call's promise is returned as it is (an async wrapper would add frames to every call).
      return function advisoryLock(this: object, ...args: unknown[]) {
        try {
          const lockKeys = keys ? keys.apply(this, args) : [typeof key === 'function' ? key.apply(this, args) : (key ?? defaultMethodKey(methodName, args))];
          const call = () => original.apply(this, args);
          // callOptions is the decorator's own copy, checked above: it cannot change between calls.
          if (onLocked === 'throw') return locks(this).withCheckedAdvisoryLocks(lockKeys, call, callOptions);
          return skipping(locks(this), lockKeys, call);
        } catch (error) {
          return Promise.reject(error); // always a Promise, even for a key function that throws
        }
      };
    });
    UseFilters(TxLockExceptionFilter)(target, propertyKey, descriptor);
  };
}
