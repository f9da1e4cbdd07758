import type { Attributes, Span } from '@opentelemetry/api';
import { LockNotAcquiredError, LockTimeoutError } from '../errors.js';
import { secondsSince, telemetry, type Telemetry } from './telemetry.js';
import type { LockAcquireOutcome, LockFeature } from './telemetry.types.js';



/**
 * One lock request, from the request to its release: a `txlock.lock.acquire` span that lasts as long as the
 * wait, the wait and hold histograms, and the timeouts counter. Metric attributes are low-cardinality only:
 * the feature, namespace, scope, outcome and the caller's `label`; never the key itself.
 */
export class LockObservation {
  private readonly requestedAt = performance.now();
  private readonly span: Span;
  private grantedAt: number | undefined;
  private settled = false;

  constructor(
    private readonly telemetry: Telemetry,
    private readonly attributes: Attributes,
    keys: number,
  ) {
    this.span = telemetry.span('txlock.lock.acquire', { ...attributes, 'txlock.lock.keys': keys });
  }

  /** The lock was taken (`failure` undefined) or refused with LockTimeoutError/LockNotAcquiredError. */
  acquired(failure: unknown): void {
    if (this.settled) return;
    if (failure !== undefined) return this.fail(failure);
    this.settled = true;
    this.grantedAt = performance.now();
    this.finish('acquired');
  }

  /** The locked call is over; `failure`: why the lock was never taken, if it was not. */
  end(failure?: unknown): void {
    if (!this.settled) this.fail(failure ?? new Error('the lock request ended before it was granted'));
    if (this.grantedAt !== undefined) this.telemetry.lockHold.record(secondsSince(this.grantedAt), this.attributes);
    this.grantedAt = undefined;
  }

  /** Ends the observation when the locked call settles: `outcome.failure` is why the lock was not taken. */
  settle<T extends { ran: boolean; failure?: unknown }>(outcome: Promise<T>): Promise<T> {
    return outcome.then(
      (settled) => {
        this.end(settled.ran ? undefined : settled.failure);
        return settled;
      },
      (error: unknown) => {
        this.end(error);
        throw error;
      },
    );
  }

  /** Observes a lock statement that holds until its transaction ends (table locks): the wait only, no hold. */
  async granted(taking: Promise<unknown>): Promise<void> {
    try {
      await taking;
    } catch (error) {
      this.acquired(error);
      throw error;
    }
    this.acquired(undefined);
  }

  private fail(failure: unknown): void {
    this.settled = true;
    const outcome: LockAcquireOutcome = failure instanceof LockTimeoutError ? 'timeout' : failure instanceof LockNotAcquiredError ? 'not_acquired' : 'error';
    if (outcome !== 'error') this.telemetry.lockTimeouts.add(1, { ...this.attributes, 'txlock.lock.outcome': outcome });
    else this.telemetry.fail(this.span, failure);
    this.finish(outcome);
  }

  private finish(outcome: LockAcquireOutcome): void {
    const wait = secondsSince(this.requestedAt);
    this.telemetry.lockWait.record(wait, { ...this.attributes, 'txlock.lock.outcome': outcome });
    this.span.setAttributes({ 'txlock.lock.wait.duration': wait, 'txlock.lock.outcome': outcome });
    this.span.end();
  }
}

/**
 * Starts observing a lock request when telemetry is on; undefined (and nothing allocated) when it is off.
 * `label`: the caller's low-cardinality name for the key (the `label` lock option).
 */
export function observeLock(
  feature: LockFeature,
  request: { label?: string; namespace?: number; scope?: string; shared?: boolean; mode?: string },
  keys: number,
): LockObservation | undefined {
  if (!telemetry) return undefined;
  const attributes: Attributes = { 'txlock.lock.feature': feature, 'txlock.lock.scope': request.scope ?? 'transaction' };
  if (request.namespace !== undefined) attributes['txlock.lock.namespace'] = request.namespace;
  if (request.label !== undefined) attributes['txlock.lock.label'] = request.label;
  if (request.mode !== undefined) attributes['txlock.lock.mode'] = request.mode;
  else if (feature !== 'table') attributes['txlock.lock.mode'] = request.shared ? 'shared' : 'exclusive';
  return new LockObservation(telemetry, attributes, keys);
}
