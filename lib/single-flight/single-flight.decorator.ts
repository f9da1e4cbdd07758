import { allowedKeys } from '../common/option-keys.js';
import { injectInto, validateDataSourceName, wrapMethod } from '../common/wrap-method.js';
import { defaultMethodKey, lockKeyText, type LockKey } from '../locks/lock-key.js';
import { SINGLE_FLIGHT_OPTION_KEYS, validateSingleFlight, type SingleFlightOptions } from './single-flight.options.js';
import { SingleFlightService } from './single-flight.service.js';

/** Options of `@SingleFlight()`. */
export interface SingleFlightDecoratorOptions extends SingleFlightOptions {
  /**
   * The key: a constant, or computed from the method's arguments. Default: `ClassName.methodName` and the
   * arguments, as for @AdvisoryLock(), so calls with equal arguments share one computation.
   */
  key?: LockKey | ((...args: any[]) => LockKey);
  /** The name of the DataSource (its TxLockModule registration) that stores and locks. Default: the default one. */
  dataSource?: string;
}

const DECORATOR_KEYS = allowedKeys<SingleFlightDecoratorOptions>('@SingleFlight()', { ...SINGLE_FLIGHT_OPTION_KEYS, key: true, dataSource: true });

/**
 * Computes the method's result once across all processes for equal keys, and shares it for `ttlMs`
 * (see SingleFlightService). Works on provider methods and controller handlers; the method then returns
 * a Promise of its JSON-serialisable result. Options are checked when the decorator is applied.
 *
 * @example
 * @Get('stats')
 * @SingleFlight({ ttlMs: 30_000 })
 * stats() { return this.expensiveStats(); }
 */
export function SingleFlight(options: SingleFlightDecoratorOptions): MethodDecorator {
  validateSingleFlight(typeof options.key === 'string' ? options.key : undefined, options, '@SingleFlight()', DECORATOR_KEYS);
  if (options.key !== undefined && typeof options.key !== 'function') lockKeyText(options.key); // a bad constant key fails now
  const { key, dataSource, ...runOptions } = options;
  validateDataSourceName(dataSource, '@SingleFlight()');
  return (target, methodKey, descriptor) => {
    const flights = injectInto(target, SingleFlightService, 'SingleFlight', dataSource);
    wrapMethod('SingleFlight', target, methodKey, descriptor, (original, methodName) =>
      async function singleFlight(this: object, ...args: unknown[]) {
        const parts = typeof key === 'function' ? key(...args) : (key ?? defaultMethodKey(methodName, args));
        const text = typeof parts === 'string' ? parts : lockKeyText(parts);
        return flights(this).run(text, () => original.apply(this, args), runOptions);
      },
    );
  };
}
