/**
 * The values the library's spans and metrics carry (docs/observability.md). Plain string unions, in a file of their
 * own so the public declarations never reach `@opentelemetry/api`, an optional peer.
 */

/** What a lock request is for: an advisory lock, a table lock, or the lock of a single-flight computation. */
export type LockFeature = 'advisory' | 'table' | 'single_flight';

/** How a lock request ended (`txlock.lock.outcome`). */
export type LockAcquireOutcome = 'acquired' | 'timeout' | 'not_acquired' | 'error';

/** How a transaction span ended: `'retried'` appears on the span events of attempts that were retried. */
export type TransactionOutcome = 'committed' | 'rolled_back' | 'retried' | 'unknown';

/** How a lease call ended (`txlock.lease.outcome`). */
export type LeaseOutcome = 'acquired' | 'busy' | 'renewed' | 'lost';

/** What became of an outbox event whose handler failed (`txlock.outbox.outcome`): tried again later, or parked as failed. */
export type OutboxFailureOutcome = 'retry' | 'parked';
