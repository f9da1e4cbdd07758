import { InvalidOptionError } from '../errors.js';

/**
 * The longest duration the library adds to the database clock: a lease's `atMostForMs` (and `extend()`), a
 * single-flight `ttlMs`, a counter's `windowMs`. 100 years, in ms. Far longer durations give end times a JS
 * Date cannot hold (`Number.MAX_SAFE_INTEGER` ms from now is an Invalid Date); 100 years keeps both the JS
 * Date and the PostgreSQL timestamp valid with a wide margin.
 */
export const MAX_DURATION_MS = 3_155_760_000_000;

/**
 * The longest duration that becomes a Node timer (a lease's `renewEveryMs`, a single-flight `timeoutMs`):
 * 2^31 - 1 ms, about 24.8 days. Node fires a longer timer after 1 ms instead, with only a warning.
 */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * Throws InvalidOptionError unless `value` is undefined or a whole number of milliseconds in [min, max];
 * `maxName` names the bound in the message (`MAX_DURATION_MS`, `MAX_TIMER_MS`).
 */
export function assertDurationMs(value: unknown, option: string, min: number, max: number, maxName: string): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(option, value, `a whole number of milliseconds from ${min} to ${max} (${maxName})`);
  }
}
