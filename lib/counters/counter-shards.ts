import { InvalidOptionError } from '../errors.js';

/**
 * The most rows one counter key can be spread over with `increment(key, by, { shards })`. `get(key)` and the
 * other whole-key calls read or clear every possible shard row, so this bound is also their cost (one index
 * lookup each). A process coalesces its calls on a key into one statement in flight at a time, so a key hot
 * on a dozen replicas has about a dozen statements to spread: 16 rows leave them rarely waiting on each other.
 */
export const MAX_COUNTER_SHARDS = 16;

/**
 * Joins a key to its shard number in the row key of shards 1 and up (`key` + U+001F + n; shard 0 is the row
 * `key` itself, so a key that starts being sharded keeps its count). U+001F is the ASCII unit separator,
 * storable in every server encoding; counter keys may not contain it, so no key can name another's shard.
 */
export const SHARD_SEPARATOR = '\u001F';

/** `shards` as given to increment/decrement: 1 (not sharded) when absent, else InvalidOptionError outside 1..MAX_COUNTER_SHARDS. */
export function shardCount(shards: unknown): number {
  if (shards === undefined) return 1;
  if (typeof shards !== 'number' || !Number.isSafeInteger(shards) || shards < 1 || shards > MAX_COUNTER_SHARDS) {
    throw new InvalidOptionError('shards', shards, `a whole number from 1 to ${MAX_COUNTER_SHARDS} (MAX_COUNTER_SHARDS)`);
  }
  return shards;
}

/**
 * The row one statement on a key spread over `shards` rows changes: one of them at random, so concurrent
 * statements from several replicas rarely wait for the same row lock. `key` itself when not sharded.
 */
export function randomShardRow(key: string, shards: number): string {
  const shard = shards > 1 ? Math.floor(Math.random() * shards) : 0;
  return shard === 0 ? key : `${key}${SHARD_SEPARATOR}${shard}`;
}

/** Every row that can hold part of `key`'s count: `key` itself, then its shards 1..MAX_COUNTER_SHARDS-1. */
export function allShardRows(key: string): string[] {
  const rows = [key];
  for (let shard = 1; shard < MAX_COUNTER_SHARDS; shard++) rows.push(`${key}${SHARD_SEPARATOR}${shard}`);
  return rows;
}

/** The key a row (a key itself, or one of its shards) counts for. */
export function keyOfRow(row: string): string {
  const end = row.indexOf(SHARD_SEPARATOR);
  return end === -1 ? row : row.slice(0, end);
}
