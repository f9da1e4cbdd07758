/** The hot keys of scenario 5, shared by the bench and its counter worker processes. */

/** The row counts the hot key is measured with: 1 (not sharded) and two sharded forms. */
export const SHARD_COUNTS = [1, 4, 16] as const;

/** The key incremented with `shards` rows. */
export function hotKey(shards: number): string {
  return `bench-hot-${shards}`;
}

/**
 * `values` sorted and cut into runs of consecutive integers, as flat [first, length, first, length, ...]:
 * coalesced increments hand out consecutive values, so this is small enough to send after every round.
 */
export function valueRuns(values: number[]): number[] {
  const sorted = Float64Array.from(values).sort();
  const runs: number[] = [];
  for (let i = 0; i < sorted.length; ) {
    let end = i + 1;
    while (end < sorted.length && sorted[end] === sorted[end - 1]! + 1) end++;
    runs.push(sorted[i]!, end - i);
    i = end;
  }
  return runs;
}
