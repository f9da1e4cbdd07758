/** The outcome of one of many concurrent callers. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Starts `count` callers at once (all are called before any is awaited) and waits for all of them.
 * Give the DataSource/pool at least `count` connections when each caller must hold its own.
 */
export async function concurrently<T>(count: number, caller: (index: number) => Promise<T>): Promise<Outcome<T>[]> {
  const started = Array.from({ length: count }, (_, i) => caller(i));
  return Promise.all(started.map((p) => p.then((value): Outcome<T> => ({ ok: true, value }), (error: unknown): Outcome<T> => ({ ok: false, error }))));
}

/** The values of the callers that succeeded; throws the first error if any failed. */
export function valuesOf<T>(outcomes: Outcome<T>[]): T[] {
  const failed = outcomes.find((o) => !o.ok);
  if (failed && !failed.ok) throw failed.error;
  return outcomes.map((o) => (o as { value: T }).value);
}
