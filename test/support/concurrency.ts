import { race, type Outcome } from '../../lib/testing/race.js';

export type { Outcome };

/** Starts `count` callers at once (behind the testing kit's start barrier) and waits for all of them. */
export async function concurrently<T>(count: number, caller: (index: number) => Promise<T>): Promise<Outcome<T>[]> {
  return (await race(count, caller)).outcomes;
}

/** The values of the callers that succeeded; throws the first error if any failed. */
export function valuesOf<T>(outcomes: Outcome<T>[]): T[] {
  const failed = outcomes.find((o) => !o.ok);
  if (failed && !failed.ok) throw failed.error;
  return outcomes.map((o) => (o as { value: T }).value);
}

/** The testing kit's race() for callers that must all succeed: their values in index order, or the first error. */
export async function raceOk<T>(count: number, caller: (index: number) => Promise<T>): Promise<T[]> {
  const { outcomes } = await race(count, caller);
  return valuesOf(outcomes);
}
