import { describe, expect, it } from '@jest/globals';
import { ShutdownGate, type DrainedConnection } from '../../lib/lifecycle/shutdown-gate.js';
import { ShutdownRollbackError } from '../../lib/errors.js';

// The gate's own bookkeeping of the connections it waits for (a list linked through them, not a Set; see
// docs/performance.md): the shutdown itself, on a real PostgreSQL, is test/lifecycle/shutdown.spec.ts.
describe('ShutdownGate: the connections it waits for', () => {
  const logger = { log: () => undefined, warn: () => undefined, error: () => undefined };
  const connection = (name: string, abandoned: string[]): DrainedConnection & { name: string } => ({
    name,
    abandon: async (error: ShutdownRollbackError) => {
      expect(error).toBeInstanceOf(ShutdownRollbackError);
      abandoned.push(name);
    },
  });

  it('abandons after the grace period exactly the connections tracked and not closed, whatever order they closed in', async () => {
    const gate = new ShutdownGate();
    const abandoned: string[] = [];
    const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map((name) => connection(name, abandoned));
    for (const tracked of [a, b, c, d, e]) gate.track(tracked!);
    gate.closed(c!); // in the middle
    gate.closed(e!); // the newest
    gate.closed(a!); // the oldest
    gate.closed(a!); // twice: nothing more
    expect([a, c, e].map((closed) => closed!.drainedBy)).toEqual([undefined, undefined, undefined]);
    await gate.close(20, logger);
    expect(abandoned.sort()).toEqual(['b', 'd']);
  });

  it('ends the close as soon as the last connection it waits for has closed', async () => {
    const gate = new ShutdownGate();
    const abandoned: string[] = [];
    const [a, b] = ['a', 'b'].map((name) => connection(name, abandoned));
    gate.track(a!);
    gate.track(b!);
    const closing = gate.close(60_000, logger);
    gate.closed(b!);
    gate.closed(a!);
    await closing;
    expect(abandoned).toEqual([]);
  });
});
