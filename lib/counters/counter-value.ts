import { isWellFormed, WELL_FORMED_TEXT } from '../common/text.js';
import { InvalidAmountError, InvalidCounterKeyError } from '../errors.js';
import { SHARD_SEPARATOR } from './counter-shards.js';

/**
 * A value read from a bigint column: a `number` when it is a safe integer (|v| <= 2^53 - 1), otherwise a
 * `bigint`, so precision is never lost silently. `typeof value === 'bigint'` tells the two apart.
 */
export type CounterValue = number | bigint;

/** An integer argument: a safe-integer number or a bigint. */
export type Integer = number | bigint;

/** Longest counter key accepted, in characters. Longer keys throw InvalidCounterKeyError. */
export const MAX_COUNTER_KEY_LENGTH = 512;

const INT8_MIN = -(2n ** 63n);
const INT8_MAX = 2n ** 63n - 1n;
const SAFE_MIN = BigInt(Number.MIN_SAFE_INTEGER);
const SAFE_MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** Converts the text of a bigint (we always `::text` in SQL, whatever pg's type parsers are) to a CounterValue. */
export function counterValue(text: string | number | bigint): CounterValue {
  const value = BigInt(text);
  return value >= SAFE_MIN && value <= SAFE_MAX ? Number(value) : value;
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
