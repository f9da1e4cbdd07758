import { StreamableFile } from '@nestjs/common';
import { isObservable, Observable, ReplaySubject, type Subscription } from 'rxjs';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';

/**
 * A value that keeps working after the method returned it: an Observable still to emit, or a stream still
 * to be read. Its transaction must stay open until it finishes, while the caller gets `handout` at once.
 */
export interface LongLivedResult {
  /** What the caller receives now. */
  handout: unknown;
  /** Settles when the value has finished (rejects when it failed or was abandoned). */
  finished: Promise<void>;
  /** Called once the transaction has ended, with its error if it did not commit. */
  settle(error?: unknown): void;
}

/**
 * Returns how `value` lives on after being returned, or undefined when it is an ordinary value. `abandoned`
 * (the HTTP client went away) ends it early, which rolls its transaction back.
 */
export function longLivedResult(value: unknown, abandoned?: AbortSignal): LongLivedResult | undefined {
  if (isObservable(value)) return observableResult(value, abandoned);
  if (value instanceof StreamableFile) return streamResult(value.getStream(), value, abandoned);
  if (value instanceof Readable) return streamResult(value, value, abandoned);
  return undefined;
}

class AbandonedError extends Error {
  constructor() {
    super('The caller stopped listening before the result finished; the transaction was rolled back.');
  }
}

// The source is subscribed inside the transaction's context; the caller's copy completes only after
// COMMIT succeeded, or errors with the commit/rollback error. When the caller unsubscribes before the
// source finished (an SSE client that left), or the request is abandoned, the source is unsubscribed and
// the transaction rolls back: an endless Observable never holds a connection for ever.
function observableResult(source: Observable<unknown>, abandoned?: AbortSignal): LongLivedResult {
  const relay = new ReplaySubject<unknown>();
  let subscription: Subscription | undefined;
  let settled = false;
  let abandon: () => void = () => undefined;
  const done = new Promise<void>((resolve, reject) => {
    const finish = (error?: unknown) => {
      if (settled) return;
      settled = true;
      abandoned?.removeEventListener('abort', abandon);
      if (error === undefined) resolve();
      else reject(error);
    };
    abandon = () => {
      subscription?.unsubscribe();
      finish(new AbandonedError());
    };
    subscription = source.subscribe({ next: (v) => relay.next(v), error: (error: unknown) => finish(error ?? new Error('Observable errored')), complete: () => finish() });
    if (abandoned?.aborted) abandon();
    else abandoned?.addEventListener('abort', abandon, { once: true });
  });
  const handout = new Observable<unknown>((subscriber) => {
    const inner = relay.subscribe(subscriber);
    return () => {
      inner.unsubscribe();
      if (!settled && !relay.observed) abandon();
    };
  });
  return {
    handout,
    finished: done,
    settle: (error) => (error === undefined ? relay.complete() : relay.error(error)),
  };
}

// A stream is handed out as is; the transaction ends when it has been read to the end, and rolls back
// when it errors or is destroyed early (for example when the HTTP client disconnects).
function streamResult(stream: Readable, handout: unknown, abandoned?: AbortSignal): LongLivedResult {
  const onAbandon = () => stream.destroy(new AbandonedError());
  abandoned?.addEventListener('abort', onAbandon, { once: true });
  return {
    handout,
    finished: finished(stream),
    settle: (error) => {
      abandoned?.removeEventListener('abort', onAbandon);
      if (error !== undefined && !stream.destroyed) stream.destroy(error instanceof Error ? error : undefined);
    },
  };
}
