import { AsyncLocalStorage } from 'node:async_hooks';
import { processWide } from './process-state.js';

// One AsyncLocalStorage for every slot; its store holds each slot's value at the slot's index.
const storage = processWide('call-context', () => new AsyncLocalStorage<readonly unknown[]>());
// Slot indices by name, process-wide: the CommonJS and ES module copies of the library agree on them.
const indices = processWide('call-context-slots', () => new Map<string, number>());
const NO_VALUES: readonly unknown[] = [];

/**
 * A value the library carries along an async call chain: its transaction scopes (transaction-scope.ts), an HTTP
 * request's abort signal or settings context, a lock call's hold, the session-scope locks held, the running lease,
 * work admitted before shutdown, settings pinned for shared work. The same `run()`/`getStore()`/`enterWith()` as an
 * AsyncLocalStorage of its own, and as independent (running with a value for one slot keeps the others'), but all
 * slots share one store: on Node 20 and 22, AsyncLocalStorage runs on promise hooks, and every store in use adds its
 * own work (and a property) to every promise the process creates, the app's included. An app then pays for one,
 * however many of these features it uses.
 */
export class CallContextSlot<T> {
  private readonly index: number;

  constructor(name: string) {
    let index = indices.get(name);
    if (index === undefined) indices.set(name, (index = indices.size));
    this.index = index;
  }

  /** The value of the current call chain, if it has one. */
  getStore(): T | undefined {
    return storage.getStore()?.[this.index] as T | undefined;
  }

  /** Runs `fn` with `value` as this slot's value, the other slots' unchanged. */
  run<R>(value: T, fn: () => R): R {
    return storage.run(this.with(value), fn);
  }

  /** Gives the rest of the current synchronous execution, and what it starts, `value` as this slot's value. */
  enterWith(value: T): void {
    storage.enterWith(this.with(value));
  }

  private with(value: T): unknown[] {
    // A copy by slice(), not an array literal (common/fresh-array.ts says why).
    const next = (storage.getStore() ?? NO_VALUES).slice();
    next[this.index] = value;
    return next;
  }
}
