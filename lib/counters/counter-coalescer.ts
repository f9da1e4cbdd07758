import { CounterOverflowError } from '../errors.js';
import { telemetry } from '../telemetry/telemetry.js';
import { randomShardRow } from './counter-shards.js';
import { counterValue, SAFE_LIMIT } from './counter-value.js';

/**
 * Sends one add of `delta` to the row `key` and returns the row's new value; with `limit`, CounterOverflowError
 * (nothing changed) when the value would pass ±limit.
 */
export type AddStatement = (key: string, delta: bigint, windowMs: string | null, limit: bigint | null) => Promise<bigint>;

interface Waiter {
  delta: bigint;
  resolve(value: bigint | number): void;
  reject(error: unknown): void;
}

// counterValue()'s options for callers that asked for bigint values (they come with no limit).
const AS_BIGINT = { bigint: true };

interface Batch {
  key: string;
  windowMs: string | null;
  shards: number;
  limit: bigint | null;
  waiting: Waiter[];
}

/**
 * Group commit for hot counters. The first caller on a key sends its statement at once (no timer, no added
 * latency); callers that arrive while it is in flight queue up and go together in the next statement, which
 * adds their total T and returns the new value V. The range V-T+1..V is then handed out in arrival order,
 * so each caller gets the value it would have seen had the calls run one after another, and the count is
 * exact. Only callers outside any transaction may come here (a transaction's changes must stay its own).
 *
 * Two rules keep that equivalence at the edges of bigint's range. A statement only merges deltas of one sign:
 * then every value in between lies between the old and the new value, so if the new value fits, so did each
 * caller's (with +20 and -15 merged into +5, the +20 caller's value could overflow unseen). And when a merged
 * statement overflows (which changes nothing), its callers are replayed one statement each in arrival order,
 * so only the callers that overflow on their own get CounterOverflowError. The same holds for the limit of
 * callers that take `number` values (Number.MAX_SAFE_INTEGER): they share statements only with one another.
 *
 * A key spread over several rows (`shards`) keeps one queue: each statement goes to one of its rows, chosen
 * at random, and hands out that row's values.
 *
 * The drain loop runs in an AsyncResource made when the service was built, not in the first caller's
 * async context, so a hot key never keeps one request's AsyncLocalStorage state (CLS, our transaction
 * scope) alive. Under a test transaction, a batch belongs to its callers' test (they share a tag): it runs in
 * their scope, and is refused like any other late work when it comes after the test ended.
 */
export class CounterCoalescer {
  private readonly batches = new Map<string, Batch>();

  /**
   * `detached` runs the drain loop: in an async context made at bootstrap (TransactionHost.detached), or under a
   * test transaction in the first caller's, since there each batch belongs to its callers' test.
   */
  constructor(
    private readonly send: AddStatement,
    private readonly detached: (drain: () => void) => void,
  ) {}

  /**
   * Resolves with the caller's value as the caller takes it (counterValue()): a bigint without `limit`, else a number,
   * so the caller needs no promise of its own to convert it. `tag`: callers share a statement only with callers of
   * the same tag (TransactionHost.sharingTag()).
   */
  add(key: string, delta: bigint, windowMs: string | null, shards = 1, limit: bigint | null = null, tag = ''): Promise<bigint | number> {
    // Keys never contain NUL (validated), so this cannot confuse two (tag, key, window, shards, limit) tuples; the
    // common case (no tag, window or shards, number values) is the key itself, which has no NUL to be confused with.
    const id = tag === '' && windowMs === null && shards === 1 && limit === SAFE_LIMIT ? key : `${tag}\u0000${windowMs ?? ''}\u0000${shards}\u0000${limit ?? ''}\u0000${key}`;
    const existing = this.batches.get(id);
    const batch = existing ?? { key, windowMs, shards, limit, waiting: [] };
    const result = new Promise<bigint | number>((resolve, reject) => batch.waiting.push({ delta, resolve, reject }));
    if (!existing) {
      this.batches.set(id, batch);
      this.detached(() => void this.drain(id, batch));
    }
    return result;
  }

  // Statement after statement until no caller waits. Promise reactions rather than async frames: at one caller, every
  // promise of this path is latency (see docs/performance.md).
  private drain(id: string, batch: Batch): void {
    if (batch.waiting.length === 0) {
      this.batches.delete(id);
      return;
    }
    void this.apply(batch, takeSameSign(batch.waiting)).then(() => this.drain(id, batch));
  }

  // One statement for `group` (all of one sign), its values handed out in arrival order. Never rejects: a failure is
  // its callers'.
  private apply(batch: Batch, group: Waiter[]): Promise<void> {
    const total = group.reduce((sum, waiter) => sum + waiter.delta, 0n);
    telemetry?.counterBatch.record(group.length);
    let sent: Promise<bigint>;
    try {
      sent = this.send(randomShardRow(batch.key, batch.shards), total, batch.windowMs, batch.limit);
    } catch (error) {
      sent = Promise.reject(error);
    }
    return sent.then(
      (newValue) => handOut(group, newValue - total, batch),
      (error: unknown) => this.failed(batch, group, error),
    );
  }

  // A merged statement that overflowed changed nothing: its callers are replayed one statement each, in arrival order.
  private async failed(batch: Batch, group: Waiter[], error: unknown): Promise<void> {
    if (error instanceof CounterOverflowError && group.length > 1) {
      for (const waiter of group) await this.apply(batch, [waiter]);
      return;
    }
    for (const waiter of group) waiter.reject(error);
  }
}

// Hands `group` the values after `before`, in arrival order, as each caller takes them.
function handOut(group: Waiter[], before: bigint, batch: Batch): void {
  const options = batch.limit === null ? AS_BIGINT : undefined;
  let value = before;
  for (const waiter of group) {
    value += waiter.delta;
    try {
      waiter.resolve(counterValue(value, options, batch.key));
    } catch (error) {
      waiter.reject(error);
    }
  }
}

// Removes and returns the longest prefix of `waiting` whose deltas share a sign (0 goes with either).
function takeSameSign(waiting: Waiter[]): Waiter[] {
  let sign = 0n;
  let end = 0;
  for (; end < waiting.length; end++) {
    const delta = waiting[end]!.delta;
    const own = delta > 0n ? 1n : delta < 0n ? -1n : 0n;
    if (own !== 0n && sign !== 0n && own !== sign) break;
    if (own !== 0n) sign = own;
  }
  return waiting.splice(0, end);
}
