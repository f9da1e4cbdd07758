// The results of lock calls, in a file of their own: the public declarations that use them stay clear of the
// telemetry hooks lock-request.ts carries (and of @opentelemetry/api, an optional peer).

/** The outcome of a try: whether fn ran (the lock was free) and what it returned. */
export type LockRunResult<T> = { ran: true; value: T } | { ran: false; reason: 'locked' | 'timeout' };

/** What running under a lock came to: fn's value, or the error saying why the lock was not taken. */
export type LockOutcome<T> = { ran: true; value: T } | { ran: false; failure: unknown };

/**
 * Carries a lock that could not be had (busy, or timed out) out of the transaction the lock call opened or joined:
 * `failure` is the LockNotAcquiredError/LockTimeoutError the caller gets. Not part of the public API.
 * @internal
 */
export class NotAcquired {
  constructor(readonly failure: unknown) {}
}
