import { AsyncResource } from 'node:async_hooks';

/** Sends one add of `delta` to `key` and returns the counter's new value. */
export type AddStatement = (key: string, delta: bigint, windowMs: string | null) => Promise<bigint>;

interface Waiter {
  delta: bigint;
  resolve(value: bigint): void;
  reject(error: unknown): void;
}

interface Batch {
  key: string;
  windowMs: string | null;
  waiting: Waiter[];
}

/**
 * Group commit for hot counters. The first caller on a key sends its statement at once (no timer, no added
 * latency); callers that arrive while it is in flight queue up and go together in the next statement, which
 * adds their total T and returns the new value V. The range V-T+1..V is then handed out in arrival order,
 * so each caller gets the value it would have seen had the calls run one after another, and the count is
 * exact. Only callers outside any transaction may come here (a transaction's changes must stay its own).
 *
 * The drain loop runs in an AsyncResource made when the service was built, not in the first caller's
 * async context, so a hot key never keeps one request's AsyncLocalStorage state (CLS, our transaction
 * scope) alive.
 */
export class CounterCoalescer {
  private readonly batches = new Map<string, Batch>();
  private readonly detached = new AsyncResource('TxLockCounterCoalescer');

  constructor(private readonly send: AddStatement) {}

  add(key: string, delta: bigint, windowMs: string | null): Promise<bigint> {
    // Keys never contain NUL (validated), so this cannot confuse two (key, window) pairs.
    const id = `${windowMs ?? ''}\u0000${key}`;
    const existing = this.batches.get(id);
    const batch = existing ?? { key, windowMs, waiting: [] };
    const result = new Promise<bigint>((resolve, reject) => batch.waiting.push({ delta, resolve, reject }));
    if (!existing) {
      this.batches.set(id, batch);
      this.detached.runInAsyncScope(() => void this.drain(id, batch));
    }
    return result;
  }

  private async drain(id: string, batch: Batch): Promise<void> {
    while (batch.waiting.length > 0) {
      const group = batch.waiting.splice(0);
      const total = group.reduce((sum, waiter) => sum + waiter.delta, 0n);
      try {
        let value = (await this.send(batch.key, total, batch.windowMs)) - total;
        for (const waiter of group) waiter.resolve((value += waiter.delta));
      } catch (error) {
        for (const waiter of group) waiter.reject(error);
      }
    }
    this.batches.delete(id);
  }
}
