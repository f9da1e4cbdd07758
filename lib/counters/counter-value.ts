import { isWellFormed, WELL_FORMED_TEXT } from '../common/text.js';
import { CounterOverflowError, InvalidAmountError, InvalidCounterKeyError } from '../errors.js';
import { SHARD_SEPARATOR } from './counter-shards.js';

/**
 * What a counter call returns: a `number` by default (a controller can return it as JSON; past
 * Number.MAX_SAFE_INTEGER the call fails with CounterOverflowError and changes nothing), or a `bigint`, over the
 * whole range of PostgreSQL's bigint, when the call passes `{ bigint: true }`.
 */
export type CounterValue<Options = object> = Options extends { bigint: true } ? bigint : number;

/** The option that makes counter calls return `bigint` values. */
export interface BigIntValueOption {
  /** Values as `bigint` (PostgreSQL's whole bigint range) instead of `number` (safe integers). Default false. */
  bigint?: boolean;
}

/** An integer argument: a safe-integer number or a bigint. */
export type Integer = number | bigint;

/** Longest counter key accepted, in characters. Longer keys throw InvalidCounterKeyError. */
export const MAX_COUNTER_KEY_LENGTH = 512;

const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;
/** The largest magnitude a `number` counter value may reach (Number.MAX_SAFE_INTEGER), as a bigint. */
export const SAFE_LIMIT = BigInt(Number.MAX_SAFE_INTEGER);

/** Whether `value` is within ±SAFE_LIMIT. */
export function isSafe(value: bigint): boolean {
  return value >= -SAFE_LIMIT && value <= SAFE_LIMIT;
}

/**
 * Converts the text of a bigint (we always `::text` in SQL, whatever pg's type parsers are) to the value the
 * caller asked for: a bigint, or a number, and CounterOverflowError (naming `target`) when a number would lose
 * precision. Statements that change a value are guarded so this never fires after a change (see CounterSql.add).
 */
export function counterValue<Options extends BigIntValueOption>(text: string | number | bigint, options: Options | undefined, target: string): CounterValue<Options> {
  const value = BigInt(text);
  if (options?.bigint) return value as CounterValue<Options>;
  if (!isSafe(value)) throw new CounterOverflowError(target, undefined, 'number');
  return Number(value) as CounterValue<Options>;
}

type Bounds = { min?: Integer; max?: Integer; bigint?: boolean };

/** The `min` and `max` of `bounds` as bigints (InvalidAmountError for values that are not integers). */
export function readBounds(bounds: Bounds | undefined): { min?: bigint; max?: bigint } {
  return { min: bounds?.min === undefined ? undefined : toInteger(bounds.min, 'min'), max: bounds?.max === undefined ? undefined : toInteger(bounds.max, 'max') };
}

/** Bounds read by readBounds(), narrowed to ±Number.MAX_SAFE_INTEGER unless the call takes bigint values. */
export function withinSafeRange(read: { min?: bigint; max?: bigint }, bigint: boolean | undefined): { min?: bigint; max?: bigint } {
  if (bigint) return read;
  const { min = -SAFE_LIMIT, max = SAFE_LIMIT } = read;
  return { min: min < -SAFE_LIMIT ? -SAFE_LIMIT : min, max: max > SAFE_LIMIT ? SAFE_LIMIT : max };
}

/**
 * An integer argument as bigint, or InvalidAmountError: numbers must be safe integers (2^53 and above are
 * already rounded, so we refuse them rather than count wrongly), bigints must fit PostgreSQL's bigint.
 */
export function toInteger(value: unknown, argument: string, options: { nonNegative?: boolean } = {}): bigint {
  let result: bigint;
  if (typeof value === 'bigint') result = value;
  else if (typeof value === 'number' && Number.isSafeInteger(value)) result = BigInt(value);
  else if (typeof value === 'number' && Number.isInteger(value)) throw new InvalidAmountError(argument, value, 'it is beyond Number.MAX_SAFE_INTEGER, where numbers lose precision');
  else throw new InvalidAmountError(argument, value, 'it is not an integer');
  if (result < INT8_MIN || result > INT8_MAX) throw new InvalidAmountError(argument, value, 'it does not fit a PostgreSQL bigint');
  if (options.nonNegative && result < 0n) throw new InvalidAmountError(argument, value, 'it is negative (use the opposite method)');
  return result;
}

/**
 * The key itself, or InvalidCounterKeyError when it is not a non-empty string of at most MAX_COUNTER_KEY_LENGTH
 * characters, well-formed UTF-16 (no lone surrogate: `'\uD800'` and `'\uDBFF'` would both be stored as U+FFFD,
 * one counter), without NUL, and without U+001F (SHARD_SEPARATOR: then no key can name another key's shard).
 * getMany() relies on it too: a key must come back from PostgreSQL exactly as sent.
 */
export function toCounterKey(key: unknown): string {
  if (typeof key !== 'string') throw new InvalidCounterKeyError(key, 'a counter key must be a string');
  if (key.length === 0) throw new InvalidCounterKeyError(key, 'a counter key must not be empty');
  if (key.length > MAX_COUNTER_KEY_LENGTH) throw new InvalidCounterKeyError(key, `a counter key must be at most ${MAX_COUNTER_KEY_LENGTH} characters`);
  if (key.includes('\u0000')) throw new InvalidCounterKeyError(key, 'PostgreSQL text cannot hold the NUL character');
  if (key.includes(SHARD_SEPARATOR)) throw new InvalidCounterKeyError(key, 'U+001F (the unit separator) is reserved for the rows of sharded counters');
  if (!isWellFormed(key)) throw new InvalidCounterKeyError(key, `a counter key must be ${WELL_FORMED_TEXT}`);
  return key;
}
