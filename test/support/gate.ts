/** A promise the test opens by hand: lets a caller hold a lock until the test says so, with no sleeps. */
export interface Gate {
  opened: Promise<void>;
  open(): void;
}

export function gate(): Gate {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

/**
 * Resolves once `signal` aborts, with its reason; at once when it already has (a listener added after the abort is never
 * called: a body that starts only after the close began would otherwise wait for ever).
 */
export function whenAborted(signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve(signal.reason);
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }));
}

/** Resolves once `condition` holds, polling every 10 ms; fails after `timeoutMs` instead of hanging. */
export async function eventually(condition: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

/**
 * Starts `lock` (for example `(body) => locks.withAdvisoryLock(key, body)`) with a body that waits. Resolves
 * once the body runs, that is once the lock is held, with the function that lets the body finish and
 * returns what the lock call settled with.
 */
export async function holding(lock: (body: () => Promise<void>) => Promise<unknown>): Promise<() => Promise<unknown>> {
  const release = gate();
  const taken = gate();
  const holder = lock(async () => {
    taken.open();
    await release.opened;
  });
  await Promise.race([taken.opened, holder]);
  return async () => {
    release.open();
    return holder;
  };
}
