import { StreamableFile } from '@nestjs/common';
import { isObservable, ReplaySubject, type Observable } from 'rxjs';
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

/** Returns how `value` lives on after being returned, or undefined when it is an ordinary value. */
export function longLivedResult(value: unknown): LongLivedResult | undefined {
  if (isObservable(value)) return observableResult(value);
  if (value instanceof StreamableFile) return streamResult(value.getStream(), value);
  if (value instanceof Readable) return streamResult(value, value);
  return undefined;
}

// The source is subscribed inside the transaction's context; the caller's copy completes only after
// COMMIT succeeded, or errors with the commit/rollback error.
function observableResult(source: Observable<unknown>): LongLivedResult {
  const relay = new ReplaySubject<unknown>();
  const done = new Promise<void>((resolve, reject) => {
    source.subscribe({ next: (v) => relay.next(v), error: reject, complete: resolve });
  });
  return {
    handout: relay.asObservable(),
    finished: done,
    settle: (error) => (error === undefined ? relay.complete() : relay.error(error)),
  };
}

// A stream is handed out as is; the transaction ends when it has been read to the end, and rolls back
// when it errors or is destroyed early (for example when the HTTP client disconnects).
function streamResult(stream: Readable, handout: unknown): LongLivedResult {
  return {
    handout,
    finished: finished(stream),
    settle: (error) => {
      if (error !== undefined && !stream.destroyed) stream.destroy(error instanceof Error ? error : undefined);
    },
  };
}
