/** The outcome of one of many concurrent callers. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** What race() saw: every caller's outcome in index order, and the values and errors apart. */
export interface RaceResult<T> {
  /** Each caller's outcome, in caller index order. */
  outcomes: Outcome<T>[];
  /** The values of the callers that succeeded, in index order. */
  values: T[];
  /** The errors of the callers that failed, in index order. */
  errors: unknown[];
}

/**
 * Starts `count` callers of `caller` at once, behind a start barrier (none starts before all are ready), and
 * waits for every one of them: the way to prove a race is handled, with real concurrency and exact numbers.
 * Give the DataSource's pool at least `count` connections when each caller holds its own.
 *
 * @example
 * const { values, errors } = await race(50, () => counters.increment('likes'));
 * expect(errors).toEqual([]);
 * expect(new Set(values).size).toBe(50);
 */
export async function race<T>(count: number, caller: (index: number) => Promise<T>): Promise<RaceResult<T>> {
  let start!: () => void;
  const barrier = new Promise<void>((resolve) => (start = resolve));
  const running = Array.from({ length: count }, (_, index) =>
    barrier.then(() => caller(index)).then(
      (value): Outcome<T> => ({ ok: true, value }),
      (error: unknown): Outcome<T> => ({ ok: false, error }),
    ),
  );
  start();
  const outcomes = await Promise.all(running);
  return {
    outcomes,
    values: outcomes.flatMap((outcome) => (outcome.ok ? [outcome.value] : [])),
    errors: outcomes.flatMap((outcome) => (outcome.ok ? [] : [outcome.error])),
  };
}
